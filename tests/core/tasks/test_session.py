"""Session API on a scripted backend: the issue's bad-input list (each rejected with a clear reason, the previous
prompt and state kept), prompt ids, task/kind rules, run-time config updates, reset and the no-prompt answer."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from uninext_core.deploy.backend import ModelSpec
from uninext_core.prompts import CategoryPrompt, ExpressionPrompt, TemplatePrompt, TemplateTarget
from uninext_core.tasks.session import FrameRejected, PromptRejected, Session
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


def tracking_session():
    """A session following one target with a scripted backend; 3 frames processed."""
    backend = fake.FakeBackend()
    backend.respond = lambda prompt, call: fake.make_raw(boxes_xyxy=[(12 + call, 10, 30 + call, 30)], pooled=[0.8])
    session = Session(backend, tokenizer=fake.tokenizer(), config=SessionConfig(frame_buffer_size=4))
    session.process(fake.frame(0), 0)
    prompt_id = session.set_prompt(TemplatePrompt((TemplateTarget(1, (10, 10, 30, 30)),), frame_stamp_ns=0))
    for stamp in (1, 2):
        session.process(fake.frame(stamp), stamp)
    return session, backend, prompt_id


def state_of(session):
    return (session.prompt, session.prompt_id, session.task, session.stats().frames_processed,
            session.stats().prompt_changes)


def assert_prompt_rejected(session, backend, prompt, match, **kwargs):
    before = state_of(session)
    encodings = (len(backend.text_calls), len(backend.template_calls))
    with pytest.raises(PromptRejected, match=match):
        session.set_prompt(prompt, **kwargs)
    assert state_of(session) == before
    assert (len(backend.text_calls), len(backend.template_calls)) == encodings
    # Tracking goes on with the previous prompt: the next frame continues the same target.
    instances = session.process(fake.frame(9), 1000 + before[3])
    assert instances.prompt_id == before[1] and instances.track_ids.tolist() == [1]


def test_frame_rejections_keep_the_state():
    session, _, _ = tracking_session()
    before = state_of(session)
    bad_frames = [
        (np.zeros((0, 64, 3), np.uint8), r"frame is empty \(shape \(0, 64, 3\)\)"),
        (np.zeros((64, 64, 3), np.float32), "frame must be uint8, got float32"),
        (np.zeros((64, 64), np.uint8), r"frame must be \(H, W, 3\) RGB, got shape \(64, 64\)"),
        ([[0, 0, 0]], "frame must be an .* numpy array, got list"),
        (fake.frame(5, size=48), r"frame size changed from 64x64 to 48x48 \(WxH\) mid-stream while tracking "
                                 r"\(task sot\); call reset\(\)"),
    ]
    for frame, match in bad_frames:
        with pytest.raises(FrameRejected, match=match):
            session.process(frame, 50)
    with pytest.raises(FrameRejected, match="stamp_ns must be a non-negative integer"):
        session.process(fake.frame(1), -5)
    assert state_of(session) == before
    assert 50 not in session._buffer  # rejected frames are not buffered
    assert session.process(fake.frame(6), 60).track_ids.tolist() == [1]
    session.reset()
    assert len(session.process(fake.frame(7, size=48), 70)) == 1  # after reset the new size is accepted


def test_size_changes_are_fine_for_stateless_tasks():
    backend = fake.FakeBackend()
    backend.respond = lambda prompt, call: fake.make_raw(boxes_xyxy=[(10, 10, 30, 30)], pooled=[0.9])
    session = Session(backend, tokenizer=fake.tokenizer())
    session.set_prompt(ExpressionPrompt("the cat"), task="rec")
    session.process(fake.frame(0), 0)
    instances = session.process(fake.frame(1, size=32), 1)
    assert instances.image_size == (32, 32)
    np.testing.assert_allclose(instances.boxes_xyxy, [(5, 5, 15, 15)], atol=1e-4)  # normalised box -> 32 px frame


def test_template_prompt_rejections():
    session, backend, _ = tracking_session()
    outside = TemplatePrompt((TemplateTarget(2, (100, 100, 120, 130)),), frame_stamp_ns=2)
    assert_prompt_rejected(session, backend, outside, r"target 2: box .* lies outside the 64x64 \(WxH\) image")
    sliver = TemplatePrompt((TemplateTarget(2, (-5, 10, 0.5, 20)),), frame_stamp_ns=2)
    assert_prompt_rejected(session, backend, sliver, r"target 2: box .* covers 0.50x10.00 pixels .*\(zero-area box\)")
    with pytest.raises(ValueError, match="needs x_max > x_min"):  # zero area is refused when the prompt is built
        TemplateTarget(2, (10, 10, 10, 20))
    missing = TemplatePrompt((TemplateTarget(2, (10, 10, 20, 20)),), frame_stamp_ns=123456)
    assert_prompt_rejected(session, backend, missing, r"template frame stamp 123456 is not in the frame buffer "
                                                      r"\(4 buffered frames, stamps 1..1004\) and the prompt "
                                                      r"carries no image")
    wrong_mask = TemplatePrompt((TemplateTarget(2, None, np.ones((32, 32), bool)),), frame_stamp_ns=2)
    assert_prompt_rejected(session, backend, wrong_mask, r"mask of shape \(32, 32\) does not match the template "
                                                         r"frame size \(64, 64\)")
    box_only = TemplatePrompt((TemplateTarget(2, (10, 10, 20, 20)),), frame_stamp_ns=2)
    assert_prompt_rejected(session, backend, box_only, "task 'vos' needs a mask for every target", task="vos")


def test_text_prompt_rejections():
    session, backend, _ = tracking_session()
    assert_prompt_rejected(session, backend, ExpressionPrompt("a" * 5000),
                           r"expression has 5000 characters; at most 1000 are accepted \(max_expression_chars\)")
    for empty in ("", "  ", "?!"):
        with pytest.raises(ValueError, match="is empty after removing punctuation"):
            ExpressionPrompt(empty)
    with pytest.raises(ValueError, match="category prompt is empty"):
        CategoryPrompt(())
    forged = ExpressionPrompt("x")
    object.__setattr__(forged, "text", "...")  # bypasses construction checks: the session still refuses it
    assert_prompt_rejected(session, backend, forged, "is empty after removing punctuation")
    many_words = ExpressionPrompt(" ".join(["word"] * 40))  # 42 tokens > 32 of the fake spec
    assert_prompt_rejected(session, backend, many_words, r"expression is 42 tokens long .* at most 32 fit")
    long_caption = CategoryPrompt(tuple(f"thing{i}" for i in range(20)))
    assert_prompt_rejected(session, backend, long_caption, "category caption exceeds max_tokens=32")
    session.update_config(session.config.replace(max_categories=3))
    assert_prompt_rejected(session, backend, CategoryPrompt(("a", "b", "c", "d")),
                           r"4 class names; at most 3 are accepted \(max_categories\)")


def test_task_and_kind_rules():
    session, backend, _ = tracking_session()
    assert_prompt_rejected(session, backend, ExpressionPrompt("the cat"), r"task 'mot' does not fit an? expression "
                           r"prompt; expected one of \['rec', 'res', 'rvos'\]", task="mot")
    assert_prompt_rejected(session, backend, CategoryPrompt(("cat",)), "unknown task 'tracking'", task="tracking")
    assert_prompt_rejected(session, backend, "cat", "prompt must be a CategoryPrompt")
    assert_prompt_rejected(session, backend, CategoryPrompt(("cat",)), "prompt_id must be None or an integer >= 1",
                           prompt_id=0)

    fresh = Session(fake.FakeBackend(), tokenizer=fake.tokenizer())
    assert fresh.set_prompt(CategoryPrompt(("cat",))) == 1 and fresh.task == "instance_segmentation"
    assert fresh.set_prompt(ExpressionPrompt("the cat")) == 2 and fresh.task == "res"
    assert fresh.set_prompt(ExpressionPrompt("the cat"), prompt_id=40) == 40
    assert fresh.set_prompt(ExpressionPrompt("the cat"), task="rvos") == 41 and fresh.task == "rvos"
    fresh.update_config(fresh.config.replace(masks=False))
    assert fresh.set_prompt(CategoryPrompt(("cat",))) == 42 and fresh.task == "detection"


def test_image_only_models_refuse_template_and_tracking_tasks():
    spec = ModelSpec(**{**fake.SPEC.__dict__, "template_size": None, "embedding_dim": 0})
    backend = fake.FakeBackend(spec=spec)
    session = Session(backend, tokenizer=fake.tokenizer())
    session.process(fake.frame(0), 0)
    with pytest.raises(PromptRejected, match="has no template encoder"):
        session.set_prompt(TemplatePrompt((TemplateTarget(1, (1, 1, 20, 20)),), frame_stamp_ns=0))
    with pytest.raises(PromptRejected, match="task 'vis' needs re-ID embeddings"):
        session.set_prompt(CategoryPrompt(("cat",)), task="vis")
    assert session.prompt is None and session.prompt_id == 0 and session.task is None


def test_no_prompt_answers_empty_and_buffers_frames():
    backend = fake.FakeBackend()
    session = Session(backend, tokenizer=fake.tokenizer(), config=SessionConfig(frame_buffer_size=2))
    for stamp in (10, 20, 30):
        empty = session.process(fake.frame(stamp), stamp)
        assert len(empty) == 0 and empty.prompt_id == 0 and empty.image_size == (64, 64)
    assert backend.infer_prompts == []
    assert session._buffer.stamps() == [20, 30]  # bounded by frame_buffer_size
    with pytest.raises(PromptRejected, match="stamp 10 is not in the frame buffer"):
        session.set_prompt(TemplatePrompt((TemplateTarget(1, (1, 1, 20, 20)),), frame_stamp_ns=10))
    session.set_prompt(TemplatePrompt((TemplateTarget(1, (1, 1, 20, 20)),), frame_stamp_ns=20))
    session.reset(clear_prompt=True)
    assert session.prompt is None and session.task is None and session._buffer.stamps() == []


def test_update_config_validates_and_names_the_field():
    session, _, _ = tracking_session()
    before = session.config
    with pytest.raises(ValueError, match=r"score_threshold must be a number in \[0, 1\], got 1.5"):
        session.update_config(before.replace(score_threshold=1.5))
    with pytest.raises(ValueError, match=r"quasi_dense.match_score_thr must be a number in \[0, 1\], got -0.1"):
        session.update_config(before.replace(quasi_dense=replace(before.quasi_dense, match_score_thr=-0.1)))
    with pytest.raises(TypeError, match="expected a SessionConfig, got dict"):
        session.update_config({"score_threshold": 0.3})
    assert session.config is before
    session.update_config(before.replace(frame_buffer_size=1))
    assert session._buffer.stamps() == [2]
