"""SOT rule through the session on a scripted backend: the prompt frame returns the given box, the top-1 query is
followed, and the online template update happens only at the interval and only above the score threshold."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from uninext_core.prompts import TemplatePrompt, TemplateTarget
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
IOU = 0.99


def score_to_pooled(score: float) -> float:
    """Pooled probability p with sqrt(p · IOU) = score."""
    return score * score / IOU


def test_sot_template_update_only_at_the_interval_and_above_the_threshold():
    backend = fake.FakeBackend()
    config = SessionConfig(template_update_interval=2, template_update_threshold=0.7)
    session = Session(backend, tokenizer=fake.tokenizer(), config=config)
    session.process(fake.frame(0), 0)
    session.set_prompt(TemplatePrompt((TemplateTarget(7, (10, 12, 30, 40), label="mug"),), frame_stamp_ns=0))
    assert session.task == "sot" and len(backend.template_calls) == 1

    # Frame index (frames since the prompt frame) -> top score; updates are due at even indices.
    scores = {1: 0.95, 2: 0.65, 3: 0.95, 4: 0.9, 5: 0.95, 6: 0.69, 7: 0.95, 8: 0.71}
    boxes = [(20, 20, 40, 44), (0, 0, 10, 10)]  # query 0 is the best on every frame
    backend.respond = lambda prompt, call: fake.make_raw(
        boxes_xyxy=boxes, pooled=[score_to_pooled(scores[call + 1]), 0.01], iou=[IOU, IOU])
    encodings_before = {}
    for index in range(1, 9):
        encodings_before[index] = len(backend.template_calls)
        instances = session.process(fake.frame(index), index * 100)
        np.testing.assert_allclose(instances.scores, [scores[index]], atol=1e-5)
        np.testing.assert_allclose(instances.boxes_xyxy, [boxes[0]], atol=1e-4)
        assert instances.track_ids.tolist() == [7] and instances.labels == ["mug"] and instances.masks is None
    # Updates at index 4 (0.9 > 0.7) and 8 (0.71 > 0.7); not at 2 (0.65) or 6 (0.69); never at odd indices.
    assert len(backend.template_calls) == 3
    updated_after = [i for i in range(1, 8) if encodings_before[i + 1] > encodings_before[i]]
    assert updated_after == [4]
    # The prompt is concat(initial, latest): before the first update both halves are the initial encoding (#1).
    tokens = fake.TEMPLATE_TOKENS
    first, fifth = backend.infer_prompts[0], backend.infer_prompts[4]
    assert first.hidden.shape[1] == 2 * tokens
    assert first.hidden[0, 0, 0] == 1 and first.hidden[0, tokens, 0] == 1
    assert fifth.hidden[0, 0, 0] == 1 and fifth.hidden[0, tokens, 0] == 2  # frame 5 uses the update of frame 4
    # The update crop is taken around the predicted box with the box prior as 4th channel.
    prior = backend.template_calls[1][0, 3]
    assert prior[8, 8] == 1.0 and prior[0, 0] == 0.0


def test_sot_returns_the_given_box_on_the_prompt_frame_and_reset_restores_the_initial_template():
    backend = fake.FakeBackend()
    session = Session(backend, tokenizer=fake.tokenizer(), config=SessionConfig(template_update_interval=1))
    image = fake.frame(3)
    prompt = TemplatePrompt((TemplateTarget(1, (-4, 5, 20, 30)), TemplateTarget(2, (30, 30, 60, 62))),
                            frame_stamp_ns=500, image=image)
    session.set_prompt(prompt)
    answer = session.process(image, 500)
    np.testing.assert_allclose(answer.boxes_xyxy, [(0, 5, 20, 30), (30, 30, 60, 62)])  # clipped to the frame
    np.testing.assert_array_equal(answer.scores, [1.0, 1.0])
    assert answer.track_ids.tolist() == [1, 2] and answer.class_indices.tolist() == [0, 1]
    assert backend.infer_prompts == []

    # Target 1's initial template is encoding #1, target 2's is #2: answer each with its own box.
    target_boxes = {1: (10, 10, 30, 30), 2: (34, 30, 60, 58)}
    backend.respond = lambda prompt, call: fake.make_raw(
        boxes_xyxy=[target_boxes[int(prompt.hidden[0, 0, 0])]], pooled=[0.9], iou=[0.9])
    followed = session.process(fake.frame(4), 600)
    np.testing.assert_allclose(followed.boxes_xyxy, [target_boxes[1], target_boxes[2]], atol=1e-4)
    assert len(backend.infer_prompts) == 2  # one forward per target
    assert len(backend.template_calls) == 4  # 2 at the prompt, 2 updates (score 0.9 > 0.7, interval 1)
    session.reset()
    session.process(fake.frame(5), 700)
    tokens = fake.TEMPLATE_TOKENS
    for prompt_features in backend.infer_prompts[2:]:
        assert prompt_features.hidden[0, 0, 0] == prompt_features.hidden[0, tokens, 0]  # latest = initial again


def test_continuity_prior_keeps_the_target_when_a_distractor_scores_higher_and_reports_the_model_score():
    distractor, near = (40, 40, 60, 60), (12, 14, 32, 42)  # the prompt box is (10, 12, 30, 40)

    def follow(weight: float) -> list[tuple[float, ...]]:
        backend = fake.FakeBackend()
        session = Session(backend, tokenizer=fake.tokenizer(), config=SessionConfig(sot_motion_weight=weight))
        session.process(fake.frame(0), 0)
        session.set_prompt(TemplatePrompt((TemplateTarget(7, (10, 12, 30, 40)),), frame_stamp_ns=0))
        backend.respond = lambda prompt, call: fake.make_raw(
            boxes_xyxy=[distractor, near], pooled=[score_to_pooled(0.8), score_to_pooled(0.6)], iou=[IOU, IOU])
        answers = [session.process(fake.frame(i), i * 100) for i in (1, 2)]
        if weight:
            np.testing.assert_allclose(answers[0].scores, [0.6], atol=1e-5)  # the model's score, not the blend
        session.reset()  # the previous box is the prompt box again
        answers.append(session.process(fake.frame(3), 300))
        return [tuple(a.boxes_xyxy[0]) for a in answers]

    assert follow(0.0) == [distractor] * 3
    assert follow(0.5) == [near] * 3
