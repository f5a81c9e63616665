"""Referring-expression metrics: REC box accuracy and RES mask IoU (overall and mean).

Conventions follow the UNINEXT evaluator (detectron2/evaluation/refcocoeval.py with coco_evaluation.py of the
official repository): one prediction per expression; REC "P@0.5" counts IoU strictly above 0.5 (also reported at
0.6 ... 0.9); RES overall IoU (oIoU, also called cumulative IoU) = Σ intersection / Σ union over the split, mean IoU
(mIoU) = mean of per-expression IoU, where an expression whose prediction and ground truth are both empty scores 0
(pycocotools' convention).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from uninext_core.eval.overlaps import paired_box_iou_xyxy

REC_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


class RecResult(NamedTuple):
    """REC results.

    accuracy: fraction of expressions with IoU > 0.5 (P@0.5, the number papers report), in [0, 1].
    precision_at: {threshold: fraction with IoU > threshold} for each requested threshold.
    ious: (N,) float64 per-expression box IoU.
    """

    accuracy: float
    precision_at: dict[float, float]
    ious: np.ndarray


class ResResult(NamedTuple):
    """RES results: overall_iou = Σ I / Σ U and mean_iou = mean of per-expression IoU, both in [0, 1];
    ious: (N,) float64 per-expression mask IoU."""

    overall_iou: float
    mean_iou: float
    ious: np.ndarray


def evaluate_rec(
    *,
    pred_boxes_xyxy_px: np.ndarray,
    gt_boxes_xyxy_px: np.ndarray,
    thresholds: Sequence[float] = REC_THRESHOLDS,
) -> RecResult:
    """REC accuracy of one top-1 box per expression.

    Args:
        pred_boxes_xyxy_px: (N, 4) predicted x1, y1, x2, y2 in pixels, row i for expression i.
        gt_boxes_xyxy_px: (N, 4) ground-truth boxes, same format and order.
        thresholds: IoU thresholds for `precision_at`; 0.5 is always included for `accuracy`.

    Returns:
        Accuracy at 0.5, precision at each threshold, and the per-expression IoUs.
    """
    pred = np.asarray(pred_boxes_xyxy_px, dtype=np.float64)
    gt = np.asarray(gt_boxes_xyxy_px, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 2 or pred.shape[1] != 4:
        raise ValueError(f"need two (N, 4) box arrays of equal shape, got {pred.shape} and {gt.shape}")
    if pred.shape[0] == 0:
        raise ValueError("evaluate_rec needs at least one expression, got 0")
    ious = paired_box_iou_xyxy(pred, gt)
    precision_at = {float(t): float(np.mean(ious > t)) for t in sorted({0.5, *thresholds})}
    return RecResult(accuracy=precision_at[0.5], precision_at=precision_at, ious=ious)


def evaluate_res(*, pred_masks: Sequence[np.ndarray], gt_masks: Sequence[np.ndarray]) -> ResResult:
    """RES overall and mean IoU of one predicted mask per expression.

    Args:
        pred_masks: N masks, each (H_i, W_i) bool at its image's resolution.
        gt_masks: N ground-truth masks, same sizes and order.

    Returns:
        Overall IoU, mean IoU and per-expression IoUs.
    """
    if len(pred_masks) != len(gt_masks):
        raise ValueError(f"need as many predictions as ground truths, got {len(pred_masks)} and {len(gt_masks)}")
    if len(gt_masks) == 0:
        raise ValueError("evaluate_res needs at least one expression, got 0")
    intersections = np.zeros(len(gt_masks), dtype=np.float64)
    unions = np.zeros(len(gt_masks), dtype=np.float64)
    for i, (pred, gt) in enumerate(zip(pred_masks, gt_masks, strict=True)):
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape or pred.ndim != 2:
            raise ValueError(f"expression {i}: need two (H, W) masks of equal shape, got {pred.shape} and {gt.shape}")
        if pred.dtype != np.bool_ or gt.dtype != np.bool_:
            raise TypeError(f"expression {i}: masks must be bool, got {pred.dtype} and {gt.dtype}")
        intersections[i] = np.count_nonzero(pred & gt)
        unions[i] = np.count_nonzero(pred | gt)
    ious = np.divide(intersections, unions, out=np.zeros_like(intersections), where=unions > 0)
    total_union = unions.sum()
    overall = float(intersections.sum() / total_union) if total_union > 0 else 0.0
    return ResResult(overall_iou=overall, mean_iou=float(ious.mean()), ious=ious)
