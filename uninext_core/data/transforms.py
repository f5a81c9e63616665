"""Augmentations that keep an image and its `Target` consistent (reference §8.4).

Geometry primitives (`resize`, `crop`, `hflip`) are deterministic; `augment_clip` draws their parameters:
    - horizontal flip with `flip_prob`, which also swaps "left"/"right" (and "leftmost"/"rightmost") in the
      expression;
    - with `crop_prob`, the DETR crop path: resize the short side to one of `pre_crop_short_sides` (if any), then
      a random crop whose height and width are drawn from `crop_range` ("absolute_range" in detectron2);
      instances keep their part inside the crop and are dropped when nothing of them remains;
      no crop when the expression holds an ordinal word ("first" .. "tenth"), as its meaning could change;
    - a final multi-scale resize: short side from `short_sides`, long side at most `max_size`.
For a clip, flip, crop on/off and the resize scales are shared by all frames while each frame draws its own crop
box; a still image duplicated into two frames with the crop forced on is a pseudo-video (§8.3).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from uninext_core.data.targets import Target

ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_SWAPS = {"left": "right", "right": "left", "leftmost": "rightmost", "rightmost": "leftmost"}
_SWAP_PATTERN = re.compile(r"\b(" + "|".join(_SWAPS) + r")\b", re.IGNORECASE)
_ORDINAL_PATTERN = re.compile(r"\b(" + "|".join(ORDINAL_WORDS) + r")\b", re.IGNORECASE)


@dataclass(frozen=True)
class AugmentationConfig:
    """Parameters of `augment_clip`; sizes in pixels.

    Defaults are the official image-stage values (§8.4); `video_stage()` drops the pre-crop resize.
    """

    flip_prob: float = 0.5
    crop_prob: float = 0.5
    pre_crop_short_sides: tuple[int, ...] = (400, 500, 600)
    crop_range: tuple[int, int] = (384, 600)
    short_sides: tuple[int, ...] = tuple(range(480, 801, 32))
    max_size: int = 1333

    def __post_init__(self) -> None:
        if not self.short_sides or min(self.short_sides) <= 0 or self.max_size <= 0:
            raise ValueError(f"short_sides must be positive and non-empty and max_size > 0, got {self.short_sides} "
                             f"and {self.max_size}")
        if not 0 < self.crop_range[0] <= self.crop_range[1]:
            raise ValueError(f"crop_range must be (min, max) with 0 < min <= max, got {self.crop_range}")

    @classmethod
    def video_stage(cls, *, short_sides: tuple[int, ...] = tuple(range(480, 801, 32)),
                    max_size: int = 1333) -> AugmentationConfig:
        """Stage-3 recipe: crop (384–600) straight from the frame, then the dataset's multi-scale resize."""
        return cls(pre_crop_short_sides=(), short_sides=short_sides, max_size=max_size)


def swap_left_right(text: str) -> str:
    """Swap the words left/right and leftmost/rightmost (a leading capital is kept)."""
    def repl(match: re.Match[str]) -> str:
        word = match.group(0)
        swapped = _SWAPS[word.lower()]
        return swapped.capitalize() if word[0].isupper() else swapped
    return _SWAP_PATTERN.sub(repl, text)


def has_ordinal(text: str | None) -> bool:
    """Whether the expression holds "first" .. "tenth"."""
    return bool(text) and bool(_ORDINAL_PATTERN.search(text))


