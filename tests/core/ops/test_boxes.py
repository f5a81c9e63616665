"""Box conversions, IoU / GIoU and the clamped inverse sigmoid, with hand-computed expectations."""

from __future__ import annotations

import math

import torch

from uninext_core.ops.boxes import (
    box_cxcywh_to_xyxy,
    box_iou,
    box_xyxy_to_cxcywh,
    generalized_box_iou,
    inverse_sigmoid,
    scale_boxes_cxcywh_to_xyxy_px,
)


def test_cxcywh_xyxy_round_trip_keeps_leading_dims():
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.1, 0.2, 0.2, 0.0]]])
    xyxy = box_cxcywh_to_xyxy(boxes)
    torch.testing.assert_close(xyxy, torch.tensor([[[0.4, 0.3, 0.6, 0.7], [0.0, 0.2, 0.2, 0.2]]]))
    torch.testing.assert_close(box_xyxy_to_cxcywh(xyxy), boxes)


def test_iou_and_giou_of_hand_made_boxes():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 5.0, 1.0]])
    # Overlap 1, union 7; enclosing box of the disjoint pair is 5 x 2 = 10, union 5.
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 0.0]]))
    torch.testing.assert_close(generalized_box_iou(a, b), torch.tensor([[1 / 7 - (9 - 7) / 9, 0.0 - (10 - 5) / 10]]))


def test_scale_to_pixels():
    boxes = torch.tensor([[[0.5, 0.5, 0.5, 0.25]]])
    size = torch.tensor([[200.0, 100.0]])
    torch.testing.assert_close(scale_boxes_cxcywh_to_xyxy_px(boxes, size), torch.tensor([[[50.0, 37.5, 150.0, 62.5]]]))


def test_inverse_sigmoid_is_clamped_and_inverts_sigmoid():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0])
    y = inverse_sigmoid(x)
    torch.testing.assert_close(y[1:3], torch.tensor([math.log(1 / 3), 0.0]))
    torch.testing.assert_close(y[0], torch.tensor(math.log(1e-5)))
    torch.testing.assert_close(y[3], torch.tensor(-math.log(1e-5)))
    torch.testing.assert_close(inverse_sigmoid(torch.tensor([1.5])), torch.tensor([-math.log(1e-5)]))
