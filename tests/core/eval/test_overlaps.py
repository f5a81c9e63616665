from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from uninext_core.eval.overlaps import box_iou_xyxy, mask_areas_and_bounds, mask_iou, paired_box_iou_xyxy


def test_box_iou_hand_computed():
    boxes_a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], dtype=np.float32)
    boxes_b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=np.float32)
    expected = np.array([[50 / 150, 1.0, 0.0], [0.0, 0.0, 0.0]])  # a zero-area box overlaps nothing
    np.testing.assert_allclose(box_iou_xyxy(boxes_a, boxes_b), expected)
    np.testing.assert_allclose(paired_box_iou_xyxy(boxes_a, boxes_b[:2]), [50 / 150, 0.0])


def test_mask_bounds_and_areas():
    masks = np.zeros((2, 6, 7), dtype=bool)
    masks[0, 1:3, 2:5] = True
    masks[0, 4, 6] = True
    areas, bounds = mask_areas_and_bounds(masks)
    np.testing.assert_array_equal(areas, [7, 0])
    np.testing.assert_array_equal(bounds, [[1, 2, 5, 7], [0, 0, 0, 0]])


def test_mask_iou_hand_computed_and_equal_to_pycocotools():
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[0, 0:4, 0:4] = True  # 16 px
    masks[1, 2:6, 2:6] = True  # 16 px, 4 shared with mask 0
    iou = mask_iou(masks, masks)
    np.testing.assert_allclose(iou[0, 1], 4 / 28)
    np.testing.assert_allclose(np.diag(iou), [1.0, 1.0, 0.0])  # the empty mask has IoU 0 even with itself

    rng = np.random.default_rng(0)
    noisy = rng.random((6, 40, 50)) < 0.3
    noisy[:, :10] = False
    rles = mask_utils.encode(np.asfortranarray(noisy.transpose(1, 2, 0).astype(np.uint8)))
    np.testing.assert_allclose(mask_iou(noisy[:4], noisy), mask_utils.iou(rles[:4], rles, [0] * 6))


def test_overlap_inputs_are_validated():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        box_iou_xyxy(np.zeros((2, 3)), np.zeros((1, 4)))
    with pytest.raises(TypeError, match="bool"):
        mask_iou(np.zeros((1, 4, 4), dtype=np.uint8), np.zeros((1, 4, 4), dtype=bool))
    with pytest.raises(ValueError, match="sizes differ"):
        mask_iou(np.zeros((1, 4, 4), dtype=bool), np.zeros((1, 4, 5), dtype=bool))
