from __future__ import annotations

import numpy as np
import pytest

from uninext_core.eval.sot import evaluate_sot_sequence, inclusive_iou_xywh, summarize_sot


def test_inclusive_pixel_iou():
    # [0,0,10,10] covers pixels 0..9; [5,0,10,10] covers 5..14: 5×10 shared of 150.
    iou = inclusive_iou_xywh(np.array([[0, 0, 10, 10], [0, 0, 1, 1]]), np.array([[5, 0, 10, 10], [1, 0, 1, 1]]))
    np.testing.assert_allclose(iou, [50 / 150, 0.0])


def test_perfect_tracker():
    gt = np.array([[10, 10, 20, 30]] * 5, dtype=np.float64)
    summary = summarize_sot([evaluate_sot_sequence(pred_boxes_xywh_px=gt, gt_boxes_xywh_px=gt)])
    # IoU 1 is above every threshold except 1.0 itself: 20 of 21.
    assert summary.auc == pytest.approx(20 / 21)
    assert summary.precision == 1.0 and summary.normalized_precision == 1.0


def test_first_frame_is_replaced_by_ground_truth_and_shift_scores_by_hand():
    gt = np.array([[0, 0, 10, 10]] * 4, dtype=np.float64)
    pred = np.array([[90, 90, 10, 10], [5, 0, 10, 10], [5, 0, 10, 10], [30, 0, 10, 10]], dtype=np.float64)
    result = evaluate_sot_sequence(pred_boxes_xywh_px=pred, gt_boxes_xywh_px=gt)
    np.testing.assert_allclose(result.ious, [1.0, 1 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(result.center_errors_px, [0.0, 5.0, 5.0, 30.0])
    # success: frame 0 above all thresholds but 1.0; frames 1-2 (IoU 1/3) above 0, 0.05 … 0.3 (7 thresholds);
    # frame 3 (IoU 0) above none.  AUC = (20 + 7 + 7) / 21 / 4.
    assert result.success_curve.mean() == pytest.approx((20 + 7 + 7) / 21 / 4)
    summary = summarize_sot([result])
    assert summary.precision == pytest.approx(3 / 4)  # 30 px misses the 20 px threshold
    assert summary.normalized_precision == pytest.approx(1 / 4)  # 5 / 10 = 0.5 > 0.2; only frame 0


def test_absent_target_frames_fail_or_leave_the_denominator():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0], [0, 0, 10, 10]], dtype=np.float64)
    visible = np.array([True, True, True, False])
    kept = evaluate_sot_sequence(pred_boxes_xywh_px=gt, gt_boxes_xywh_px=gt, target_visible=visible)
    assert kept.precision_curve[20] == pytest.approx(2 / 4)
    dropped = evaluate_sot_sequence(pred_boxes_xywh_px=gt, gt_boxes_xywh_px=gt, target_visible=visible,
                                    exclude_invalid_frames=True)
    assert dropped.precision_curve[20] == pytest.approx(1.0)
    assert dropped.normalized_precision_curve[20] == pytest.approx(1.0)


def test_sequences_weigh_equally():
    gt = np.array([[0, 0, 10, 10]] * 2, dtype=np.float64)
    good = evaluate_sot_sequence(pred_boxes_xywh_px=gt, gt_boxes_xywh_px=gt)
    long_gt = np.array([[0, 0, 10, 10]] * 10, dtype=np.float64)
    long_pred = long_gt.copy()
    long_pred[1:, 0] = 100.0
    bad = evaluate_sot_sequence(pred_boxes_xywh_px=long_pred, gt_boxes_xywh_px=long_gt)
    assert summarize_sot([good, bad]).precision == pytest.approx((1.0 + 0.1) / 2)


def test_sot_validates_inputs():
    with pytest.raises(ValueError, match="equal"):
        evaluate_sot_sequence(pred_boxes_xywh_px=np.zeros((2, 4)), gt_boxes_xywh_px=np.ones((3, 4)))
    with pytest.raises(ValueError, match="target_visible"):
        evaluate_sot_sequence(pred_boxes_xywh_px=np.ones((2, 4)), gt_boxes_xywh_px=np.ones((2, 4)),
                              target_visible=np.ones(2))
    with pytest.raises(ValueError, match="at least one"):
        summarize_sot([])
