from __future__ import annotations

import pytest
import torch

from uninext_core.model.template_crop import crop_template, crop_template_with_padding


def ramp_image(height: int = 8, width: int = 8) -> torch.Tensor:
    """(3, H, W) with pixel value 10·row + col in channel 0 (channels 1, 2 = channel 0 + 100, + 200)."""
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    base = 10 * rows + cols
    return torch.stack([base, base + 100, base + 200])


def test_interior_box_crops_square_of_twice_the_box_side():
    image = ramp_image()
    # box 2x2 at (2,2): side = ceil(sqrt(4) * 2) = 4, x0 = round(3 - 2) = 1, y0 = 1 -> image[:, 1:5, 1:5]
    out = crop_template_with_padding(image, box_xyxy=(2.0, 2.0, 4.0, 4.0), mask=None, size=4)
    assert out.crop.shape == (4, 4, 4)
    assert torch.equal(out.crop[:3], image[:, 1:5, 1:5])
    prior = torch.zeros(4, 4)
    prior[1:3, 1:3] = 1.0  # box in crop coordinates: x 1..3, y 1..3
    assert torch.equal(out.crop[3], prior)
    assert not out.padding.any()


def test_box_at_top_left_border_is_zero_padded():
    image = ramp_image()
    # box (0,0)-(2,2): side 4, x0 = y0 = round(1 - 2) = -1: crop row/col 0 lie outside the image
    out = crop_template_with_padding(image, box_xyxy=(0.0, 0.0, 2.0, 2.0), mask=None, size=4)
    expected = torch.zeros(3, 4, 4)
    expected[:, 1:, 1:] = image[:, 0:3, 0:3]
    assert torch.equal(out.crop[:3], expected)
    prior = torch.zeros(4, 4)
    prior[1:3, 1:3] = 1.0  # round(0 - (-1)) = 1 .. 1 + 2
    assert torch.equal(out.crop[3], prior)
    padding = torch.zeros(4, 4, dtype=torch.bool)
    padding[0, :] = padding[:, 0] = True
    assert torch.equal(out.padding, padding)


def test_valid_hw_treats_network_padding_as_outside():
    image = ramp_image()
    # valid image 6x6 inside an 8x8 padded tensor; box (4,4)-(6,6): side 4, x0 = y0 = round(5 - 2) = 3 -> 3..6
    out = crop_template_with_padding(image, box_xyxy=(4.0, 4.0, 6.0, 6.0), mask=None, size=4, valid_hw=(6, 6))
    expected = torch.zeros(3, 4, 4)
    expected[:, :3, :3] = image[:, 3:6, 3:6]
    assert torch.equal(out.crop[:3], expected)
    assert out.padding[3, :].all() and out.padding[:, 3].all() and not out.padding[:3, :3].any()
    # the same box without valid_hw reads row/col 6 of the tensor
    full = crop_template(image, box_xyxy=(4.0, 4.0, 6.0, 6.0), mask=None, size=4)
    assert torch.equal(full[:3], image[:, 3:7, 3:7])


def test_mask_replaces_box_prior():
    image = ramp_image()
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2, 3] = True
    mask[0, 0] = True  # outside the crop window
    out = crop_template(image, box_xyxy=(2.0, 2.0, 4.0, 4.0), mask=mask, size=4)
    prior = torch.zeros(4, 4)
    prior[1, 2] = 1.0  # (row 2, col 3) - (1, 1)
    assert torch.equal(out[3], prior)


def test_bilinear_resize_halves_by_averaging_pixel_pairs():
    image = ramp_image()
    # crop image[:, 1:5, 1:5] resized 4 -> 2 with align_corners=False samples source 0.5 and 2.5: mean of 2x2 blocks
    out = crop_template(image, box_xyxy=(2.0, 2.0, 4.0, 4.0), mask=None, size=2)
    block = image[0, 1:5, 1:5]
    expected = torch.tensor([[block[0:2, 0:2].mean(), block[0:2, 2:4].mean()],
                             [block[2:4, 0:2].mean(), block[2:4, 2:4].mean()]])
    assert torch.allclose(out[0], expected)
    assert torch.allclose(out[3], torch.full((2, 2), 0.25))  # the 2x2 prior covers one pixel of each block


def test_non_square_box_uses_geometric_mean_side():
    image = torch.zeros(3, 32, 32)
    # w = 8, h = 2: side = ceil(sqrt(16) * 2) = 8; centre (14, 11): x0 = round(14 - 4) = 10, y0 = round(11 - 4) = 7
    out = crop_template(image, box_xyxy=(10.0, 10.0, 18.0, 12.0), mask=None, size=8)
    prior = torch.zeros(8, 8)
    prior[3:5, 0:8] = 1.0
    assert torch.equal(out[3], prior)


def test_crop_template_rejects_bad_inputs():
    image = ramp_image()
    with pytest.raises(ValueError, match="x_max > x_min"):
        crop_template(image, box_xyxy=(4.0, 2.0, 4.0, 5.0), mask=None, size=4)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        crop_template(image[:2], box_xyxy=(1.0, 1.0, 2.0, 2.0), mask=None, size=4)
    with pytest.raises(ValueError, match="mask must be"):
        crop_template(image, box_xyxy=(1.0, 1.0, 2.0, 2.0), mask=torch.ones(4, 4), size=4)
    with pytest.raises(ValueError, match="valid_hw"):
        crop_template(image, box_xyxy=(1.0, 1.0, 2.0, 2.0), mask=None, size=4, valid_hw=(9, 8))
