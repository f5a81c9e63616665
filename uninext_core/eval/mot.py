"""CLEAR MOT and identity metrics (MOTA, MOTP, IDF1, …) through motmetrics, on boxes (MOT) or masks (MOTS).

motmetrics does the per-frame matching and all counting (`MOTAccumulator`, `metrics.create().compute_many`);
we supply the distance matrix ourselves — 1 − IoU, NaN where the IoU is below 1 − max_distance (0.5 by default,
the MOTChallenge and BDD100K rule) — because motmetrics' own `distances.iou_matrix` fails on numpy 2.

MOTP is reported as the mean IoU of matched pairs (`motp_iou`, higher is better, as MOTChallenge prints it),
i.e. 1 − motmetrics' distance-based motp. `soft_mota` = (Σ IoU over matched pairs − FP − IDSW) / GT, which on masks
is sMOTSA (Voigtlaender et al., MOTS, CVPR 2019); on masks `mota` is MOTSA and `motp_iou` MOTSP. Ignore regions
and class-averaged (mMOTA) scores are left to the caller: filter frames per class and average the results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import motmetrics
import numpy as np

from uninext_core.eval.track_frames import IouType, TrackFrame, check_sequence_pair, frame_iou

OVERALL = "OVERALL"
_METRICS = (
    "mota", "motp", "idf1", "idp", "idr", "precision", "recall", "num_objects", "num_predictions", "num_matches",
    "num_detections", "num_false_positives", "num_misses", "num_switches", "num_fragmentations",
    "num_unique_objects", "mostly_tracked", "partially_tracked", "mostly_lost",
)


class ClearMotScores(NamedTuple):
    """CLEAR MOT + identity scores of one sequence or of all sequences together.

    Fractions: mota (≤ 1, can be negative), motp_iou, soft_mota, idf1, idp, idr, precision, recall.
    Counts: num_objects (ground-truth instances), num_predictions, num_detections (matched pairs incl. switches),
    num_false_positives, num_misses, num_switches, num_fragmentations, num_unique_objects, mostly_tracked,
    partially_tracked, mostly_lost. A fraction with a zero denominator is NaN.
    """

    mota: float
    motp_iou: float
    soft_mota: float
    idf1: float
    idp: float
    idr: float
    precision: float
    recall: float
    num_objects: int
    num_predictions: int
    num_detections: int
    num_false_positives: int
    num_misses: int
    num_switches: int
    num_fragmentations: int
    num_unique_objects: int
    mostly_tracked: int
    partially_tracked: int
    mostly_lost: int


class MotReport(NamedTuple):
    """Scores per sequence name and over all sequences (motmetrics' OVERALL row)."""

    per_sequence: dict[str, ClearMotScores]
    overall: ClearMotScores


def iou_distance_matrix(
    gt: TrackFrame, pred: TrackFrame, *, iou_type: IouType, max_distance: float = 0.5
) -> np.ndarray:
    """motmetrics distances for one frame: (G, P) float64 1 − IoU, NaN (no match allowed) above max_distance."""
    if not 0.0 <= max_distance <= 1.0:
        raise ValueError(f"max_distance must be in [0, 1], got {max_distance}")
    distances = 1.0 - frame_iou(gt, pred, iou_type=iou_type)
    distances[distances > max_distance] = np.nan
    return distances


def mot_accumulator(
    gt_frames: Sequence[TrackFrame],
    pred_frames: Sequence[TrackFrame],
    *,
    iou_type: IouType = "bbox",
    max_distance: float = 0.5,
) -> motmetrics.MOTAccumulator:
    """Fill a motmetrics accumulator with one sequence, frame i of the prediction against frame i of the truth."""
    check_sequence_pair(list(gt_frames), list(pred_frames), "sequence")
    accumulator = motmetrics.MOTAccumulator(auto_id=True)
    for gt, pred in zip(gt_frames, pred_frames, strict=True):
        distances = iou_distance_matrix(gt, pred, iou_type=iou_type, max_distance=max_distance)
        accumulator.update(gt.ids.tolist(), pred.ids.tolist(), distances)
    return accumulator


def _scores(row: Mapping[str, float]) -> ClearMotScores:
    num_objects = int(row["num_objects"])
    num_detections = int(row["num_detections"])
    motp_distance = float(row["motp"])
    motp_iou = 1.0 - motp_distance if num_detections else float("nan")
    soft_tp = num_detections * motp_iou if num_detections else 0.0
    soft_mota = (
        (soft_tp - int(row["num_false_positives"]) - int(row["num_switches"])) / num_objects
        if num_objects
        else float("nan")
    )
    return ClearMotScores(
        mota=float(row["mota"]),
        motp_iou=motp_iou,
        soft_mota=soft_mota,
        idf1=float(row["idf1"]),
        idp=float(row["idp"]),
        idr=float(row["idr"]),
        precision=float(row["precision"]),
        recall=float(row["recall"]),
        num_objects=num_objects,
        num_predictions=int(row["num_predictions"]),
        num_detections=num_detections,
        num_false_positives=int(row["num_false_positives"]),
        num_misses=int(row["num_misses"]),
        num_switches=int(row["num_switches"]),
        num_fragmentations=int(row["num_fragmentations"]),
        num_unique_objects=int(row["num_unique_objects"]),
        mostly_tracked=int(row["mostly_tracked"]),
        partially_tracked=int(row["partially_tracked"]),
        mostly_lost=int(row["mostly_lost"]),
    )


def evaluate_clear_mot(
    *,
    gt: Mapping[str, Sequence[TrackFrame]],
    pred: Mapping[str, Sequence[TrackFrame]],
    iou_type: IouType = "bbox",
    max_distance: float = 0.5,
) -> MotReport:
    """CLEAR MOT and IDF1 per sequence and overall.

    Args:
        gt: sequence name → ground-truth frames in order.
        pred: sequence name → tracker frames, the same names and frame counts.
        iou_type: "bbox" (MOT, boxes_xyxy_px) or "mask" (MOTS, masks).
        max_distance: largest 1 − IoU that may match (0.5: IoU ≥ 0.5).

    Returns:
        Per-sequence and overall scores.
    """
    if set(gt) != set(pred) or not gt:
        raise ValueError(f"gt and pred must name the same non-empty sequences, got {sorted(gt)} and {sorted(pred)}")
    if OVERALL in gt:
        raise ValueError(f"{OVERALL!r} is reserved for the combined row; rename that sequence")
    names = sorted(gt)
    accumulators = [mot_accumulator(gt[n], pred[n], iou_type=iou_type, max_distance=max_distance) for n in names]
    table = motmetrics.metrics.create().compute_many(
        accumulators, metrics=list(_METRICS), names=names, generate_overall=True
    )
    per_sequence = {name: _scores(table.loc[name]) for name in names}
    return MotReport(per_sequence=per_sequence, overall=_scores(table.loc[OVERALL]))
