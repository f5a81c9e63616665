"""What a tracker receives each frame and what it gives back (the perception session's tracker contract)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class FrameDetections:
    """One frame's candidate instances after the task's score selection and class NMS.

    Attributes:
        boxes_xyxy: (N, 4) float32 x1, y1, x2, y2 in pixels of the frame.
        scores: (N,) float32 confidence in [0, 1] (the best class score of each query).
        labels: (N,) int64 class index of that best score.
        embeddings: (N, D) float32 re-ID embeddings (`pred_inst_embed`, not normalised).
        masks: (N, H, W) bool masks or None. The IDOL tracker needs them; any resolution works, the official
            tracker uses the mask head's stride-4 output (cheapest).
        class_scores: (N, C) float32 per-class scores or None; the IDOL tracker needs them for clip-level scoring.
    """

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray
    masks: np.ndarray | None = None
    class_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        boxes, scores = np.asarray(self.boxes_xyxy), np.asarray(self.scores)
        labels, embeddings = np.asarray(self.labels), np.asarray(self.embeddings)
        num = boxes.shape[0] if boxes.ndim == 2 else -1
        if boxes.shape != (num, 4):
            raise ValueError(f"boxes_xyxy must be (N, 4), got {boxes.shape}")
        if scores.shape != (num,) or labels.shape != (num,):
            raise ValueError(f"scores and labels must be ({num},), got {scores.shape} and {labels.shape}")
        if embeddings.ndim != 2 or embeddings.shape[0] != num:
            raise ValueError(f"embeddings must be ({num}, D), got {embeddings.shape}")
        for name, array in (("boxes_xyxy", boxes), ("scores", scores), ("embeddings", embeddings)):
            if not np.issubdtype(array.dtype, np.floating):
                raise TypeError(f"{name} must be floating point (float32), got {array.dtype}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"labels must be integer (int64), got {labels.dtype}")
        object.__setattr__(self, "boxes_xyxy", boxes.astype(np.float32, copy=False))
        object.__setattr__(self, "scores", scores.astype(np.float32, copy=False))
        object.__setattr__(self, "labels", labels.astype(np.int64, copy=False))
        object.__setattr__(self, "embeddings", embeddings.astype(np.float32, copy=False))
        if self.masks is not None:
            masks = np.asarray(self.masks)
            if masks.ndim != 3 or masks.shape[0] != num:
                raise ValueError(f"masks must be ({num}, H, W), got {masks.shape}")
            if masks.dtype != np.bool_:
                raise TypeError(f"masks must be bool, got {masks.dtype}")
            object.__setattr__(self, "masks", masks)
        if self.class_scores is not None:
            class_scores = np.asarray(self.class_scores)
            if class_scores.ndim != 2 or class_scores.shape[0] != num:
                raise ValueError(f"class_scores must be ({num}, C), got {class_scores.shape}")
            if not np.issubdtype(class_scores.dtype, np.floating):
                raise TypeError(f"class_scores must be floating point (float32), got {class_scores.dtype}")
            object.__setattr__(self, "class_scores", class_scores.astype(np.float32, copy=False))

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class TrackedInstances(NamedTuple):
    """The detections a tracker kept this frame, in descending score order.

    indices: (K,) int64 indices into the frame's FrameDetections.
    track_ids: (K,) int64 track ids, ≥ 1, never reused by one tracker object (not even across `reset`).
    clip_scores: (K, C) float32 — IdolTracker: the mean per-frame class-score vector of each kept track's clip
        record so far (the VIS clip-level score, argmax = clip label); QuasiDenseTracker: (K, 0).
    """

    indices: np.ndarray
    track_ids: np.ndarray
    clip_scores: np.ndarray


def empty_tracked(num_classes: int = 0) -> TrackedInstances:
    """No kept detections: (0,) indices and ids, (0, num_classes) clip scores."""
    return TrackedInstances(
        indices=np.zeros(0, dtype=np.int64),
        track_ids=np.zeros(0, dtype=np.int64),
        clip_scores=np.zeros((0, num_classes), dtype=np.float32),
    )
