"""MOT/MOTS/VIS through the session on a scripted backend: a crossing pair keeps its ids through the QDTrack-style
tracker (one of them hidden on the crossing frame), thresholds change at run time without losing tracks, MOTS adds
masks, VIS reports clip-level labels through the IDOL tracker."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from uninext_core.prompts import CategoryPrompt, build_category_caption
from uninext_core.tasks.session import Session
from uninext_core.tasks.session_config import SessionConfig


def _load_fake():
    name = "uninext_test_fake_backend"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fake_backend.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fake = _load_fake()
NAMES = ("car", "person")
EMBED = {"a": [5.0, 0, 0, 0], "b": [0, 5.0, 0, 0], "c": [0, 0, 5.0, 0]}


def scripted(objects):
    """RawOutputs for objects [(key, box, class probabilities)], plus two background queries."""
    spans = build_category_caption(NAMES, fake.tokenizer(), max_tokens=fake.MAX_TOKENS).token_spans
    boxes = [o[1] for o in objects] + [(0, 0, 4, 4), (60, 60, 64, 64)]
    token_logits = np.full((len(boxes), fake.MAX_TOKENS), -10.0)
    embeddings = np.zeros((len(boxes), fake.EMBED_DIM))
    for q, (key, _, probs) in enumerate(objects):
        for c, span in enumerate(spans):
            token_logits[q, list(span)] = fake.logit(probs[c])
        embeddings[q] = EMBED[key]
    # The IoU branch is off for MOT/VIS: a poor IoU logit must not change anything.
    return fake.make_raw(boxes_xyxy=boxes, token_logits=token_logits, embeddings=embeddings, iou=[0.01] * len(boxes))


def crossing_frames():
    """a moves right, b moves left, same row; on frame 2 they coincide and only a (higher score) survives NMS."""
    frames = []
    for x_a, x_b in ((4, 44), (14, 34), (24, 24), (34, 14), (44, 4)):
        objects = [("a", (x_a, 20, x_a + 16, 36), (0.9, 0.05)), ("b", (x_b, 20, x_b + 16, 36), (0.8, 0.05))]
        frames.append(objects)
    return frames


def test_crossing_pair_keeps_ids_and_survives_the_occlusion():
    backend = fake.FakeBackend()
    session = Session(backend, tokenizer=fake.tokenizer())
    session.set_prompt(CategoryPrompt(NAMES), task="mot")
    ids_by_key = {"a": set(), "b": set()}
    for index, objects in enumerate(crossing_frames()):
        backend.queue.append(scripted(objects))
        instances = session.process(fake.frame(index), index)
        assert instances.masks is None and instances.task == "mot"
        for track_id, box in zip(instances.track_ids, instances.boxes_xyxy, strict=True):
            key = next(k for k, b, _ in objects if np.allclose(b, box))
            ids_by_key[key].add(int(track_id))
        if index == 2:
            assert len(instances) == 1  # b hidden behind a (class NMS 0.7 on identical boxes)
    assert ids_by_key == {"a": {1}, "b": {2}}
    # Final frame: a is on the right (x 44), b on the left.
    assert instances.track_ids.tolist() == [1, 2]
    np.testing.assert_allclose(instances.boxes_xyxy[:, 0], [44, 4])
    assert instances.labels == ["car", "car"]
    np.testing.assert_allclose(instances.scores, [0.9, 0.8], atol=1e-5)


def test_thresholds_change_at_run_time_without_losing_tracks():
    backend = fake.FakeBackend()
    session = Session(backend, tokenizer=fake.tokenizer())
    session.set_prompt(CategoryPrompt(NAMES), task="mots")
    backend.queue.append(scripted([("a", (4, 4, 20, 20), (0.9, 0.01)), ("b", (40, 40, 60, 60), (0.01, 0.7))]))
    first = session.process(fake.frame(0), 0)
    assert first.track_ids.tolist() == [1, 2] and first.labels == ["car", "person"]
    assert first.masks.shape == (2, 64, 64) and first.masks[0, 10, 10] and first.masks[1, 50, 50]

    stricter = replace(session.config.quasi_dense, init_score_thr=0.95)
    session.update_config(session.config.replace(quasi_dense=stricter))
    assert session.config.quasi_dense.init_score_thr == 0.95
    # a and b continue their tracks; the new object c (0.9 < 0.95) does not start one any more.
    backend.queue.append(scripted([("a", (6, 4, 22, 20), (0.9, 0.01)), ("b", (40, 42, 60, 62), (0.01, 0.7)),
                                   ("c", (30, 2, 50, 14), (0.9, 0.01))]))
    second = session.process(fake.frame(1), 1)
    assert second.track_ids.tolist() == [1, 2]

    looser = replace(stricter, init_score_thr=0.5)
    session.update_config(session.config.replace(quasi_dense=looser, score_threshold=0.75))
    backend.queue.append(scripted([("a", (8, 4, 24, 20), (0.9, 0.01)), ("b", (40, 44, 60, 64), (0.01, 0.7)),
                                   ("c", (30, 2, 50, 14), (0.85, 0.01))]))
    third = session.process(fake.frame(2), 2)
    # c starts track 3; b (0.7) is still tracked but no longer returned (score_threshold 0.75).
    assert third.track_ids.tolist() == [1, 3]


def test_vis_reports_clip_level_labels_through_the_idol_tracker():
    backend = fake.FakeBackend()
    session = Session(backend, tokenizer=fake.tokenizer(), config=SessionConfig(masks=False))
    session.set_prompt(CategoryPrompt(NAMES), task="vis")
    # One object whose per-frame best class flips: car .6/.3, then person .5 vs car .45, then car .6 again.
    per_frame = [(0.6, 0.3), (0.45, 0.5), (0.6, 0.3)]
    for index, probs in enumerate(per_frame):
        backend.queue.append(scripted([("a", (10 + index, 10, 40 + index, 40), probs)]))
        instances = session.process(fake.frame(index), index)
        assert instances.track_ids.tolist() == [1] and instances.masks is None
    # Clip mean: car (0.6 + 0.45 + 0.6) / 3 = 0.55, person 0.3667 -> car on every frame, even the second.
    assert instances.labels == ["car"]
    np.testing.assert_allclose(instances.scores, [0.55], atol=1e-5)
    results = session.clip_results()
    assert [(r.track_id, r.label) for r in results] == [(1, 0), (1, 1)]  # every class with mean > 0.05
    session.reset()
    assert session.clip_results() == []
