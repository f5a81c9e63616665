from __future__ import annotations

import itertools

import numpy as np

from uninext_core.data.segmentation import mask_to_polygons
from uninext_core.data.synthetic.motion import MAX_SCALE_CHANGE, objects_at, sample_video_scene
from uninext_core.data.synthetic.render import _shade, paint_objects, render_background
from uninext_core.data.synthetic.scene import (
    COLOURS,
    KINDS,
    SIZES,
    TEXTURES,
    get_difficulty,
    sample_scene,
)
from uninext_core.data.synthetic.shapes import shape_mask
from uninext_core.data.synthetic.world import MIN_VISIBLE_PIXELS, item_rng, synth_image, synth_video


def test_vocabulary_is_rich_enough():
    assert len(KINDS) >= 8 and len(COLOURS) >= 8 and len(SIZES) == 3 and len(TEXTURES) == 4
    for kind in KINDS:
        mask = shape_mask(kind, center=(32.0, 32.0), radius=20.0, angle=15.0, height=64, width=64)
        rows, cols = np.nonzero(mask)
        assert 300 < mask.sum() < np.pi * 21**2, kind  # OpenCV fills every pixel the outline touches (+~0.5 px)
        assert max(cols.max() - 32, 32 - cols.min(), rows.max() - 32, 32 - rows.min()) <= 21, kind
    ring = shape_mask("ring", center=(32.0, 32.0), radius=20.0, angle=0.0, height=64, width=64)
    assert not ring[32, 32] and mask_to_polygons(ring) is None  # a hole


def test_size_classes_stay_disjoint_under_video_scale_change():
    bounds = sorted(SIZES.values())
    for (_, hi), (lo, _) in itertools.pairwise(bounds):
        assert hi * (1 + MAX_SCALE_CHANGE) < lo * (1 - MAX_SCALE_CHANGE)


def test_images_are_deterministic_per_seed_and_index():
    a = synth_image(seed=3, index=5, height=128, width=128, difficulty="hard")
    b = synth_image(seed=3, index=5, height=128, width=128, difficulty="hard")
    c = synth_image(seed=3, index=6, height=128, width=128, difficulty="hard")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks) and a.objects == b.objects
    assert not np.array_equal(a.image, c.image)


def test_masks_are_exact_disjoint_and_visible_enough():
    for index in range(10):
        item = synth_image(seed=0, index=index, height=160, width=160, difficulty="hard")
        assert item.masks.shape == (len(item.objects), 160, 160)
        assert item.masks.sum(axis=0).max() <= 1  # one owner per pixel
        assert (item.masks.reshape(len(item.objects), -1).sum(axis=1) >= MIN_VISIBLE_PIXELS).all()


def test_visible_pixels_carry_the_object_paint():
    rng = np.random.default_rng(4)
    scene = sample_scene(rng, height=160, width=160, difficulty=get_difficulty("hard"))
    canvas = render_background(rng, height=160, width=160, clutter=20)
    masks, full_areas = paint_objects(canvas, scene.objects)
    for obj, mask in zip(scene.objects, masks, strict=True):
        paint = {tuple(COLOURS[obj.colour]), tuple(int(v) for v in _shade(COLOURS[obj.colour]).astype(np.uint8))}
        assert {tuple(int(v) for v in p) for p in canvas[mask]} <= paint
    visible = masks.reshape(len(masks), -1).sum(axis=1)
    assert (visible >= (1 - get_difficulty("hard").max_occlusion) * full_areas - 1).all()


def test_difficulty_controls_crowding():
    means = {}
    for name in ("easy", "medium", "hard"):
        counts = [len(sample_scene(np.random.default_rng(s), height=320, width=320,
                                   difficulty=get_difficulty(name)).objects) for s in range(15)]
        means[name] = np.mean(counts)
    assert means["easy"] < means["medium"] < means["hard"]


def test_all_attributes_appear():
    seen = {"kind": set(), "colour": set(), "size": set(), "texture": set()}
    for s in range(40):
        for obj in sample_scene(np.random.default_rng(s), height=320, width=320,
                                difficulty=get_difficulty("hard")).objects:
            for key in seen:
                seen[key].add(getattr(obj, key))
    assert seen == {"kind": set(KINDS), "colour": set(COLOURS), "size": set(SIZES), "texture": set(TEXTURES)}


def test_video_motion_crosses_leaves_reenters_and_scales():
    exits = crossings = 0
    for index in range(8):
        video = synth_video(seed=1, index=index, height=160, width=160, num_frames=24, difficulty="medium")
        # synth_video draws its plan first from the item's stream, so the same plan can be rebuilt here
        plan = sample_video_scene(item_rng(1, "video", index), height=160, width=160, num_frames=24,
                                  difficulty=get_difficulty("medium"))
        assert [o.id for o in video.tracks] == list(range(1, len(video.tracks) + 1))
        for n, track in enumerate(video.tracks):
            radii = np.array([video.objects[t][n].radius for t in range(24)])
            assert np.all(np.abs(radii / track.radius - 1) <= MAX_SCALE_CHANGE + 1e-9)
            assert all(video.objects[t][n].kind == track.kind and video.objects[t][n].id == track.id
                       for t in range(24))
            present = video.present[:, n]
            gone = np.flatnonzero(~video.in_frame[:, n])
            if gone.size and present[: gone[0]].any() and present[gone[-1]:].any():
                exits += 1  # left the frame entirely, then came back with the same id
        crossing = [k for k, p in enumerate(plan.tracks) if p.behaviour == "cross"]
        if crossing:
            a, b = (objects_at(plan, 12)[k].center for k in crossing)
            assert np.hypot(a[0] - b[0], a[1] - b[1]) < 1e-6
            crossings += 1
        assert np.abs(plan.shake).max() <= 4.0
    assert exits >= 2 and crossings >= 4
