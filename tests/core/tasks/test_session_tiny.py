"""End to end on the real tiny model (random weights: mechanics only): every one of the ten tasks runs on synthetic
frames through one Session and returns well-formed Instances; the encoders run at prompt changes only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uninext_core.data.synthetic.scene import KINDS
from uninext_core.data.synthetic.world import synth_video
from uninext_core.deploy.torch_backend import build_torch_backend
from uninext_core.instances import TASKS, Instances
from uninext_core.model.build import build_model
from uninext_core.prompts import CategoryPrompt, ExpressionPrompt, TemplatePrompt, TemplateTarget
from uninext_core.tasks.session import Session
from uninext_core.tasks.session_config import SessionConfig

HEIGHT, WIDTH, FRAMES = 96, 128, 3
MASK_TASKS = {"instance_segmentation", "res", "rvos", "vos", "mots", "vis"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def session_parts():
    torch.manual_seed(0)
    model = build_model("tiny")
    backend = build_torch_backend("tiny", model=model)
    video = synth_video(seed=0, index=0, height=HEIGHT, width=WIDTH, num_frames=FRAMES, difficulty="easy")
    return backend, model.text_encoder.tokenizer, video


def check_instances(instances: Instances, *, task: str, stamp: int, prompt_id: int) -> None:
    assert instances.task == task and instances.stamp_ns == stamp and instances.prompt_id == prompt_id
    assert instances.image_size == (HEIGHT, WIDTH)
    count = len(instances)
    assert instances.boxes_xyxy.dtype == np.float32 and np.isfinite(instances.boxes_xyxy).all()
    assert (instances.boxes_xyxy[:, [0, 2]] >= 0).all() and (instances.boxes_xyxy[:, [0, 2]] <= WIDTH).all()
    assert (instances.boxes_xyxy[:, [1, 3]] >= 0).all() and (instances.boxes_xyxy[:, [1, 3]] <= HEIGHT).all()
    assert ((instances.scores >= 0) & (instances.scores <= 1)).all()
    assert instances.track_ids.dtype == np.int64 and instances.class_indices.dtype == np.int64
    assert len(instances.labels) == count
    if task in MASK_TASKS:
        assert instances.masks is not None and instances.masks.shape == (count, HEIGHT, WIDTH)
        assert instances.masks.dtype == bool
        assert len(instances.rles()) == count
    else:
        assert instances.masks is None
    if task in ("detection", "instance_segmentation"):
        assert count == 100  # top-100 pairs, score threshold 0 (official)
    if task in ("rec", "res", "rvos"):
        assert count == 1 and instances.class_indices.tolist() == [-1]
    if task in ("mot", "mots", "vis"):
        assert (instances.track_ids >= 1).all()


def test_every_task_runs_on_the_tiny_model(session_parts):
    backend, tokenizer, video = session_parts
    session = Session(backend, tokenizer=tokenizer, config=SessionConfig(input_short_side=96, input_max_size=128))
    first_track = video.masks[0, 0]
    ys, xs = np.nonzero(first_track)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    template_targets = (TemplateTarget(1, box, label=video.tracks[0].kind),)
    mask_targets = tuple(TemplateTarget(n + 1, None, video.masks[0, n], video.tracks[n].kind)
                         for n in range(len(video.tracks)) if video.masks[0, n].any())
    prompts = {
        "detection": CategoryPrompt(KINDS[:4]), "instance_segmentation": CategoryPrompt(KINDS[:4]),
        "mot": CategoryPrompt(KINDS), "mots": CategoryPrompt(KINDS), "vis": CategoryPrompt(KINDS),
        "rec": ExpressionPrompt("the red circle"), "res": ExpressionPrompt("the red circle"),
        "rvos": ExpressionPrompt("the red circle"),
        "sot": TemplatePrompt(template_targets, frame_stamp_ns=0, image=video.frames[0]),
        "vos": TemplatePrompt(mask_targets, frame_stamp_ns=0, image=video.frames[0]),
    }
    assert set(prompts) == set(TASKS)
    for task, prompt in prompts.items():
        encoder_runs = session.stats().cache.text_encodings + session.stats().cache.template_encodings
        prompt_id = session.set_prompt(prompt, task=task)
        assert session.task == task
        after_prompt = session.stats().cache
        for t in range(1, FRAMES):
            check_instances(session.process(video.frames[t], t), task=task, stamp=t, prompt_id=prompt_id)
        cache = session.stats().cache
        # Encoders ran at this prompt change only (VOS may rebuild previous-frame templates of confident objects).
        assert cache.text_encodings == after_prompt.text_encodings
        if task != "vos":
            assert cache.template_encodings == after_prompt.template_encodings
        assert after_prompt.text_encodings + after_prompt.template_encodings >= encoder_runs
    sot_prompt_frame = session.set_prompt(prompts["sot"])
    answer = session.process(video.frames[0], 0)
    check_instances(answer, task="sot", stamp=0, prompt_id=sot_prompt_frame)
    np.testing.assert_allclose(answer.boxes_xyxy, [box])
    cost = session.stats().last_cost
    assert cost.network_ms == 0.0 and cost.preprocess_ms > 0.0
