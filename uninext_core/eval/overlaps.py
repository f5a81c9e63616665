"""Pairwise overlaps in numpy: box IoU (xyxy pixels, continuous areas) and binary-mask IoU.

Shared by the metrics in this package and by the trackers in `uninext_core.tasks.trackers`, so every place that
decides "these two instances overlap by x" agrees. Degenerate cases: a pair whose union is empty has IoU 0
(pycocotools' `maskUtils.iou` convention).
"""

from __future__ import annotations

import numpy as np


def _check_boxes(name: str, boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {boxes.shape}")
    return boxes.astype(np.float64, copy=False)


def box_area_xyxy(boxes_xyxy_px: np.ndarray) -> np.ndarray:
    """Areas of (N, 4) x1, y1, x2, y2 boxes in pixels; inverted boxes have area 0. Returns (N,) float64."""
    boxes = _check_boxes("boxes_xyxy_px", boxes_xyxy_px)
    return np.clip(boxes[:, 2] - boxes[:, 0], 0.0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0.0, None)


def box_iou_xyxy(boxes_a_xyxy_px: np.ndarray, boxes_b_xyxy_px: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two box sets (continuous areas, as torchvision `box_iou` and pycocotools compute it).

    Args:
        boxes_a_xyxy_px: (N, 4) x1, y1, x2, y2 in pixels.
        boxes_b_xyxy_px: (M, 4) x1, y1, x2, y2 in pixels.

    Returns:
        (N, M) float64 IoU in [0, 1]; 0 where the union is empty. Cost O(N·M).
    """
    boxes_a = _check_boxes("boxes_a_xyxy_px", boxes_a_xyxy_px)
    boxes_b = _check_boxes("boxes_b_xyxy_px", boxes_b_xyxy_px)
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])  # (N, M, 2)
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])  # (N, M, 2)
    size = np.clip(bottom_right - top_left, 0.0, None)
    intersection = size[..., 0] * size[..., 1]
    union = box_area_xyxy(boxes_a)[:, None] + box_area_xyxy(boxes_b)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def paired_box_iou_xyxy(boxes_a_xyxy_px: np.ndarray, boxes_b_xyxy_px: np.ndarray) -> np.ndarray:
    """IoU of row i of `boxes_a` with row i of `boxes_b`: (N, 4) and (N, 4) xyxy pixels → (N,) float64."""
    boxes_a = _check_boxes("boxes_a_xyxy_px", boxes_a_xyxy_px)
    boxes_b = _check_boxes("boxes_b_xyxy_px", boxes_b_xyxy_px)
    if boxes_a.shape != boxes_b.shape:
        raise ValueError(f"paired boxes need equal shapes, got {boxes_a.shape} and {boxes_b.shape}")
    size = np.clip(np.minimum(boxes_a[:, 2:], boxes_b[:, 2:]) - np.maximum(boxes_a[:, :2], boxes_b[:, :2]), 0.0, None)
    intersection = size[:, 0] * size[:, 1]
    union = box_area_xyxy(boxes_a) + box_area_xyxy(boxes_b) - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def mask_areas_and_bounds(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel areas and tight bounds of each mask.

    Args:
        masks: (N, H, W) bool.

    Returns:
        areas: (N,) float64 pixel counts.
        bounds: (N, 4) int64 half-open (y0, x0, y1, x1), i.e. rows y0..y1-1 and columns x0..x1-1;
            (0, 0, 0, 0) for an empty mask.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {masks.shape}")
    if masks.dtype != np.bool_:
        raise TypeError(f"masks must be bool, got {masks.dtype}")
    num_masks, _, width = masks.shape
    cols_any = masks.any(axis=1)  # (N, W): one pass over the pixels
    areas = np.zeros(num_masks, dtype=np.float64)
    bounds = np.zeros((num_masks, 4), dtype=np.int64)
    for i in np.flatnonzero(cols_any.any(axis=1)):
        x0 = int(cols_any[i].argmax())
        x1 = width - int(cols_any[i, ::-1].argmax())
        rows_any = masks[i, :, x0:x1].any(axis=1)  # only the occupied column band
        y0 = int(rows_any.argmax())
        y1 = rows_any.shape[0] - int(rows_any[::-1].argmax())
        bounds[i] = (y0, x0, y1, x1)
        areas[i] = np.count_nonzero(masks[i, y0:y1, x0:x1])
    return areas, bounds


def mask_intersection_union(masks_a: np.ndarray, masks_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise pixel counts of intersection and union of two binary mask sets of one image size.

    Only pairs whose tight bounding boxes overlap are compared, each on the overlap of the two boxes, so the cost
    is one pass over all pixels (areas and bounds) plus the summed box-overlap areas of the overlapping pairs —
    about 15 ms for 50 masks of 720×1280 and ~3 ms at the mask head's stride-4 resolution (2-core CPU).

    Args:
        masks_a: (N, H, W) bool.
        masks_b: (M, H, W) bool, same H and W.

    Returns:
        intersection, union: (N, M) float64 pixel counts.
    """
    same_set = masks_b is masks_a
    masks_a = np.asarray(masks_a)
    masks_b = np.asarray(masks_b)
    if masks_a.shape[1:] != masks_b.shape[1:]:
        raise ValueError(f"mask sizes differ: {masks_a.shape[1:]} and {masks_b.shape[1:]}")
    area_a, bounds_a = mask_areas_and_bounds(masks_a)
    area_b, bounds_b = (area_a, bounds_a) if same_set else mask_areas_and_bounds(masks_b)
    overlap_lo = np.maximum(bounds_a[:, None, :2], bounds_b[None, :, :2])  # (N, M, 2) y0, x0
    overlap_hi = np.minimum(bounds_a[:, None, 2:], bounds_b[None, :, 2:])  # (N, M, 2) y1, x1
    candidates = (overlap_hi > overlap_lo).all(axis=2)  # empty masks have empty bounds: never candidates
    intersection = np.zeros((masks_a.shape[0], masks_b.shape[0]), dtype=np.float64)
    for i, j in zip(*np.nonzero(candidates), strict=True):
        y0, x0 = overlap_lo[i, j]
        y1, x1 = overlap_hi[i, j]
        intersection[i, j] = np.count_nonzero(masks_a[i, y0:y1, x0:x1] & masks_b[j, y0:y1, x0:x1])
    union = area_a[:, None] + area_b[None, :] - intersection
    return intersection, union


def mask_iou(masks_a: np.ndarray, masks_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of two binary mask sets: (N, H, W) and (M, H, W) bool → (N, M) float64, 0 for empty unions."""
    intersection, union = mask_intersection_union(masks_a, masks_b)
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
