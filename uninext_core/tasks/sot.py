"""Single-object tracking from a template prompt (reference §2.2 and §7, SOT rule with `ONLINE_UPDATE`).

Each target is followed on its own: the prompt is concat(initial template tokens, latest template tokens) and the
target's box is the top-1 query by sqrt(cls · iou) over the full frame (no search-region crop). On the prompt frame
itself the given box is returned (official frame 0 outputs the ground truth). Online update: on frames whose index
(frames since the prompt frame) is a multiple of `template_update_interval` (200), when the top score exceeds
`template_update_threshold` (0.7), the latest template is re-cropped from the current frame around the predicted
box with the box prior as 4th channel and encoded once.

The official code runs box NMS (0.7) before taking the top-1; NMS never removes the highest-scored box, so the top-1
is taken directly. Cost per frame: one network forward per target.

Departure, off by default: with `SessionConfig.sot_motion_weight > 0` the top-1 is chosen with a temporal-continuity
window around the target's previous box (`uninext_core.tasks.motion_prior`, which says why); the reported score is
still the model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from uninext_core.deploy.backend import Backend
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.prompts import TemplatePrompt
from uninext_core.tasks.motion_prior import choose_with_continuity
from uninext_core.tasks.preprocess import PreparedFrame
from uninext_core.tasks.prompt_cache import PromptCache
from uninext_core.tasks.scoring import TaskResult, pooled_scores
from uninext_core.tasks.session_config import SessionConfig
from uninext_core.tasks.timing import FrameCost


@dataclass
class TemplateTargetState:
    """One followed target.

    Attributes:
        object_id: id reported as the track id.
        index: position in the prompt's targets (reported as class index).
        label: text carried to the output.
        initial: template features from the prompt frame, (1, T_t, C_l).
        latest: the latest template features (SOT: last online update; VOS: previous frame), (1, T_t, C_l).
        box_xyxy: (x_min, y_min, x_max, y_max) on the prompt frame (pixels), clipped to it.
        mask: (H, W) bool target mask on the prompt frame, or None.
    """

    object_id: int
    index: int
    label: str
    initial: PromptFeatures
    latest: PromptFeatures
    box_xyxy: tuple[float, float, float, float]
    mask: np.ndarray | None

    def prompt(self) -> PromptFeatures:
        """Network prompt: initial tokens followed by the latest ones."""
        return self.initial.concat(self.latest)


def encode_template_targets(prompt: TemplatePrompt, prepared: PreparedFrame, boxes_xyxy: Sequence[tuple[float, ...]],
                            *, cache: PromptCache, template_size: int,
                            search_area_factor: float) -> list[TemplateTargetState]:
    """Crop and encode every target of a validated template prompt on its (prepared) prompt frame.

    Args:
        prompt: the template prompt.
        prepared: the prompt frame, prepared like every frame of the stream.
        boxes_xyxy: per target, its box clipped to the frame (pixels).
        cache: encodes each crop once.
        template_size: crop side S.
        search_area_factor: crop side / sqrt(box area).
    """
    states = []
    for index, (target, box) in enumerate(zip(prompt.targets, boxes_xyxy, strict=True)):
        crop = prepared.template_crop(box_xyxy_px=box, mask=target.mask, size=template_size,
                                      search_area_factor=search_area_factor)
        features = cache.template(crop)
        states.append(TemplateTargetState(object_id=target.object_id, index=index, label=target.label,
                                          initial=features, latest=features, box_xyxy=tuple(box), mask=target.mask))
    return states


def prompt_frame_result(targets: Sequence[TemplateTargetState], frame_hw: tuple[int, int], *,
                        with_masks: bool) -> TaskResult:
    """The given targets as the answer on the prompt frame itself (score 1)."""
    masks = None
    if with_masks:
        masks = np.zeros((len(targets), *frame_hw), bool)
        for row, target in enumerate(targets):
            if target.mask is not None and target.mask.shape == frame_hw:
                masks[row] = target.mask
    return TaskResult(boxes_xyxy=np.array([t.box_xyxy for t in targets], np.float32).reshape(-1, 4),
                      scores=np.ones(len(targets), np.float32),
                      class_indices=np.array([t.index for t in targets], np.int64),
                      labels=[t.label for t in targets], track_ids=np.array([t.object_id for t in targets], np.int64),
                      masks=masks)


class SotRunner:
    """SOT task rule over one or more independently followed targets.

    Args:
        backend: runs the network.
        cache: encodes online template updates.
        targets: states from `encode_template_targets`.
        prompt_stamp_ns: stamp of the prompt frame (the given boxes are returned for it).
        template_size, search_area_factor: template crop layout (the backend's ModelSpec).
    """

    task = "sot"
    stateful = True

    def __init__(self, *, backend: Backend, cache: PromptCache, targets: list[TemplateTargetState],
                 prompt_stamp_ns: int, template_size: int, search_area_factor: float) -> None:
        self._backend = backend
        self._cache = cache
        self._targets = targets
        self._prompt_stamp_ns = prompt_stamp_ns
        self._template_size = template_size
        self._search_area_factor = search_area_factor
        self._frame_index = 0
        self.updates = 0  # online template updates made since the prompt (or reset)
        self._previous_boxes = self._prompt_boxes()

    def _prompt_boxes(self) -> list[torch.Tensor]:
        return [torch.tensor(target.box_xyxy, dtype=torch.float32) for target in self._targets]

    def reset(self) -> None:
        """Back to the prompt: latest template = initial, frame count 0, previous boxes = the given ones."""
        for target in self._targets:
            target.latest = target.initial
        self._frame_index = 0
        self.updates = 0
        self._previous_boxes = self._prompt_boxes()

    def apply_config(self, config: SessionConfig) -> None:
        """Thresholds are read from the config at every step; nothing is held."""

    def step(self, prepared: PreparedFrame, stamp_ns: int, *, config: SessionConfig, cost: FrameCost) -> TaskResult:
        """Follow every target on one frame (see the module docstring)."""
        if stamp_ns == self._prompt_stamp_ns:
            return prompt_frame_result(self._targets, prepared.frame_hw, with_masks=False)
        self._frame_index += 1
        boxes, scores = [], []
        for row, target in enumerate(self._targets):
            with cost.measure("network_ms"):
                raw = self._backend.infer(prepared.images, prepared.pixel_mask, target.prompt())
            with cost.measure("postprocess_ms"):
                query_scores = pooled_scores(raw, use_iou=True).cpu()
                query_boxes = prepared.boxes_to_frame(raw.boxes_cxcywh[0]).cpu()
                best = choose_with_continuity(query_scores, query_boxes, self._previous_boxes[row],
                                              weight=config.sot_motion_weight,
                                              sigma_scale=config.sot_motion_sigma)
                score = float(query_scores[best])
                self._previous_boxes[row] = query_boxes[best]
                box = query_boxes[best].numpy()
            boxes.append(box)
            scores.append(score)
            if (self._frame_index % config.template_update_interval == 0 and score > config.template_update_threshold
                    and box[2] - box[0] >= 1.0 and box[3] - box[1] >= 1.0):
                with cost.measure("template_ms"):
                    crop = prepared.template_crop(box_xyxy_px=tuple(float(v) for v in box), mask=None,
                                                  size=self._template_size,
                                                  search_area_factor=self._search_area_factor)
                    target.latest = self._cache.template(crop)
                    self.updates += 1
        result = TaskResult(boxes_xyxy=np.array(boxes, np.float32).reshape(-1, 4), scores=np.array(scores, np.float32),
                            class_indices=np.array([t.index for t in self._targets], np.int64),
                            labels=[t.label for t in self._targets],
                            track_ids=np.array([t.object_id for t in self._targets], np.int64), masks=None)
        return result.keep(result.scores >= config.score_threshold)
