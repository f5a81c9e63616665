"""HOTA, DetA, AssA and LocA (Luiten et al., "HOTA: A Higher Order Metric for Evaluating Multi-object Tracking",
IJCV 2021), on boxes or masks.

Definitions as the paper gives them and TrackEval implements them:
* For each localisation threshold α ∈ {0.05, 0.10, …, 0.95} (19 values), detections are matched one-to-one per
  frame by the Hungarian algorithm (scipy `linear_sum_assignment`) maximising global-alignment-weighted
  similarity, A_gt,pr × IoU, where A is the id-level Jaccard score of soft (IoU/(IoU-row + IoU-column − IoU))
  co-occurrence counts over the whole sequence; a matched pair counts as a TP at α when IoU ≥ α.
* DetA_α = |TP| / (|TP| + |FN| + |FP|).
* AssA_α = (1/|TP|) Σ_{c ∈ TP} |TPA(c)| / (|TPA(c)| + |FNA(c)| + |FPA(c)|), computed per (gt id, predicted id) pair
  as n / (n_gt + n_pr − n) weighted by its n matches; AssRe and AssPr use n / n_gt and n / n_pr.
* HOTA_α = sqrt(DetA_α · AssA_α); LocA_α = mean IoU of the TPs (1 when there is none, as TrackEval sets it).
* The reported HOTA, DetA, AssA, LocA are the means over the 19 α. Several sequences combine by summing the
  counts and the TP-weighted association sums (TrackEval's `combine_sequences`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from uninext_core.eval.track_frames import IouType, TrackFrame, check_sequence_pair, frame_iou

ALPHAS = np.arange(0.05, 0.99, 0.05)  # 0.05 … 0.95, the 19 thresholds TrackEval uses
_EPS = np.finfo(np.float64).eps


class HotaStats(NamedTuple):
    """Additive HOTA statistics of one or more sequences, each (19,) float64 over ALPHAS.

    tp, fn, fp: detection counts; ass_a_sum, ass_re_sum, ass_pr_sum: Σ over TPs of their association score
    (= score × |TP|); loc_sum: Σ IoU over TPs.
    """

    tp: np.ndarray
    fn: np.ndarray
    fp: np.ndarray
    ass_a_sum: np.ndarray
    ass_re_sum: np.ndarray
    ass_pr_sum: np.ndarray
    loc_sum: np.ndarray

    def __add__(self, other: HotaStats) -> HotaStats:  # type: ignore[override]
        return HotaStats(*(a + b for a, b in zip(self, other, strict=True)))


class HotaScores(NamedTuple):
    """HOTA family, fractions in [0, 1]: the scalar fields are means over ALPHAS; `*_per_alpha` are (19,) arrays."""

    hota: float
    deta: float
    assa: float
    loca: float
    detre: float
    detpr: float
    assre: float
    asspr: float
    hota_per_alpha: np.ndarray
    deta_per_alpha: np.ndarray
    assa_per_alpha: np.ndarray
    loca_per_alpha: np.ndarray


def _contiguous(ids_per_frame: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """Map arbitrary track ids to 0..K-1 over the sequence."""
    unique = np.unique(np.concatenate(ids_per_frame)) if ids_per_frame else np.zeros(0, dtype=np.int64)
    return [np.searchsorted(unique, ids) for ids in ids_per_frame], int(unique.size)


def hota_sequence_stats(
    gt_frames: Sequence[TrackFrame], pred_frames: Sequence[TrackFrame], *, iou_type: IouType = "bbox"
) -> HotaStats:
    """HOTA statistics of one sequence (frame i of the prediction against frame i of the ground truth).

    Cost: two passes over the frames; one Hungarian assignment per frame on a (G_t, P_t) matrix.
    """
    gt_frames, pred_frames = list(gt_frames), list(pred_frames)
    check_sequence_pair(gt_frames, pred_frames, "sequence")
    gt_ids, num_gt_ids = _contiguous([f.ids for f in gt_frames])
    pred_ids, num_pred_ids = _contiguous([f.ids for f in pred_frames])
    similarities = [frame_iou(g, p, iou_type=iou_type) for g, p in zip(gt_frames, pred_frames, strict=True)]
    num_alphas = ALPHAS.size

    # Pass 1: soft co-occurrence of id pairs → global alignment score A (id-level Jaccard).
    potential = np.zeros((num_gt_ids, num_pred_ids))
    gt_id_count = np.zeros((num_gt_ids, 1))
    pred_id_count = np.zeros((1, num_pred_ids))
    for g_ids, p_ids, sim in zip(gt_ids, pred_ids, similarities, strict=True):
        denominator = sim.sum(axis=0, keepdims=True) + sim.sum(axis=1, keepdims=True) - sim
        soft = np.divide(sim, denominator, out=np.zeros_like(sim), where=denominator > _EPS)
        potential[g_ids[:, None], p_ids[None, :]] += soft
        gt_id_count[g_ids] += 1
        pred_id_count[0, p_ids] += 1
    alignment = potential / np.maximum(gt_id_count + pred_id_count - potential, _EPS)

    # Pass 2: per-frame Hungarian matching, then TP/FN/FP per α and id-pair match counts.
    tp, fn, fp, loc_sum = (np.zeros(num_alphas) for _ in range(4))
    pair_matches = np.zeros((num_alphas, num_gt_ids, num_pred_ids))
    for g_ids, p_ids, sim in zip(gt_ids, pred_ids, similarities, strict=True):
        if g_ids.size == 0 or p_ids.size == 0:
            fn += g_ids.size
            fp += p_ids.size
            continue
        rows, cols = linear_sum_assignment(-(alignment[g_ids[:, None], p_ids[None, :]] * sim))
        matched_sim = sim[rows, cols]
        for a, alpha in enumerate(ALPHAS):
            keep = matched_sim >= alpha - _EPS
            num_matches = int(keep.sum())
            tp[a] += num_matches
            fn[a] += g_ids.size - num_matches
            fp[a] += p_ids.size - num_matches
            loc_sum[a] += matched_sim[keep].sum()
            pair_matches[a, g_ids[rows[keep]], p_ids[cols[keep]]] += 1

    ass_a = pair_matches / np.maximum(1.0, gt_id_count + pred_id_count - pair_matches)
    ass_re = pair_matches / np.maximum(1.0, gt_id_count)
    ass_pr = pair_matches / np.maximum(1.0, pred_id_count)
    return HotaStats(
        tp=tp, fn=fn, fp=fp,
        ass_a_sum=(pair_matches * ass_a).sum(axis=(1, 2)),
        ass_re_sum=(pair_matches * ass_re).sum(axis=(1, 2)),
        ass_pr_sum=(pair_matches * ass_pr).sum(axis=(1, 2)),
        loc_sum=loc_sum,
    )


def hota_scores(stats: HotaStats | Sequence[HotaStats]) -> HotaScores:
    """HOTA, DetA, AssA, LocA (and recall/precision parts) from one or several sequences' statistics."""
    if not isinstance(stats, HotaStats):
        if len(stats) == 0:
            raise ValueError("hota_scores needs at least one HotaStats, got 0")
        total = stats[0]
        for more in stats[1:]:
            total = total + more
        stats = total
    tp = stats.tp
    deta = tp / np.maximum(1.0, tp + stats.fn + stats.fp)
    detre = tp / np.maximum(1.0, tp + stats.fn)
    detpr = tp / np.maximum(1.0, tp + stats.fp)
    assa = stats.ass_a_sum / np.maximum(1.0, tp)
    assre = stats.ass_re_sum / np.maximum(1.0, tp)
    asspr = stats.ass_pr_sum / np.maximum(1.0, tp)
    loca = np.maximum(1e-10, stats.loc_sum) / np.maximum(1e-10, tp)
    hota = np.sqrt(deta * assa)
    return HotaScores(
        hota=float(hota.mean()), deta=float(deta.mean()), assa=float(assa.mean()), loca=float(loca.mean()),
        detre=float(detre.mean()), detpr=float(detpr.mean()), assre=float(assre.mean()), asspr=float(asspr.mean()),
        hota_per_alpha=hota, deta_per_alpha=deta, assa_per_alpha=assa, loca_per_alpha=loca,
    )


def evaluate_hota(
    gt_frames: Sequence[TrackFrame], pred_frames: Sequence[TrackFrame], *, iou_type: IouType = "bbox"
) -> HotaScores:
    """HOTA scores of one sequence; for a dataset, sum `hota_sequence_stats` over sequences and call `hota_scores`."""
    return hota_scores(hota_sequence_stats(gt_frames, pred_frames, iou_type=iou_type))
