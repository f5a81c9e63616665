from __future__ import annotations

import numpy as np
import pytest

from uninext_core.eval.rec import evaluate_rec, evaluate_res


def test_rec_accuracy_counts_iou_strictly_above_half():
    gt = np.array([[0, 0, 10, 10]] * 4, dtype=np.float32)
    pred = np.array([
        [0, 0, 10, 10],  # IoU 1
        [0, 0, 10, 5],  # IoU 0.5: not above 0.5
        [0, 0, 10, 7],  # IoU 0.7
        [50, 50, 60, 60],  # IoU 0
    ], dtype=np.float32)
    result = evaluate_rec(pred_boxes_xyxy_px=pred, gt_boxes_xyxy_px=gt)
    np.testing.assert_allclose(result.ious, [1.0, 0.5, 0.7, 0.0])
    assert result.accuracy == pytest.approx(0.5)
    assert result.precision_at[0.6] == pytest.approx(0.5)
    assert result.precision_at[0.7] == pytest.approx(0.25)  # 0.7 is not above 0.7
    assert result.precision_at[0.9] == pytest.approx(0.25)


def test_res_overall_and_mean_iou_hand_computed():
    gt_a = np.zeros((4, 4), dtype=bool)
    gt_a[:2] = True  # 8 px
    pred_a = np.zeros((4, 4), dtype=bool)
    pred_a[:1] = True  # 4 px inside: IoU 4/8
    gt_b = np.zeros((10, 10), dtype=bool)
    gt_b[:5, :4] = True  # 20 px
    pred_b = gt_b.copy()  # IoU 1
    empty = np.zeros((3, 3), dtype=bool)
    result = evaluate_res(pred_masks=[pred_a, pred_b, empty], gt_masks=[gt_a, gt_b, empty])
    np.testing.assert_allclose(result.ious, [0.5, 1.0, 0.0])
    assert result.overall_iou == pytest.approx((4 + 20) / (8 + 20))
    assert result.mean_iou == pytest.approx(1.5 / 3)


def test_rec_and_res_validate_inputs():
    with pytest.raises(ValueError, match="equal shape"):
        evaluate_rec(pred_boxes_xyxy_px=np.zeros((2, 4)), gt_boxes_xyxy_px=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="as many"):
        evaluate_res(pred_masks=[np.zeros((2, 2), bool)], gt_masks=[])
    with pytest.raises(TypeError, match="bool"):
        evaluate_res(pred_masks=[np.zeros((2, 2))], gt_masks=[np.zeros((2, 2), bool)])
