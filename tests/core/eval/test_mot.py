from __future__ import annotations

import numpy as np
import pytest

from uninext_core.eval.mot import evaluate_clear_mot, iou_distance_matrix
from uninext_core.eval.track_frames import TrackFrame

BOX_A = [0.0, 0.0, 10.0, 10.0]
BOX_B = [20.0, 0.0, 30.0, 10.0]


def _frame(ids: list[int], boxes: list[list[float]]) -> TrackFrame:
    return TrackFrame(ids=np.array(ids, dtype=np.int64), boxes_xyxy_px=np.array(boxes, dtype=np.float64).reshape(-1, 4))


def test_distance_matrix_is_one_minus_iou_with_nan_below_half():
    gt = _frame([1, 2], [BOX_A, BOX_B])
    pred = _frame([5, 6], [[0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 10.0, 4.0]])  # IoU 0.5 and 0.4 with BOX_A
    distances = iou_distance_matrix(gt, pred, iou_type="bbox")
    np.testing.assert_allclose(distances[0], [0.5, np.nan])
    assert np.isnan(distances[1]).all()


def test_swap_false_positive_and_miss_by_hand():
    gt = {"seq": [_frame([1, 2], [BOX_A, BOX_B])] * 4}
    pred = {"seq": [
        _frame([7, 8], [BOX_A, BOX_B]),
        _frame([7, 8, 9], [BOX_A, BOX_B, [100.0, 100.0, 110.0, 110.0]]),  # 9 is a false positive
        _frame([8, 7], [BOX_A, [20.0, 0.0, 30.0, 8.0]]),  # ids swapped: two switches; IoU 0.8 for object 2
        _frame([8], [BOX_A]),  # object 2 missed
    ]}
    scores = evaluate_clear_mot(gt=gt, pred=pred).per_sequence["seq"]
    assert (scores.num_objects, scores.num_false_positives, scores.num_misses, scores.num_switches) == (8, 1, 1, 2)
    assert scores.mota == pytest.approx(1 - (1 + 1 + 2) / 8)
    assert scores.motp_iou == pytest.approx((6 * 1.0 + 0.8) / 7)
    assert scores.soft_mota == pytest.approx((6.8 - 1 - 2) / 8)
    # IDF1: best global id pairing 1↔7 (frames 0, 1), 2↔8 (frames 0, 1) — or 1↔8 (frames 2, 3), 2↔7 (frame 2):
    # the first gives IDTP 4; IDFN = 8 - 4, IDFP = 8 - 4 → IDF1 = 2·4 / (8 + 8).
    assert scores.idf1 == pytest.approx(8 / 16)


def test_overall_row_pools_sequences_and_masks_work():
    masks_a = np.zeros((1, 12, 12), dtype=bool)
    masks_a[0, :6, :6] = True
    half = np.zeros((1, 12, 12), dtype=bool)
    half[0, :6, :3] = True  # IoU 0.5 with masks_a: still a match
    gt_frames = [TrackFrame(np.array([1]), masks=masks_a)] * 2
    good = [TrackFrame(np.array([4]), masks=masks_a)] * 2
    partial = [TrackFrame(np.array([4]), masks=half), TrackFrame(np.array([], dtype=np.int64),
                                                                 masks=np.zeros((0, 12, 12), bool))]
    report = evaluate_clear_mot(gt={"a": gt_frames, "b": gt_frames}, pred={"a": good, "b": partial}, iou_type="mask")
    assert report.per_sequence["a"].mota == pytest.approx(1.0)
    assert report.per_sequence["b"].mota == pytest.approx(0.5)
    assert report.per_sequence["b"].motp_iou == pytest.approx(0.5)
    assert report.overall.mota == pytest.approx(0.75)
    assert report.overall.num_objects == 4


def test_mot_validates_inputs():
    with pytest.raises(ValueError, match="same non-empty"):
        evaluate_clear_mot(gt={"a": []}, pred={"b": []})
    with pytest.raises(ValueError, match="frame counts"):
        evaluate_clear_mot(gt={"a": [_frame([1], [BOX_A])]}, pred={"a": []})
    with pytest.raises(ValueError, match="needs masks"):
        evaluate_clear_mot(gt={"a": [_frame([1], [BOX_A])]}, pred={"a": [_frame([1], [BOX_A])]}, iou_type="mask")
    with pytest.raises(ValueError, match="unique"):
        _frame([1, 1], [BOX_A, BOX_B])
