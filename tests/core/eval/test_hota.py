from __future__ import annotations

import numpy as np
import pytest

from uninext_core.eval.hota import ALPHAS, evaluate_hota, hota_scores, hota_sequence_stats
from uninext_core.eval.track_frames import TrackFrame

GT_BOX = [0.0, 0.0, 10.0, 10.0]


def _frame(ids: list[int], boxes: list[list[float]]) -> TrackFrame:
    return TrackFrame(ids=np.array(ids, dtype=np.int64), boxes_xyxy_px=np.array(boxes, dtype=np.float64).reshape(-1, 4))


def test_alphas_are_the_19_thresholds():
    np.testing.assert_allclose(ALPHAS, np.linspace(0.05, 0.95, 19))


def test_one_perfect_track_at_iou_072():
    # One object, one track, IoU 0.72 in every frame: every α ≤ 0.72 (0.05 … 0.70, 14 values) gives DetA = AssA = 1,
    # the other 5 give no TP at all. HOTA = mean over α of the indicator = 14/19.
    gt = [_frame([1], [GT_BOX])] * 5
    pred = [_frame([3], [[0.0, 0.0, 10.0, 7.2]])] * 5
    scores = evaluate_hota(gt, pred)
    expected_indicator = (ALPHAS <= 0.72).astype(float)
    np.testing.assert_allclose(scores.hota_per_alpha, expected_indicator)
    assert scores.hota == pytest.approx(14 / 19)
    assert scores.deta == pytest.approx(14 / 19) and scores.assa == pytest.approx(14 / 19)
    # LocA is the mean IoU of TPs where there are TPs and 1 (TrackEval's convention) where there are none.
    assert scores.loca == pytest.approx((14 * 0.72 + 5 * 1.0) / 19)


def test_id_switch_halves_association():
    # Perfect boxes, but the track id changes halfway: DetA = 1; each (gt, track) pair has 2 matches with
    # |gt| = 4, |track| = 2 → Jaccard 2 / (4 + 2 - 2) = 0.5 → AssA = 0.5, HOTA = sqrt(0.5).
    gt = [_frame([1], [GT_BOX])] * 4
    pred = [_frame([1], [GT_BOX])] * 2 + [_frame([2], [GT_BOX])] * 2
    scores = evaluate_hota(gt, pred)
    assert scores.deta == pytest.approx(1.0)
    assert scores.assa == pytest.approx(0.5)
    assert scores.hota == pytest.approx(np.sqrt(0.5))
    assert scores.assre == pytest.approx(0.5) and scores.asspr == pytest.approx(1.0)


def test_misses_and_false_positives_enter_deta():
    # Frames: (gt 1 matched), (gt 1 missed), (an extra false positive next to the match): TP 2, FN 1, FP 1.
    gt = [_frame([1], [GT_BOX]), _frame([1], [GT_BOX]), _frame([1], [GT_BOX])]
    pred = [_frame([5], [GT_BOX]), _frame([], []), _frame([5, 6], [GT_BOX, [50.0, 50.0, 60.0, 60.0]])]
    scores = evaluate_hota(gt, pred)
    assert scores.deta == pytest.approx(2 / 4)
    # Pair (1, 5): 2 matches, |gt 1| = 3, |track 5| = 2 → AssA = 2 / 3.
    assert scores.assa == pytest.approx(2 / 3)
    assert scores.detre == pytest.approx(2 / 3) and scores.detpr == pytest.approx(2 / 3)


def test_sequences_combine_by_summing_counts():
    perfect = hota_sequence_stats([_frame([1], [GT_BOX])] * 3, [_frame([1], [GT_BOX])] * 3)
    empty_tracker = hota_sequence_stats([_frame([1], [GT_BOX])], [_frame([], [])])
    combined = hota_scores([perfect, empty_tracker])
    assert combined.deta == pytest.approx(3 / 4)
    assert combined.assa == pytest.approx(1.0)
    assert combined.hota == pytest.approx(np.sqrt(3 / 4))


def test_hota_on_masks_equals_hota_on_matching_boxes():
    masks = np.zeros((1, 20, 20), dtype=bool)
    masks[0, :10, :10] = True
    shifted = np.zeros((1, 20, 20), dtype=bool)
    shifted[0, :10, 2:12] = True  # IoU 80 / 120
    gt = [TrackFrame(np.array([1]), boxes_xyxy_px=np.array([GT_BOX]), masks=masks)] * 3
    pred = [TrackFrame(np.array([2]), boxes_xyxy_px=np.array([[2.0, 0.0, 12.0, 10.0]]), masks=shifted)] * 3
    by_mask = evaluate_hota(gt, pred, iou_type="mask")
    by_box = evaluate_hota(gt, pred, iou_type="bbox")
    assert by_mask.hota == pytest.approx(by_box.hota)
    assert by_mask.hota == pytest.approx(float((ALPHAS <= 80 / 120).mean()))
