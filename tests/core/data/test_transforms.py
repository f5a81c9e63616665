from __future__ import annotations

import numpy as np
import pytest

from uninext_core.data.targets import Target
from uninext_core.data.transforms import (
    AugmentationConfig,
    augment_clip,
    crop,
    has_ordinal,
    hflip,
    resize,
    short_side_size,
    swap_left_right,
)


def _target(expression: str | None = None) -> Target:
    masks = np.zeros((2, 4, 6), bool)
    masks[0, 1:2, 1:3] = True
    masks[1, 3:4, 5:6] = True
    return Target(np.array([[1, 1, 3, 2], [5, 3, 6, 4]], np.float32), masks, np.array([10, 11]), np.array([1, 2]),
                  expression)


def test_resize_scales_boxes_and_masks():
    image = np.zeros((4, 6, 3), np.uint8)
    out, target = resize(image, _target(), size_hw=(8, 12))
    assert out.shape == (8, 12, 3)
    assert target.boxes_xyxy_px[0].tolist() == [2, 2, 6, 4]
    assert target.masks.shape == (2, 8, 12)
    assert np.argwhere(target.masks[0]).min(axis=0).tolist() == [2, 2]
    assert np.argwhere(target.masks[0]).max(axis=0).tolist() == [3, 5]


def test_crop_clips_boxes_and_drops_instances_outside():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    out, target = crop(image, _target(), box_xywh=(2, 0, 3, 3))
    assert np.array_equal(out, image[0:3, 2:5])
    assert target.ids.tolist() == [10]  # instance 11 (x 5..6, y 3..4) is outside
    assert target.boxes_xyxy_px.tolist() == [[0, 1, 1, 2]]
    assert target.masks.shape == (1, 3, 3) and target.masks[0].sum() == 1


def test_crop_drops_instance_whose_mask_left_even_if_box_overlaps():
    masks = np.zeros((1, 4, 6), bool)
    masks[0, 3, 5] = True  # the box says 0..6 × 0..4 but only the corner pixel is the object
    target = Target(np.array([[0, 0, 6, 4]], np.float32), masks, np.array([1]), np.array([1]))
    _, cropped = crop(np.zeros((4, 6, 3), np.uint8), target, box_xywh=(0, 0, 2, 2))
    assert len(cropped) == 0


def test_crop_of_a_frame_without_instances_keeps_an_empty_target():
    # A video frame may show none of the clip's objects (stage 3 crashed here at step 248 before this was fixed).
    none = np.zeros(0, np.int64)
    empty = Target(np.zeros((0, 4), np.float32), np.zeros((0, 4, 6), bool), none, none)
    out, cropped = crop(np.zeros((4, 6, 3), np.uint8), empty, box_xywh=(1, 1, 3, 2))
    assert out.shape == (2, 3, 3)
    assert len(cropped) == 0 and cropped.masks.shape == (0, 2, 3)


def test_hflip_mirrors_boxes_masks_and_swaps_words():
    image = np.zeros((4, 6, 3), np.uint8)
    image[:, 0] = 255
    out, target = hflip(image, _target("The leftmost star left of the right square, second from the left"))
    assert out[:, 5].min() == 255
    assert target.boxes_xyxy_px[0].tolist() == [3, 1, 5, 2]
    assert target.masks[0, 1, 3:5].all() and target.masks[0].sum() == 2
    assert target.expression == "The rightmost star right of the left square, second from the right"
    _, twice = hflip(out, target)
    assert np.array_equal(twice.boxes_xyxy_px, _target().boxes_xyxy_px)


def test_word_helpers():
    assert swap_left_right("Left-most? no: leftmost, lefty, right") == "Right-most? no: rightmost, lefty, left"
    assert has_ordinal("the Third cup") and not has_ordinal("the thirty cups") and not has_ordinal(None)


@pytest.mark.parametrize(("hw", "short", "max_size", "expected"),
                         [((480, 640), 800, 1333, (800, 1067)), ((100, 1000), 800, 1333, (133, 1333)),
                          ((320, 320), 256, 1333, (256, 256))])
def test_short_side_size(hw, short, max_size, expected):
    assert short_side_size(*hw, short, max_size) == expected


def _scene() -> tuple[np.ndarray, Target]:
    image = np.full((120, 160, 3), 40, np.uint8)
    masks = np.zeros((2, 120, 160), bool)
    masks[0, 20:60, 30:70] = True
    masks[1, 70:110, 100:150] = True
    image[masks[0]] = (255, 0, 0)
    image[masks[1]] = (0, 0, 255)
    boxes = np.array([[30, 20, 70, 60], [100, 70, 150, 110]], np.float32)
    return image, Target(boxes, masks, np.array([1, 2]), np.array([1, 1]), "the red square")


def test_augmented_image_and_target_stay_consistent():
    config = AugmentationConfig(crop_prob=1.0, pre_crop_short_sides=(100,), crop_range=(60, 90), short_sides=(96,),
                                max_size=200)
    rng = np.random.default_rng(0)
    for _ in range(20):
        image, target = _scene()
        (out,), (aug,) = augment_clip([image], [target], rng=rng, config=config)
        assert min(out.shape[:2]) == 96
        for k, object_id in enumerate(aug.ids):
            colour = (255, 0, 0) if object_id == 1 else (0, 0, 255)
            pixels = out[aug.masks[k]]
            assert (np.abs(pixels.astype(int) - colour).max(axis=1) < 60).mean() > 0.9
            rows, cols = np.nonzero(aug.masks[k])
            tight = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            assert np.abs(aug.boxes_xyxy_px[k] - tight).max() <= 1.5


def test_clip_shares_flip_and_scale_but_crops_each_frame():
    config = AugmentationConfig(flip_prob=0.5, crop_prob=1.0, pre_crop_short_sides=(), crop_range=(60, 110),
                                short_sides=(64, 80, 96), max_size=400)
    rng = np.random.default_rng(3)
    differ = 0
    for _ in range(10):
        image, target = _scene()
        frames, targets = augment_clip([image, image], [target, target], rng=rng, config=config)
        assert min(frames[0].shape[:2]) == min(frames[1].shape[:2])
        flipped = [t.expression for t in targets]
        assert flipped[0] == flipped[1]
        differ += frames[0].shape != frames[1].shape or not np.array_equal(frames[0], frames[1])
    assert differ >= 8


def test_ordinal_expression_disables_crop():
    config = AugmentationConfig(flip_prob=0.0, crop_prob=1.0, pre_crop_short_sides=(), crop_range=(60, 90),
                                short_sides=(120,), max_size=400)
    image, target = _scene()
    target.expression = "the second square from the left"
    (out,), (aug,) = augment_clip([image], [target], rng=np.random.default_rng(0), config=config)
    assert np.array_equal(out, image) and len(aug) == 2
