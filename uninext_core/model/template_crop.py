"""Host-side crop of the 4-channel reference template for SOT/VOS (reference §2.2, official `get_template_4c`).

A square of side ceil(sqrt(w·h) · search_area_factor) centred on the target box is cut from the normalised frame at
network resolution; parts outside the valid image are zero (image) and marked as padding. The 4th channel is the
target's mask cropped the same way, or — without a mask — the target box filled with 1 (box prior). The crop is
resized bilinearly (align_corners=False) to size × size. This is scalar Python work on one target; it stays out of
the exported network.

One deliberate difference from the official code: pytracking-style `x2_pad = max(x2 - W + 1, 0)` drops the last
valid image row/column when the square reaches past the border; here every pixel inside the image is kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F


class TemplateCrop(NamedTuple):
    """A template crop and where it lies outside the image.

    Attributes:
        crop: (4, size, size) float: 3 normalised image channels + the target prior in [0, 1].
        padding: (size, size) bool, True where the (resized) crop touches pixels outside the valid image.
    """

    crop: torch.Tensor
    padding: torch.Tensor


def crop_template_with_padding(image: torch.Tensor, *, box_xyxy: Sequence[float] | torch.Tensor,
                               mask: torch.Tensor | None, size: int, search_area_factor: float = 2.0,
                               valid_hw: tuple[int, int] | None = None) -> TemplateCrop:
    """4-channel template crop around one target, with its padding mask.

    Args:
        image: (3, H, W) float frame, normalised and padded, at network resolution.
        box_xyxy: (4,) target box (x_min, y_min, x_max, y_max) in pixels of `image`.
        mask: (H, W) bool/float target mask on `image`, or None to use the box prior.
        size: output side S (official 256).
        search_area_factor: crop side / sqrt(box area) (official 2).
        valid_hw: (h, w) of the unpadded image inside `image`; None means all of `image` is valid.

    Returns:
        TemplateCrop(crop (4, S, S), padding (S, S) bool).

    Raises:
        ValueError: wrong shapes, a degenerate box, or non-positive size/factor.
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got shape {tuple(image.shape)}")
    height, width = int(image.shape[1]), int(image.shape[2])
    if mask is not None and tuple(mask.shape) != (height, width):
        raise ValueError(f"mask must be (H, W) = {(height, width)}, got shape {tuple(mask.shape)}")
    if size <= 0 or search_area_factor <= 0:
        raise ValueError(f"size and search_area_factor must be positive, got {size} and {search_area_factor}")
    valid_h, valid_w = (height, width) if valid_hw is None else (int(valid_hw[0]), int(valid_hw[1]))
    if not (0 < valid_h <= height and 0 < valid_w <= width):
        raise ValueError(f"valid_hw must lie within the image size {(height, width)}, got {valid_hw}")
    box = [float(v) for v in (box_xyxy.tolist() if isinstance(box_xyxy, torch.Tensor) else box_xyxy)]
    if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"box_xyxy must be 4 finite numbers with x_max > x_min and y_max > y_min, got {box}")
    x, y, w, h = box[0], box[1], box[2] - box[0], box[3] - box[1]

    side = math.ceil(math.sqrt(w * h) * search_area_factor)
    x0 = round(x + 0.5 * w - 0.5 * side)  # Python round (half to even), as the official code
    y0 = round(y + 0.5 * h - 0.5 * side)
    # Overlap of the square [y0, y0 + side) × [x0, x0 + side) with the valid image, in image coordinates.
    top, bottom = max(y0, 0), min(y0 + side, valid_h)
    left, right = max(x0, 0), min(x0 + side, valid_w)

    canvas = image.new_zeros(4, side, side)
    padding = image.new_ones(1, 1, side, side)
    if bottom > top and right > left:
        rows, cols = slice(top - y0, bottom - y0), slice(left - x0, right - x0)
        canvas[:3, rows, cols] = image[:, top:bottom, left:right]
        padding[0, 0, rows, cols] = 0.0
        if mask is not None:
            canvas[3, rows, cols] = mask[top:bottom, left:right].to(canvas.dtype)
    if mask is None:
        # Box prior: the target box in crop coordinates, rounded like the official code (not clipped to the image).
        bx0, by0 = round(x - x0), round(y - y0)
        bx1, by1 = round(bx0 + w), round(by0 + h)
        canvas[3, max(by0, 0):max(by1, 0), max(bx0, 0):max(bx1, 0)] = 1.0

    crop = F.interpolate(canvas[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    padding = F.interpolate(padding, size=(size, size), mode="bilinear", align_corners=False)[0, 0] > 0
    return TemplateCrop(crop, padding)


def crop_template(image: torch.Tensor, *, box_xyxy: Sequence[float] | torch.Tensor, mask: torch.Tensor | None,
                  size: int, search_area_factor: float = 2.0, valid_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """(4, size, size) template crop; see `crop_template_with_padding` for the arguments."""
    return crop_template_with_padding(image, box_xyxy=box_xyxy, mask=mask, size=size,
                                      search_area_factor=search_area_factor, valid_hw=valid_hw).crop
