"""Single-object tracking metrics, one-pass evaluation (OPE): success AUC, precision and normalised precision.

Convention (stated because toolkits differ in details): we follow pytracking's `extract_results`, which reproduces
the OTB and LaSOT toolkit numbers and is what SOT papers since 2019 (UNINEXT included) report on LaSOT, LaSOT-ext,
TrackingNet and TNL-2K:
* Boxes are [x, y, w, h] in pixels with the OTB/LaSOT inclusive-pixel geometry: a box covers columns x … x+w-1,
  so intersection width = min(x1+w1-1, x2+w2-1) - max(x1, x2) + 1 (clamped at 0), and the centre is x + (w-1)/2.
* The first frame is **included** and scores as a perfect prediction: OPE initialises the tracker with the ground
  truth there, so the prediction of frame 0 is replaced by the ground truth (OTB/pytracking behaviour).
* A frame whose ground truth is invalid (width or height not positive) or whose target is absent
  (`target_visible` False, LaSOT's full-occlusion/out-of-view flags) counts as a failure on all three curves and
  stays in the denominator (pytracking's default `exclude_invalid_frames=False`); with `exclude_invalid_frames`
  such frames leave the denominator as well. (pytracking treats an annotation with x or y equal to 0 as invalid;
  we only require a positive size, so 0-based synthetic boxes at the image border stay valid.)
* Success: fraction of frames with IoU **strictly above** each threshold 0, 0.05, …, 1 (21 thresholds);
  AUC = mean of the sequence-averaged success curve.
* Precision: fraction of frames with centre error ≤ each threshold 0 … 50 px; reported at 20 px.
* Normalised precision (TrackingNet, LaSOT): centre offsets divided by the ground-truth width and height, then
  the Euclidean norm; thresholds 0, 0.01, …, 0.5; reported at 0.2.
* Dataset scores average the per-sequence curves (every sequence weighs the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

OVERLAP_THRESHOLDS = np.linspace(0.0, 1.0, 21)
CENTER_THRESHOLDS_PX = np.arange(0, 51, dtype=np.float64)
NORMALIZED_CENTER_THRESHOLDS = np.arange(0, 51, dtype=np.float64) / 100.0
PRECISION_THRESHOLD_PX = 20.0
NORMALIZED_PRECISION_THRESHOLD = 0.2


class SotSequenceResult(NamedTuple):
    """Per-sequence OPE curves and per-frame errors.

    success_curve: (21,) fraction of frames with IoU > OVERLAP_THRESHOLDS.
    precision_curve: (51,) fraction with centre error ≤ CENTER_THRESHOLDS_PX.
    normalized_precision_curve: (51,) fraction with normalised centre error ≤ NORMALIZED_CENTER_THRESHOLDS.
    ious: (T,) float64 per-frame IoU, -1 on invalid frames.
    center_errors_px: (T,) float64 per-frame centre distance, inf on invalid frames.
    """

    success_curve: np.ndarray
    precision_curve: np.ndarray
    normalized_precision_curve: np.ndarray
    ious: np.ndarray
    center_errors_px: np.ndarray


class SotSummary(NamedTuple):
    """Dataset-level OPE scores, fractions in [0, 1] (papers print them ×100).

    auc: area under the success curve (mean over its 21 thresholds) — "AUC" / "success".
    precision: precision at 20 px — "P".
    normalized_precision: normalised precision at 0.2 — "P_norm".
    success_curve, precision_curve, normalized_precision_curve: sequence-averaged curves for plots.
    """

    auc: float
    precision: float
    normalized_precision: float
    success_curve: np.ndarray
    precision_curve: np.ndarray
    normalized_precision_curve: np.ndarray


def _check_xywh(name: str, boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name} must have shape (T, 4) [x, y, w, h], got {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{name} contains NaN or inf")
    return boxes


def inclusive_iou_xywh(boxes_a_xywh_px: np.ndarray, boxes_b_xywh_px: np.ndarray) -> np.ndarray:
    """Row-wise IoU with the OTB/LaSOT inclusive-pixel geometry: (T, 4) and (T, 4) [x, y, w, h] → (T,) float64."""
    a = _check_xywh("boxes_a_xywh_px", boxes_a_xywh_px)
    b = _check_xywh("boxes_b_xywh_px", boxes_b_xywh_px)
    top_left = np.maximum(a[:, :2], b[:, :2])
    bottom_right = np.minimum(a[:, :2] + a[:, 2:] - 1.0, b[:, :2] + b[:, 2:] - 1.0)
    size = np.clip(bottom_right - top_left + 1.0, 0.0, None)
    intersection = size.prod(axis=1)
    union = a[:, 2:].prod(axis=1) + b[:, 2:].prod(axis=1) - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def _centers(boxes_xywh: np.ndarray) -> np.ndarray:
    return boxes_xywh[:, :2] + 0.5 * (boxes_xywh[:, 2:] - 1.0)


def evaluate_sot_sequence(
    *,
    pred_boxes_xywh_px: np.ndarray,
    gt_boxes_xywh_px: np.ndarray,
    target_visible: np.ndarray | None = None,
    exclude_invalid_frames: bool = False,
) -> SotSequenceResult:
    """OPE curves of one sequence.

    Args:
        pred_boxes_xywh_px: (T, 4) tracker output [x, y, w, h] pixels, one row per frame; row 0 is ignored and
            replaced by the ground truth (the initialisation frame).
        gt_boxes_xywh_px: (T, 4) ground truth, same format.
        target_visible: optional (T,) bool, False where the target is absent (LaSOT absence flags).
        exclude_invalid_frames: drop invalid frames from the denominators instead of counting them as failures.

    Returns:
        The three curves and per-frame IoU and centre error.
    """
    pred = _check_xywh("pred_boxes_xywh_px", pred_boxes_xywh_px).copy()
    gt = _check_xywh("gt_boxes_xywh_px", gt_boxes_xywh_px)
    if pred.shape != gt.shape or gt.shape[0] == 0:
        raise ValueError(f"need equal non-empty (T, 4) arrays, got {pred.shape} and {gt.shape}")
    pred[0] = gt[0]
    valid = (gt[:, 2] > 0) & (gt[:, 3] > 0)
    if target_visible is not None:
        target_visible = np.asarray(target_visible)
        if target_visible.shape != (gt.shape[0],) or target_visible.dtype != np.bool_:
            raise ValueError(f"target_visible must be ({gt.shape[0]},) bool, got {target_visible.shape} "
                             f"{target_visible.dtype}")
        valid &= target_visible
    ious = np.where(valid, inclusive_iou_xywh(pred, gt), -1.0)
    offsets = _centers(pred) - _centers(gt)
    safe_size = np.where(valid[:, None], gt[:, 2:], 1.0)
    center_errors = np.where(valid, np.linalg.norm(offsets, axis=1), np.inf)
    normalized_errors = np.where(valid, np.linalg.norm(offsets / safe_size, axis=1), np.inf)
    denominator = int(valid.sum()) if exclude_invalid_frames else gt.shape[0]
    if denominator == 0:
        raise ValueError("no valid frame left to evaluate (all ground-truth boxes invalid or absent)")
    return SotSequenceResult(
        success_curve=(ious[:, None] > OVERLAP_THRESHOLDS[None, :]).sum(axis=0) / denominator,
        precision_curve=(center_errors[:, None] <= CENTER_THRESHOLDS_PX[None, :]).sum(axis=0) / denominator,
        normalized_precision_curve=(
            (normalized_errors[:, None] <= NORMALIZED_CENTER_THRESHOLDS[None, :]).sum(axis=0) / denominator
        ),
        ious=ious,
        center_errors_px=center_errors,
    )


def summarize_sot(results: Sequence[SotSequenceResult]) -> SotSummary:
    """Average per-sequence curves (equal weight per sequence) and read off AUC, P@20 px and P_norm@0.2."""
    if len(results) == 0:
        raise ValueError("summarize_sot needs at least one sequence result, got 0")
    success = np.mean([r.success_curve for r in results], axis=0)
    precision = np.mean([r.precision_curve for r in results], axis=0)
    normalized = np.mean([r.normalized_precision_curve for r in results], axis=0)
    return SotSummary(
        auc=float(success.mean()),
        precision=float(precision[np.flatnonzero(CENTER_THRESHOLDS_PX == PRECISION_THRESHOLD_PX)[0]]),
        normalized_precision=float(
            normalized[np.flatnonzero(np.isclose(NORMALIZED_CENTER_THRESHOLDS, NORMALIZED_PRECISION_THRESHOLD))[0]]
        ),
        success_curve=success,
        precision_curve=precision,
        normalized_precision_curve=normalized,
    )
