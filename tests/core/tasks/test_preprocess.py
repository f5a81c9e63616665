"""Frame geometry: resize rule, letterbox, normalisation and padding, and the way back (boxes, masks, template crop)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uninext_core.config import tiny
from uninext_core.deploy.backend import model_spec
from uninext_core.tasks.preprocess import letterbox_size, prepare_frame, resized_size

SPEC = model_spec(tiny())


def test_resize_rule_by_hand():
    assert resized_size(480, 640, short_side=320, max_size=384) == (288, 384)  # long side capped: scale 0.6
    assert resized_size(480, 640, short_side=320, max_size=1000) == (320, 427)  # 426.67 rounds up
    assert resized_size(100, 50, short_side=200, max_size=1000) == (400, 200)
    assert letterbox_size(480, 640, target_hw=(320, 320)) == (240, 320)
    assert letterbox_size(640, 480, target_hw=(320, 512)) == (320, 240)


def test_prepare_frame_normalises_pads_and_masks():
    frame = np.full((48, 80, 3), 200, np.uint8)
    frame[:, :, 2] = 0
    prepared = prepare_frame(frame, spec=SPEC, short_side=48, max_size=100)
    assert prepared.images.shape == (1, 3, 64, 96) and prepared.pixel_mask.shape == (1, 64, 96)
    assert prepared.resized_hw == (48, 80) and prepared.frame_hw == (48, 80)
    expected_red = (200 - SPEC.pixel_mean[0]) / SPEC.pixel_std[0]
    expected_blue = (0 - SPEC.pixel_mean[2]) / SPEC.pixel_std[2]
    assert prepared.images[0, 0, 10, 10].item() == pytest.approx(expected_red, abs=1e-5)
    assert prepared.images[0, 2, 10, 10].item() == pytest.approx(expected_blue, abs=1e-5)
    assert prepared.images[0, :, 48:].abs().sum() == 0 and prepared.images[0, :, :, 80:].abs().sum() == 0
    assert prepared.pixel_mask[0, :48, :80].all() and not prepared.pixel_mask[0, 48:].any()
    fixed = prepare_frame(frame, spec=SPEC, short_side=48, max_size=100, fixed_input_size=(64, 64))
    assert fixed.images.shape == (1, 3, 64, 64) and fixed.resized_hw == (38, 64)


def test_boxes_and_masks_map_back_to_the_frame():
    frame = np.zeros((120, 200, 3), np.uint8)
    prepared = prepare_frame(frame, spec=SPEC, short_side=60, max_size=100)  # resized to 60x100, padded 64x128
    boxes = prepared.boxes_to_frame(torch.tensor([[0.5, 0.5, 0.2, 0.5], [0.95, 0.5, 0.3, 0.2]]))
    torch.testing.assert_close(boxes, torch.tensor([[80.0, 30, 120, 90], [160, 48, 200, 72]]))  # second clipped
    logits = torch.full((1, 16, 32), -10.0)
    logits[0, :8, :13] = 10.0  # left 52 px x top 32 px of the padded input = 104 x 64 px of the frame
    probs = prepared.mask_probs_to_frame(logits)
    assert probs.shape == (1, 120, 200)
    mask = probs[0] > 0.5
    assert mask[:55, :95].all() and not mask[70:].any() and not mask[:, 112:].any()
    low = prepared.low_res_masks(logits)
    assert low.shape == (1, 15, 25) and low[0, :8, :13].all() and not low[0, 8:].any()


def test_template_crop_of_a_frame_box():
    frame = np.full((64, 64, 3), 255, np.uint8)
    prepared = prepare_frame(frame, spec=SPEC, short_side=64, max_size=64)
    mask = np.zeros((64, 64), bool)
    mask[24:40, 24:40] = True
    crop = prepared.template_crop(box_xyxy_px=(24, 24, 40, 40), mask=mask, size=16, search_area_factor=2.0)
    # 32 px square around the box, all inside the image; the mask fills the middle half.
    assert crop.crop.shape == (4, 16, 16) and not crop.padding.any()
    assert crop.crop[3, 4:12, 4:12].min() == 1.0 and crop.crop[3, :3].max() == 0.0
    edge = prepared.template_crop(box_xyxy_px=(0, 0, 16, 16), mask=None, size=16, search_area_factor=2.0)
    assert edge.padding[:3, :3].all() and not edge.padding[12:, 12:].any()
