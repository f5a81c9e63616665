"""Per-frame tracks (ground truth or tracker output) as the MOT/MOTS metrics read them, and their IoU matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from uninext_core.eval.overlaps import box_iou_xyxy, mask_iou

IouType = Literal["bbox", "mask"]


@dataclass(frozen=True)
class TrackFrame:
    """Instances of one frame with their track ids.

    Attributes:
        ids: (N,) int64 track ids, unique within the frame (any integers; only equality matters).
        boxes_xyxy_px: (N, 4) float x1, y1, x2, y2 in pixels, or None when only masks are evaluated.
        masks: (N, H, W) bool, or None when only boxes are evaluated.
    """

    ids: np.ndarray
    boxes_xyxy_px: np.ndarray | None = None
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
            raise ValueError(f"ids must be a 1-D integer array, got shape {ids.shape} dtype {ids.dtype}")
        if np.unique(ids).size != ids.size:
            raise ValueError(f"ids must be unique within a frame, got {ids.tolist()}")
        object.__setattr__(self, "ids", ids.astype(np.int64))
        if self.boxes_xyxy_px is not None:
            boxes = np.asarray(self.boxes_xyxy_px, dtype=np.float64)
            if boxes.shape != (ids.size, 4):
                raise ValueError(f"boxes_xyxy_px must be ({ids.size}, 4), got {boxes.shape}")
            object.__setattr__(self, "boxes_xyxy_px", boxes)
        if self.masks is not None:
            masks = np.asarray(self.masks)
            if masks.ndim != 3 or masks.shape[0] != ids.size or masks.dtype != np.bool_:
                raise ValueError(f"masks must be ({ids.size}, H, W) bool, got {masks.shape} {masks.dtype}")

    def __len__(self) -> int:
        return int(self.ids.size)


def frame_iou(gt: TrackFrame, pred: TrackFrame, *, iou_type: IouType) -> np.ndarray:
    """(G, P) float64 IoU between a frame's ground truth and predictions, by boxes or by masks."""
    if iou_type == "bbox":
        if gt.boxes_xyxy_px is None or pred.boxes_xyxy_px is None:
            raise ValueError("iou_type 'bbox' needs boxes_xyxy_px on both ground truth and prediction frames")
        return box_iou_xyxy(gt.boxes_xyxy_px, pred.boxes_xyxy_px)
    if iou_type == "mask":
        if gt.masks is None or pred.masks is None:
            raise ValueError("iou_type 'mask' needs masks on both ground truth and prediction frames")
        if len(gt) == 0 or len(pred) == 0:
            return np.zeros((len(gt), len(pred)), dtype=np.float64)
        return mask_iou(gt.masks, pred.masks)
    raise ValueError(f"iou_type must be 'bbox' or 'mask', got {iou_type!r}")


def check_sequence_pair(gt_frames: list[TrackFrame], pred_frames: list[TrackFrame], name: str) -> None:
    """Raise ValueError unless both sequences have the same, non-zero number of frames."""
    if len(gt_frames) != len(pred_frames) or len(gt_frames) == 0:
        raise ValueError(f"sequence {name!r}: need equal non-zero frame counts, got {len(gt_frames)} ground-truth "
                         f"and {len(pred_frames)} predicted frames")
