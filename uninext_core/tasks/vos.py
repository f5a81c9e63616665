"""Video object segmentation from mask templates (reference §7, VOS rule, official `inference_ytbvos_3f`).

Every object is initialised on the prompt frame (its given mask is the answer there). On later frames, per object:
prompt = concat(first-frame template, previous-frame template); the top-1 query by sqrt(cls · iou) gives a soft
mask (probabilities at the frame size); objects scoring below `vos_min_score` (0.5, YT-VOS `INST_THR_VOS`) get an
all-zero probability. Soft aggregation merges the objects: background probability = Π_i (1 − p_i), each pixel goes to
argmax over {background, objects}. Then every object scoring at least `vos_update_threshold` (0.7) rebuilds its
previous-frame template from its merged mask (box = the mask's tight box, 4th channel = the mask).

Cost per frame with N objects: N network forwards, N mask-head calls at one query each, N frame-size probability
maps, and up to N template encodings (the update runs every frame for confident objects, as in the official code).
"""

from __future__ import annotations

import numpy as np
import torch

from uninext_core.deploy.backend import Backend
from uninext_core.tasks.preprocess import PreparedFrame
from uninext_core.tasks.prompt_cache import PromptCache
from uninext_core.tasks.scoring import TaskResult, pooled_scores
from uninext_core.tasks.session_config import SessionConfig
from uninext_core.tasks.sot import TemplateTargetState, prompt_frame_result
from uninext_core.tasks.timing import FrameCost


def soft_aggregate(probs: torch.Tensor) -> torch.Tensor:
    """Merge per-object foreground probabilities into disjoint masks.

    Args:
        probs: (N, H, W) float probabilities in [0, 1].

    Returns:
        (N, H, W) bool; pixel (y, x) belongs to object i when p_i is the largest of {Π_j (1 − p_j), p_1..p_N}
        (ties go to the background, then to the lower index).
    """
    if probs.shape[0] == 0:
        return torch.zeros_like(probs, dtype=torch.bool)
    background = torch.prod(1.0 - probs, dim=0, keepdim=True)
    labels = torch.cat([background, probs], dim=0).argmax(dim=0)  # (H, W), 0 = background
    return labels[None] == torch.arange(1, probs.shape[0] + 1, device=probs.device)[:, None, None]


def tight_box_xyxy(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(x_min, y_min, x_max + 1, y_max + 1) pixels of a non-empty (H, W) bool mask."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)


class VosRunner:
    """VOS task rule over the objects of one mask-template prompt.

    Args:
        backend: runs the network and the mask head.
        cache: encodes the previous-frame templates.
        targets: states from `encode_template_targets` (every target has a mask).
        prompt_stamp_ns: stamp of the prompt frame.
        template_size, search_area_factor: template crop layout (the backend's ModelSpec).
    """

    task = "vos"
    stateful = True

    def __init__(self, *, backend: Backend, cache: PromptCache, targets: list[TemplateTargetState],
                 prompt_stamp_ns: int, template_size: int, search_area_factor: float) -> None:
        self._backend = backend
        self._cache = cache
        self._targets = targets
        self._prompt_stamp_ns = prompt_stamp_ns
        self._template_size = template_size
        self._search_area_factor = search_area_factor
        self.updates = 0  # previous-frame template rebuilds since the prompt (or reset)

    def reset(self) -> None:
        """Back to the prompt: previous-frame templates = first-frame templates."""
        for target in self._targets:
            target.latest = target.initial
        self.updates = 0

    def apply_config(self, config: SessionConfig) -> None:
        """Thresholds are read from the config at every step; nothing is held."""

    def step(self, prepared: PreparedFrame, stamp_ns: int, *, config: SessionConfig, cost: FrameCost) -> TaskResult:
        """Segment every object on one frame (see the module docstring)."""
        if stamp_ns == self._prompt_stamp_ns:
            return prompt_frame_result(self._targets, prepared.frame_hw, with_masks=config.masks)
        probs, scores = [], []
        for target in self._targets:
            with cost.measure("network_ms"):
                raw = self._backend.infer(prepared.images, prepared.pixel_mask, target.prompt())
            with cost.measure("postprocess_ms"):
                query_scores = pooled_scores(raw, use_iou=True)
                best = query_scores.argmax()
                score = float(query_scores[best])
                prob = prepared.mask_probs_to_frame(self._backend.mask_logits(raw, best[None]))[0]
                probs.append(prob if score >= config.vos_min_score else torch.zeros_like(prob))
                scores.append(score)
        with cost.measure("tracking_ms"):
            masks = soft_aggregate(torch.stack(probs)).cpu().numpy()
        present = masks.any(axis=(1, 2))
        boxes = np.zeros((len(masks), 4), np.float32)
        for row in np.flatnonzero(present):
            boxes[row] = tight_box_xyxy(masks[row])
        with cost.measure("template_ms"):
            for row, target in enumerate(self._targets):
                if present[row] and scores[row] >= config.vos_update_threshold:
                    crop = prepared.template_crop(box_xyxy_px=tuple(boxes[row]), mask=masks[row],
                                                  size=self._template_size,
                                                  search_area_factor=self._search_area_factor)
                    target.latest = self._cache.template(crop)
                    self.updates += 1
        result = TaskResult(boxes_xyxy=boxes, scores=np.array(scores, np.float32),
                            class_indices=np.array([t.index for t in self._targets], np.int64),
                            labels=[t.label for t in self._targets],
                            track_ids=np.array([t.object_id for t in self._targets], np.int64),
                            masks=masks if config.masks else None)
        return result.keep(present & (result.scores >= config.score_threshold))
