"""One synthetic image or video, deterministic in (seed, task, index), with exact masks and expressions.

The random stream of item `index` of `task` is `np.random.default_rng([seed, task number, index])`, so items are
independent of each other, of how many are made and of how many worker processes make them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from uninext_core.data.records import Category
from uninext_core.data.synthetic.expressions import (
    GeneratedExpression,
    default_position_margin,
    generate_expressions,
)
from uninext_core.data.synthetic.motion import VideoScene, objects_at, sample_video_scene
from uninext_core.data.synthetic.render import render_background, render_frame
from uninext_core.data.synthetic.scene import KINDS, Scene, SceneObject, get_difficulty, sample_scene

TASKS: tuple[str, ...] = ("detection", "referring", "video", "sot", "vos", "mot", "vis")
CATEGORIES: tuple[Category, ...] = tuple(Category(k + 1, kind, "shape") for k, kind in enumerate(KINDS))
CATEGORY_ID: dict[str, int] = {c.name: c.id for c in CATEGORIES}
MIN_VISIBLE_PIXELS = 12  # an object showing fewer pixels is not annotated (absent on that frame)


def item_rng(seed: int, task: str, index: int) -> np.random.Generator:
    """The random stream of one item."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return np.random.default_rng([seed, TASKS.index(task), index])


class SynthImage(NamedTuple):
    """A still image and its annotations.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        objects: the drawn objects, bottom to top (every one shows ≥ MIN_VISIBLE_PIXELS pixels).
        masks: (N, H, W) bool visible masks, aligned with `objects`.
        expressions: object id → expressions that identify it alone (empty unless requested).
    """

    image: np.ndarray
    objects: tuple[SceneObject, ...]
    masks: np.ndarray
    expressions: dict[int, list[GeneratedExpression]]


def synth_image(
    *, seed: int, index: int, height: int, width: int, difficulty: str, task: str = "detection",
    with_expressions: bool = False, max_expressions: int = 3,
) -> SynthImage:
    """Draw image `index` of `task`: a cluttered background, objects with occlusion, camera noise and blur."""
    rng = item_rng(seed, task, index)
    level = get_difficulty(difficulty)
    scene = sample_scene(rng, height=height, width=width, difficulty=level)
    background = render_background(rng, height=height, width=width, clutter=level.clutter)
    noise = float(rng.uniform(*level.noise_sigma))
    effects_seed = int(rng.integers(2**31))
    frame = render_frame(background, scene.objects, np.random.default_rng(effects_seed), noise_sigma=noise,
                         blur_probability=level.blur_probability)
    keep = frame.visible_masks.sum(axis=(1, 2)) >= MIN_VISIBLE_PIXELS
    if not keep.all():  # redraw without objects too hidden to annotate, so the image shows only annotated ones
        scene = Scene(height, width, tuple(o for o, k in zip(scene.objects, keep, strict=True) if k))
        frame = render_frame(background, scene.objects, np.random.default_rng(effects_seed), noise_sigma=noise,
                             blur_probability=level.blur_probability)
    expressions = generate_expressions(
        scene.objects, rng=rng, position_margin=default_position_margin(height, width),
        max_expressions=max_expressions) if with_expressions else {}
    return SynthImage(frame.image, scene.objects, frame.visible_masks, expressions)


class SynthVideo(NamedTuple):
    """A video and its per-frame annotations.

    Attributes:
        frames: T images (H, W, 3) uint8 RGB.
        tracks: each track's frame-0 object (its id, kind, colour, size, texture), drawing order.
        objects: objects[t][n] is track n's object on frame t (centre, radius, angle of that frame).
        masks: (T, N, H, W) bool visible masks.
        present: (T, N) bool, the track shows ≥ MIN_VISIBLE_PIXELS pixels on that frame.
        in_frame: (T, N) bool, some of the track's unoccluded shape lies inside the image.
        visibility: (T, N) float64, visible pixels / unoccluded in-image pixels (0 where not in frame).
        expressions: track id → attribute expressions unique among the video's tracks (empty unless requested).
    """

    frames: list[np.ndarray]
    tracks: tuple[SceneObject, ...]
    objects: list[list[SceneObject]]
    masks: np.ndarray
    present: np.ndarray
    in_frame: np.ndarray
    visibility: np.ndarray
    expressions: dict[int, list[GeneratedExpression]]


def synth_video(
    *, seed: int, index: int, height: int, width: int, num_frames: int, difficulty: str, task: str = "video",
    with_expressions: bool = False, max_expressions: int = 2,
) -> SynthVideo:
    """Draw video `index` of `task`: moving tracks over a fixed cluttered background with camera shake."""
    rng = item_rng(seed, task, index)
    level = get_difficulty(difficulty)
    plan: VideoScene = sample_video_scene(rng, height=height, width=width, num_frames=num_frames, difficulty=level)
    background = render_background(rng, height=height, width=width, clutter=level.clutter)
    noise = float(rng.uniform(*level.noise_sigma))
    frames, objects, masks, full = [], [], [], []
    for t in range(num_frames):
        frame_objects = objects_at(plan, t)
        shake = (float(plan.shake[t, 0]), float(plan.shake[t, 1]))
        rendered = render_frame(background, frame_objects, rng, noise_sigma=noise,
                                blur_probability=level.blur_probability, offset=shake)
        frames.append(rendered.image)
        objects.append(frame_objects)
        masks.append(rendered.visible_masks)
        full.append(rendered.full_areas)
    mask_array = np.stack(masks)
    full_areas = np.stack(full)
    visible_px = mask_array.reshape(num_frames, len(plan.tracks), -1).sum(axis=2)
    visibility = np.where(full_areas > 0, visible_px / np.maximum(full_areas, 1), 0.0)
    tracks = tuple(p.base for p in plan.tracks)
    expressions = generate_expressions(
        tracks, rng=rng, position_margin=default_position_margin(height, width), max_expressions=max_expressions,
        spatial=False) if with_expressions else {}
    return SynthVideo(frames, tracks, objects, mask_array, visible_px >= MIN_VISIBLE_PIXELS, full_areas > 0,
                      visibility, expressions)
