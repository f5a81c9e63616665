"""`FrameTruth`: the ground truth of one evaluated frame, whatever it was read from.

The offline evaluator reads it from annotation files (a training `Target`), the rosbag evaluator from the same files
or from a reference bag's instance arrays (`Instances`); the scorers see only this one structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from uninext_core.data.targets import Target
from uninext_core.instances import Instances


@dataclass(frozen=True)
class FrameTruth:
    """Ground-truth instances of one frame.

    Attributes:
        image_size: (height, width) of the frame in pixels.
        ids: (N,) int64 instance ids (annotation ids for stills, track / object ids for videos).
        boxes_xyxy_px: (N, 4) float64 (x1, y1, x2, y2) pixels, x2 > x1, y2 > y1.
        category_ids: (N,) int64 dataset category ids.
        masks: (N, H, W) bool, or None for box-only ground truth.
    """

    image_size: tuple[int, int]
    ids: np.ndarray
    boxes_xyxy_px: np.ndarray
    category_ids: np.ndarray
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        count = len(self.ids)
        if self.boxes_xyxy_px.shape != (count, 4) or self.category_ids.shape != (count,):
            raise ValueError(f"need boxes (N, 4) and category_ids (N,) for N={count} ids, got "
                             f"{self.boxes_xyxy_px.shape} and {self.category_ids.shape}")
        if self.masks is not None and self.masks.shape != (count, *self.image_size):
            raise ValueError(f"masks have shape {self.masks.shape}, expected {(count, *self.image_size)}")

    def __len__(self) -> int:
        return len(self.ids)

    def index_of(self, instance_id: int) -> int | None:
        """Row of `instance_id`, or None when it is absent from this frame."""
        rows = np.flatnonzero(self.ids == instance_id)
        return int(rows[0]) if rows.size else None

    def mask_of(self, instance_id: int) -> np.ndarray:
        """(H, W) bool mask of `instance_id` (all False when absent or box-only)."""
        row = self.index_of(instance_id)
        if row is None or self.masks is None:
            return np.zeros(self.image_size, dtype=bool)
        return self.masks[row]


def truth_from_target(target: Target, *, image_size: tuple[int, int]) -> FrameTruth:
    """A reader's training `Target` as FrameTruth (ids, boxes, category ids = target.labels, masks)."""
    return FrameTruth(image_size=(int(image_size[0]), int(image_size[1])), ids=target.ids.astype(np.int64),
                      boxes_xyxy_px=target.boxes_xyxy_px.astype(np.float64),
                      category_ids=target.labels.astype(np.int64),
                      masks=None if target.masks is None else target.masks.astype(bool))


def truth_from_instances(instances: Instances, *, category_ids: Sequence[int] = ()) -> FrameTruth:
    """Recorded instances (a reference bag) as FrameTruth.

    Args:
        instances: one frame's instances; ids are the track ids, or 1..N for untracked tasks.
        category_ids: dataset category id of each prompt class index; empty: class index + 1.
    """
    count = len(instances)
    ids = instances.track_ids.astype(np.int64)
    if count and (ids < 0).all():
        ids = np.arange(1, count + 1, dtype=np.int64)
    classes = instances.class_indices.astype(np.int64)
    if category_ids:
        lookup = np.asarray(category_ids, dtype=np.int64)
        if count and (classes.min() < 0 or classes.max() >= len(lookup)):
            raise ValueError(f"class indices {sorted(set(classes.tolist()))} fall outside the {len(lookup)} prompt "
                             f"categories")
        categories = lookup[classes] if count else np.zeros(0, np.int64)
    else:
        categories = classes + 1
    return FrameTruth(image_size=instances.image_size, ids=ids,
                      boxes_xyxy_px=instances.boxes_xyxy.astype(np.float64), category_ids=categories,
                      masks=None if instances.masks is None else instances.masks.astype(bool))
