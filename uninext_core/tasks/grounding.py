"""REC, RES and R-VOS from an expression prompt (reference §7): the top-1 query by sqrt(cls · iou) each frame.

REC returns its box; RES and R-VOS also its mask (probability > 0.5 at the frame size). R-VOS is per-frame top-1 on
the expression with no tracking (official Ref-YouTube-VOS rule); Ref-DAVIS's merging of several expressions is an
evaluation step over several prompts, not a per-frame rule.
"""

from __future__ import annotations

import numpy as np

from uninext_core.deploy.backend import Backend
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.tasks.preprocess import PreparedFrame
from uninext_core.tasks.scoring import TaskResult, pooled_scores
from uninext_core.tasks.session_config import SessionConfig
from uninext_core.tasks.timing import FrameCost


def decode_grounding(raw: RawOutputs, *, prepared: PreparedFrame, backend: Backend, label: str,
                     score_threshold: float, with_masks: bool) -> TaskResult:
    """The one instance an expression refers to.

    Args:
        raw: batch-1 network outputs for an expression prompt.
        prepared: the frame's geometry.
        backend: runs the mask head on the chosen query.
        label: label to report (the expression).
        score_threshold: the instance is dropped when its score is below this (0 always keeps it).
        with_masks: compute its (1, H, W) bool mask.

    Returns:
        TaskResult with 0 or 1 instance; class_indices -1, track_ids -1.
    """
    scores = pooled_scores(raw, use_iou=True)
    best = scores.argmax()
    score = float(scores[best])
    if score < score_threshold:
        return TaskResult.empty(prepared.frame_hw, with_masks=with_masks)
    boxes = prepared.boxes_to_frame(raw.boxes_cxcywh[0, best][None])
    masks = None
    if with_masks:
        masks = (prepared.mask_probs_to_frame(backend.mask_logits(raw, best[None])) > 0.5).cpu().numpy()
    return TaskResult(boxes_xyxy=boxes.cpu().numpy().astype(np.float32), scores=np.array([score], np.float32),
                      class_indices=np.array([-1], np.int64), labels=[label], track_ids=np.array([-1], np.int64),
                      masks=masks)


class GroundingRunner:
    """REC / RES / R-VOS task rule for one expression prompt (stateless across frames).

    Args:
        task: "rec", "res" or "rvos" (masks for res and rvos, when config.masks).
        backend: runs the network and the mask head.
        prompt: encoded expression (1, T, C_l).
        label: the expression as reported.
    """

    stateful = False

    def __init__(self, *, task: str, backend: Backend, prompt: PromptFeatures, label: str) -> None:
        if task not in ("rec", "res", "rvos"):
            raise ValueError(f"task must be 'rec', 'res' or 'rvos', got {task!r}")
        self.task = task
        self._backend = backend
        self._prompt = prompt
        self._label = label

    def reset(self) -> None:
        """Nothing is carried between frames."""

    def apply_config(self, config: SessionConfig) -> None:
        """Thresholds are read from the config at every step."""

    def step(self, prepared: PreparedFrame, stamp_ns: int, *, config: SessionConfig, cost: FrameCost) -> TaskResult:
        """Decode one frame."""
        with cost.measure("network_ms"):
            raw = self._backend.infer(prepared.images, prepared.pixel_mask, self._prompt)
        with cost.measure("postprocess_ms"):
            return decode_grounding(raw, prepared=prepared, backend=self._backend, label=self._label,
                                    score_threshold=config.score_threshold,
                                    with_masks=config.masks and self.task != "rec")
