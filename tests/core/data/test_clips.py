from __future__ import annotations

import numpy as np
import pytest

from uninext_core.data.clips import CLIP_WINDOWS, pseudo_video, sample_clip_indices
from uninext_core.data.targets import Target
from uninext_core.data.transforms import AugmentationConfig


def test_clip_indices_stay_within_window_and_sorted():
    rng = np.random.default_rng(0)
    for _ in range(500):
        first, second = sample_clip_indices(rng, 50, window=CLIP_WINDOWS["mot"])
        assert 0 <= first < second < 50 and second - first <= 3


def test_clip_indices_edge_cases():
    rng = np.random.default_rng(1)
    assert sample_clip_indices(rng, 1, window=10) == [0, 0]
    three = sample_clip_indices(rng, 3, window=1, length=3)
    assert three == [0, 1, 2] or len(set(three)) < 3
    with pytest.raises(ValueError, match="num_frames"):
        sample_clip_indices(rng, 0, window=1)


def test_pseudo_video_gives_two_different_crops_with_the_same_ids():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 240, 3), dtype=np.uint8)
    masks = np.zeros((1, 200, 240), bool)
    masks[0, 50:150, 60:180] = True
    target = Target(np.array([[60, 50, 180, 150]], np.float32), masks, np.array([7]), np.array([3]))
    config = AugmentationConfig(crop_prob=0.0, pre_crop_short_sides=(), crop_range=(150, 190), short_sides=(128,),
                                max_size=400)
    clip = pseudo_video(image, target, rng=rng, config=config)
    assert len(clip.frames) == 2 and clip.frame_indices == [0, 0]
    assert not np.array_equal(clip.frames[0], clip.frames[1]) or clip.frames[0].shape != clip.frames[1].shape
    assert [t.ids.tolist() for t in clip.targets] == [[7], [7]]
    assert not np.array_equal(clip.targets[0].boxes_xyxy_px, clip.targets[1].boxes_xyxy_px)