def short_side_size(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """(new_h, new_w) with the short side at `short` unless the long side would pass `max_size` (detectron2)."""
    scale = short / min(height, width)
    if max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize(image: np.ndarray, target: Target, *, size_hw: tuple[int, int]) -> tuple[np.ndarray, Target]:
    """Bilinear image resize to (H', W'); boxes scaled, masks resized nearest-neighbour."""
    height, width = image.shape[:2]
    new_h, new_w = size_hw
    if (new_h, new_w) == (height, width):
        return image, target
    out = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    scale = np.array([new_w / width, new_h / height, new_w / width, new_h / height], np.float32)
    masks = target.masks
    if masks is not None:
        masks = _resize_masks(masks, new_h, new_w)
    return out, replace(target, boxes_xyxy_px=target.boxes_xyxy_px * scale, masks=masks)


def _resize_masks(masks: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    if masks.shape[0] == 0:
        return np.zeros((0, new_h, new_w), bool)
    chunks = []
    for start in range(0, masks.shape[0], 256):  # cv2 resizes at most 512 channels at once
        stack = np.ascontiguousarray(masks[start:start + 256].transpose(1, 2, 0).astype(np.uint8))
        resized = cv2.resize(stack, (new_w, new_h), interpolation=cv2.INTER_NEAREST_EXACT)
        chunks.append(resized.reshape(new_h, new_w, -1).transpose(2, 0, 1))
    return np.concatenate(chunks).astype(bool)


def crop(image: np.ndarray, target: Target, *, box_xywh: tuple[int, int, int, int]) -> tuple[np.ndarray, Target]:
    """Crop to (x0, y0, w, h); boxes are clipped to the crop, instances with nothing left are dropped.

    An instance is kept when its clipped box has positive width and height and, with masks, its mask keeps
    at least one pixel inside the crop.
    """
    x0, y0, w, h = box_xywh
    out = image[y0:y0 + h, x0:x0 + w]
    boxes = target.boxes_xyxy_px - np.array([x0, y0, x0, y0], np.float32)
    boxes = np.clip(boxes, 0, np.array([w, h, w, h], np.float32))
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    masks = target.masks
    if masks is not None:
        masks = masks[:, y0:y0 + h, x0:x0 + w]
        keep &= masks.any(axis=(1, 2))  # also right for zero instances
    cropped = replace(target, boxes_xyxy_px=boxes, masks=masks)
    return out, cropped.select(keep)


def hflip(image: np.ndarray, target: Target) -> tuple[np.ndarray, Target]:
    """Mirror left-right: x → W − x for boxes, masks flipped, left/right swapped in the expression."""
    width = image.shape[1]
    boxes = target.boxes_xyxy_px.copy()
    boxes[:, [0, 2]] = width - target.boxes_xyxy_px[:, [2, 0]]
    masks = None if target.masks is None else target.masks[:, :, ::-1].copy()
    expression = None if target.expression is None else swap_left_right(target.expression)
    return image[:, ::-1].copy(), replace(target, boxes_xyxy_px=boxes, masks=masks, expression=expression)


def sample_crop_box(rng: np.random.Generator, height: int, width: int,
                    crop_range: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, w, h): h and w uniform in crop_range (capped at the image), position uniform."""
    lo, hi = crop_range
    ch = int(rng.integers(min(height, lo), min(height, hi) + 1))
    cw = int(rng.integers(min(width, lo), min(width, hi) + 1))
    return int(rng.integers(0, width - cw + 1)), int(rng.integers(0, height - ch + 1)), cw, ch


def augment_clip(
    frames: Sequence[np.ndarray], targets: Sequence[Target], *, rng: np.random.Generator,
    config: AugmentationConfig, force_crop: bool = False,
) -> tuple[list[np.ndarray], list[Target]]:
    """Augment the frames of one clip (a still image is a clip of one).

    Args:
        frames: (H, W, 3) uint8 images (sizes may differ).
        targets: one Target per frame.
        force_crop: crop regardless of `crop_prob` (pseudo-videos); an ordinal expression still disables it.

    Returns:
        The augmented frames and targets, same length and order.
    """
    if len(frames) != len(targets) or not frames:
        raise ValueError(f"need one target per frame and ≥ 1 frame, got {len(frames)} frames, {len(targets)} targets")
    flip = rng.random() < config.flip_prob
    do_crop = (force_crop or rng.random() < config.crop_prob) and not any(has_ordinal(t.expression) for t in targets)
    pre_short = int(rng.choice(config.pre_crop_short_sides)) if do_crop and config.pre_crop_short_sides else None
    short = int(rng.choice(config.short_sides))
    out_frames, out_targets = [], []
    for image, target in zip(frames, targets, strict=True):
        if do_crop:
            if pre_short is not None:
                image, target = resize(image, target, size_hw=short_side_size(*image.shape[:2], pre_short,
                                                                              config.max_size))
            image, target = crop(image, target, box_xywh=sample_crop_box(rng, *image.shape[:2], config.crop_range))
        image, target = resize(image, target, size_hw=short_side_size(*image.shape[:2], short, config.max_size))
        if flip:
            image, target = hflip(image, target)
        out_frames.append(image)
        out_targets.append(target)
    return out_frames, out_targets
