"""DAVIS video-object-segmentation metrics: region similarity J, boundary F-measure F, and their statistics.

Definitions follow the DAVIS 2017 evaluation (davis2017-evaluation, `metrics.py`, `utils.db_statistics`,
`evaluation.py`):
* J = |M ∩ G| / |M ∪ G| per frame; 1 when both masks are empty.
* F: boundaries are the one-pixel maps of `seg2bmap` (a pixel is on the boundary when it differs from its east,
  south or south-east neighbour; the last row compares east only, the last column south only, the bottom-right
  pixel is never on it). Each map is dilated with a disk of radius ceil(bound_th × image diagonal) pixels
  (bound_th 0.008; a bound_th ≥ 1 is a radius in pixels) using cv2; precision = predicted boundary pixels within
  the tolerance of the ground-truth boundary / predicted boundary pixels, recall symmetrically, F = 2PR/(P+R).
  No predicted boundary: P = 1, R = 0 (both empty: P = R = 1); no ground-truth boundary: P = 0, R = 1.
* Statistics over a sequence's frames: mean, recall = fraction of frames above 0.5, decay = mean of the first
  quarter minus mean of the last quarter (four overlapping bins at indices round(linspace(1, T, 5)) - 1).
* Semi-supervised protocol: the first frame (given) and the last frame are left out; each object is one entry;
  the dataset J&F mean = (mean over objects of J mean + mean over objects of F mean) / 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

DEFAULT_BOUND_TH = 0.008


class DavisStatistics(NamedTuple):
    """Mean, recall (fraction of frames > 0.5) and decay of per-frame values, each a float."""

    mean: float
    recall: float
    decay: float


class DavisObjectResult(NamedTuple):
    """Per-frame J and F of one object ((T',) float64, evaluated frames only) and their statistics."""

    j_per_frame: np.ndarray
    f_per_frame: np.ndarray
    j: DavisStatistics
    f: DavisStatistics


class DavisSummary(NamedTuple):
    """Dataset scores as the DAVIS table prints them, fractions in [0, 1]."""

    jf_mean: float
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim not in (2, 3):
        raise ValueError(f"need masks of equal shape (H, W) or (T, H, W), got {gt.shape} and {pred.shape}")
    if gt.dtype != np.bool_ or pred.dtype != np.bool_:
        raise TypeError(f"masks must be bool, got {gt.dtype} and {pred.dtype}")
    return gt, pred


def region_similarity(gt_masks: np.ndarray, pred_masks: np.ndarray) -> np.ndarray:
    """J per frame.

    Args:
        gt_masks: (T, H, W) or (H, W) bool ground truth.
        pred_masks: same shape, bool prediction.

    Returns:
        (T,) float64 (or a 0-d array for a single frame), 1 where both masks are empty.
    """
    gt, pred = _check_pair(gt_masks, pred_masks)
    intersection = np.count_nonzero(gt & pred, axis=(-2, -1)).astype(np.float64)
    union = np.count_nonzero(gt | pred, axis=(-2, -1)).astype(np.float64)
    return np.divide(intersection, union, out=np.ones_like(union), where=union > 0)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """DAVIS `seg2bmap` at the mask's own size: (H, W) bool → (H, W) bool one-pixel boundary (see module doc)."""
    seg = np.asarray(mask)
    if seg.ndim != 2 or seg.dtype != np.bool_:
        raise ValueError(f"mask must be (H, W) bool, got {seg.shape} {seg.dtype}")
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


def _disk(radius: int) -> np.ndarray:
    """Disk structuring element: pixels with dx² + dy² ≤ radius² ((2r+1, 2r+1) uint8), as skimage.morphology.disk."""
    offsets = np.arange(-radius, radius + 1)
    return ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius**2).astype(np.uint8)


def boundary_tolerance_px(height: int, width: int, bound_th: float = DEFAULT_BOUND_TH) -> int:
    """Dilation radius: bound_th itself when ≥ 1, else ceil(bound_th × sqrt(H² + W²))."""
    if bound_th <= 0:
        raise ValueError(f"bound_th must be positive, got {bound_th}")
    return int(bound_th) if bound_th >= 1 else math.ceil(bound_th * math.hypot(height, width))


def _f_measure_frame(gt: np.ndarray, pred: np.ndarray, kernel: np.ndarray) -> float:
    gt_boundary = boundary_map(gt)
    pred_boundary = boundary_map(pred)
    num_gt = int(np.count_nonzero(gt_boundary))
    num_pred = int(np.count_nonzero(pred_boundary))
    if num_pred == 0 and num_gt == 0:
        return 1.0
    if num_pred == 0:
        precision, recall = 1.0, 0.0
    elif num_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        gt_dilated = cv2.dilate(gt_boundary.astype(np.uint8), kernel).astype(bool)
        pred_dilated = cv2.dilate(pred_boundary.astype(np.uint8), kernel).astype(bool)
        precision = np.count_nonzero(pred_boundary & gt_dilated) / num_pred
        recall = np.count_nonzero(gt_boundary & pred_dilated) / num_gt
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def boundary_f_measure(
    gt_masks: np.ndarray, pred_masks: np.ndarray, *, bound_th: float = DEFAULT_BOUND_TH
) -> np.ndarray:
    """F per frame.

    Args:
        gt_masks: (T, H, W) or (H, W) bool ground truth.
        pred_masks: same shape, bool prediction.
        bound_th: boundary tolerance as a fraction of the image diagonal (< 1) or in pixels (≥ 1).

    Returns:
        (T,) float64 in [0, 1] (a 0-d array for a single frame).
    """
    gt, pred = _check_pair(gt_masks, pred_masks)
    kernel = _disk(boundary_tolerance_px(gt.shape[-2], gt.shape[-1], bound_th))
    if gt.ndim == 2:
        return np.asarray(_f_measure_frame(gt, pred, kernel))
    return np.array([_f_measure_frame(g, p, kernel) for g, p in zip(gt, pred, strict=True)])


def davis_statistics(per_frame: np.ndarray) -> DavisStatistics:
    """Mean, recall and decay of one object's per-frame J or F ((T,) float; NaNs are skipped as DAVIS does)."""
    values = np.asarray(per_frame, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"per_frame must be a non-empty 1-D array, got shape {values.shape}")
    num_bins = 4
    bin_edges = (np.round(np.linspace(1, values.size, num_bins + 1) + 1e-10) - 1).astype(np.int64)
    bins = [values[bin_edges[i] : bin_edges[i + 1] + 1] for i in range(num_bins)]
    with np.errstate(invalid="ignore"):
        mean = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
        recall = float(np.mean(values > 0.5))
        first = np.nanmean(bins[0]) if np.isfinite(bins[0]).any() else math.nan
        last = np.nanmean(bins[-1]) if np.isfinite(bins[-1]).any() else math.nan
    return DavisStatistics(mean=mean, recall=recall, decay=float(first - last))


def evaluate_davis_sequence(
    *,
    gt_masks: np.ndarray,
    pred_masks: np.ndarray,
    exclude_first_and_last: bool = True,
    bound_th: float = DEFAULT_BOUND_TH,
) -> list[DavisObjectResult]:
    """J and F of every object of one sequence (semi-supervised protocol).

    Args:
        gt_masks: (O, T, H, W) bool, one mask per object and frame.
        pred_masks: (O', T, H, W) bool with O' ≤ O, object k matching ground-truth object k; missing objects are
            scored as empty predictions.
        exclude_first_and_last: leave out frame 0 and frame T-1 (the DAVIS semi-supervised protocol); needs T ≥ 3.
        bound_th: boundary tolerance for F.

    Returns:
        One result per ground-truth object, in order.
    """
    gt = np.asarray(gt_masks)
    pred = np.asarray(pred_masks)
    if gt.ndim != 4 or pred.ndim != 4 or gt.shape[1:] != pred.shape[1:]:
        raise ValueError(f"need (O, T, H, W) arrays with equal T, H, W, got {gt.shape} and {pred.shape}")
    if pred.shape[0] > gt.shape[0]:
        raise ValueError(f"more predicted objects ({pred.shape[0]}) than ground-truth objects ({gt.shape[0]})")
    if pred.shape[0] < gt.shape[0]:
        padding = np.zeros((gt.shape[0] - pred.shape[0], *pred.shape[1:]), dtype=bool)
        pred = np.concatenate([pred, padding], axis=0)
    if exclude_first_and_last:
        if gt.shape[1] < 3:
            raise ValueError(f"excluding the first and last frames needs T ≥ 3, got T = {gt.shape[1]}")
        gt, pred = gt[:, 1:-1], pred[:, 1:-1]
    results = []
    for gt_object, pred_object in zip(gt, pred, strict=True):
        j_frames = region_similarity(gt_object, pred_object)
        f_frames = boundary_f_measure(gt_object, pred_object, bound_th=bound_th)
        results.append(DavisObjectResult(j_frames, f_frames, davis_statistics(j_frames), davis_statistics(f_frames)))
    return results


def summarize_davis(objects: Sequence[DavisObjectResult]) -> DavisSummary:
    """Dataset table: means over all objects of all sequences; J&F mean = (J mean + F mean) / 2."""
    if len(objects) == 0:
        raise ValueError("summarize_davis needs at least one object result, got 0")
    j = np.array([o.j for o in objects], dtype=np.float64)  # (O, 3) mean, recall, decay
    f = np.array([o.f for o in objects], dtype=np.float64)
    j_mean, j_recall, j_decay = j.mean(axis=0).tolist()
    f_mean, f_recall, f_decay = f.mean(axis=0).tolist()
    return DavisSummary(
        jf_mean=(j_mean + f_mean) / 2.0, j_mean=j_mean, j_recall=j_recall, j_decay=j_decay,
        f_mean=f_mean, f_recall=f_recall, f_decay=f_decay,
    )


def objects_from_label_maps(label_maps: np.ndarray, *, num_objects: int) -> np.ndarray:
    """Split DAVIS palette label maps into per-object masks.

    Args:
        label_maps: (T, H, W) integer, 0 = background, k = object k.
        num_objects: number of objects O.

    Returns:
        (O, T, H, W) bool, entry k-1 holding object k.
    """
    labels = np.asarray(label_maps)
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label_maps must be (T, H, W) integer, got {labels.shape} {labels.dtype}")
    object_ids = np.arange(1, num_objects + 1).reshape(-1, 1, 1, 1)
    return labels[None] == object_ids
