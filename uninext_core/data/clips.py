"""Clip sampling for video training (reference §8.3): two frames within a window, and pseudo-videos from stills.

A sample is a short clip: a random anchor frame plus frames drawn within ±`window` of it, sorted in time. Still
images become clips by repetition; the per-frame random crop of `transforms.augment_clip` (forced on here) makes
the copies differ, which gives pseudo motion with known instance correspondence (same ids in both frames).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from uninext_core.data.targets import Target
from uninext_core.data.transforms import AugmentationConfig, augment_clip

# Frames either side of the anchor that the second frame may come from (§8.3).
CLIP_WINDOWS: dict[str, int] = {"vis": 10, "rvos": 10, "mot": 3, "sot": 200, "vos": 10}


class Clip(NamedTuple):
    """Frames of one training sample with their targets and the source frame indices (pseudo-videos: all 0)."""

    frames: list[np.ndarray]
    targets: list[Target]
    frame_indices: list[int]


def sample_clip_indices(rng: np.random.Generator, num_frames: int, *, window: int, length: int = 2) -> list[int]:
    """Sorted frame indices: an anchor uniform over the video plus `length - 1` distinct frames within ±window.

    When the window holds fewer other frames than needed, frames repeat (a one-frame video gives [0, 0]).

    Raises:
        ValueError: num_frames < 1, window < 0 or length < 1.
    """
    if num_frames < 1 or window < 0 or length < 1:
        raise ValueError(f"need num_frames ≥ 1, window ≥ 0, length ≥ 1; got {num_frames}, {window}, {length}")
    anchor = int(rng.integers(num_frames))
    others = [t for t in range(max(0, anchor - window), min(num_frames, anchor + window + 1)) if t != anchor]
    need = length - 1
    if len(others) >= need:
        chosen = [int(t) for t in rng.choice(others, size=need, replace=False)] if need else []
    else:
        pool = others or [anchor]
        chosen = [int(t) for t in rng.choice(pool, size=need, replace=True)]
    return sorted([anchor, *chosen])


def pseudo_video(
    image: np.ndarray, target: Target, *, rng: np.random.Generator, config: AugmentationConfig, length: int = 2
) -> Clip:
    """A clip of `length` differently cropped copies of one still image (shared flip and scale).

    The crop is forced on; an expression with an ordinal word turns it off (see `augment_clip`), and the copies
    then stay identical.
    """
    frames, targets = augment_clip([image] * length, [target] * length, rng=rng, config=config, force_crop=True)
    return Clip(frames, targets, [0] * length)


def video_clip(
    frames: list[np.ndarray], targets: list[Target], *, rng: np.random.Generator, config: AugmentationConfig,
) -> Clip:
    """Augment already sampled frames of a real video as one clip (crop with `config.crop_prob`)."""
    out_frames, out_targets = augment_clip(frames, targets, rng=rng, config=config)
    return Clip(out_frames, out_targets, list(range(len(frames))))
