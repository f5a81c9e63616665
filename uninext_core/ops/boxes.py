"""Box conversions and overlaps.

Formats (the format is part of every name):
    boxes_cxcywh: (..., 4) float (centre x, centre y, width, height), normalised to [0, 1] by the un-padded image size.
    boxes_xyxy:   (..., 4) float (x1, y1, x2, y2) with x1 <= x2, y1 <= y2, in any consistent unit (normalised or px).

IoU / GIoU come from torchvision.ops; the conversions here are plain arithmetic so they trace into ONNX and keep
leading batch dimensions.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_iou as _tv_box_iou
from torchvision.ops import generalized_box_iou as _tv_generalized_box_iou

INVERSE_SIGMOID_EPS = 1e-5


def box_cxcywh_to_xyxy(boxes_cxcywh: torch.Tensor) -> torch.Tensor:
    """(..., 4) (cx, cy, w, h) -> (..., 4) (x1, y1, x2, y2), same unit."""
    cx, cy, w, h = boxes_cxcywh.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """(..., 4) (x1, y1, x2, y2) -> (..., 4) (cx, cy, w, h), same unit."""
    x1, y1, x2, y2 = boxes_xyxy.unbind(-1)
    return torch.stack([(x1 + x2) * 0.5, (y1 + y2) * 0.5, x2 - x1, y2 - y1], dim=-1)


def box_iou(boxes1_xyxy: torch.Tensor, boxes2_xyxy: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU.

    Args:
        boxes1_xyxy: (N, 4) boxes, x1 <= x2 and y1 <= y2.
        boxes2_xyxy: (M, 4) boxes in the same unit.

    Returns:
        (N, M) IoU in [0, 1].
    """
    return _tv_box_iou(boxes1_xyxy, boxes2_xyxy)


def self_box_iou(boxes_xyxy: torch.Tensor) -> torch.Tensor:
    """IoU of every pair within each set, plain arithmetic (traces into ONNX with its batch dimensions).

    Args:
        boxes_xyxy: (..., N, 4) boxes, x1 <= x2 and y1 <= y2.

    Returns:
        (..., N, N) IoU in [0, 1] (0 between two empty boxes).
    """
    a, b = boxes_xyxy[..., :, None, :], boxes_xyxy[..., None, :, :]
    width = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    height = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = width * height
    area = (boxes_xyxy[..., 2] - boxes_xyxy[..., 0]) * (boxes_xyxy[..., 3] - boxes_xyxy[..., 1])
    union = area[..., :, None] + area[..., None, :] - inter
    return inter / union.clamp(min=1e-12)


def generalized_box_iou(boxes1_xyxy: torch.Tensor, boxes2_xyxy: torch.Tensor) -> torch.Tensor:
    """Pairwise generalised IoU (Rezatofighi et al. 2019).

    Args:
        boxes1_xyxy: (N, 4) boxes, x1 <= x2 and y1 <= y2 (degenerate boxes give NaN/inf; validate upstream).
        boxes2_xyxy: (M, 4) boxes in the same unit.

    Returns:
        (N, M) GIoU in [-1, 1].
    """
    return _tv_generalized_box_iou(boxes1_xyxy, boxes2_xyxy)


def scale_boxes_cxcywh_to_xyxy_px(boxes_cxcywh: torch.Tensor, image_size_wh: torch.Tensor) -> torch.Tensor:
    """Normalised (cx, cy, w, h) -> pixel (x1, y1, x2, y2).

    Args:
        boxes_cxcywh: (B, Q, 4) normalised boxes.
        image_size_wh: (B, 2) float (width, height) in pixels of the image the boxes are normalised to.

    Returns:
        (B, Q, 4) boxes_xyxy_px.
    """
    scale = torch.cat([image_size_wh, image_size_wh], dim=-1)[:, None, :]
    return box_cxcywh_to_xyxy(boxes_cxcywh) * scale


def inverse_sigmoid(x: torch.Tensor, eps: float = INVERSE_SIGMOID_EPS) -> torch.Tensor:
    """Logit of a probability-like tensor, clamped as in Deformable DETR: log(max(x, eps) / max(1 - x, eps)).

    Args:
        x: any shape, values expected in [0, 1] (clamped to it first).
        eps: lower clamp of numerator and denominator (1e-5 in the official code).

    Returns:
        Same shape, finite for every input in [0, 1].
    """
    x = x.clamp(min=0.0, max=1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))
