"""Session-level parity: one perception Session fed by the torch backend and one fed by the ONNX Runtime backend
(tiny, exported at 320×384) give the same instances on a synthetic video for a category task with tracking and
masks (MOTS), an expression task (RVOS) and template tasks (SOT, VOS): same track ids, classes and count, boxes
within 1 px, scores within 1e-3, masks differing in at most 0.5 % of an instance's pixels (a few boundary pixels).
The model has random weights, so the MOTS tracker and VOS score thresholds are lowered to 0 to return anything.

Both backends letterbox into the export size (the torch backend is told the same fixed input size), so the
network sees identical inputs and only the runtimes differ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uninext_core.data.synthetic.scene import KINDS
from uninext_core.data.synthetic.world import synth_video
from uninext_core.deploy.onnxruntime_backend import OnnxRuntimeBackend
from uninext_core.deploy.torch_backend import TorchBackend
from uninext_core.instances import Instances
from uninext_core.prompts import CategoryPrompt, ExpressionPrompt, TemplatePrompt, TemplateTarget
from uninext_core.tasks.session import Session
from uninext_core.tasks.session_config import SessionConfig
from uninext_core.tasks.trackers.config import QuasiDenseTrackerConfig

pytestmark = pytest.mark.slow
HEIGHT, WIDTH, FRAMES = 240, 300, 4


@pytest.fixture(scope="module")
def sessions_and_video(tiny_export):
    torch_backend = TorchBackend(tiny_export.model, spec=tiny_export.manifest.spec)
    torch_backend.fixed_input_size = tiny_export.manifest.image_size  # letterbox like the static-shape backend
    onnx_backend = OnnxRuntimeBackend(tiny_export.directory, intra_op_threads=1)
    tokenizer = tiny_export.model.text_encoder.tokenizer
    video = synth_video(seed=3, index=1, height=HEIGHT, width=WIDTH, num_frames=FRAMES, difficulty="easy")
    # Random weights score every query low: let the MOTS tracker start and keep tracks, and VOS keep objects, at
    # any score.
    config = SessionConfig(quasi_dense=QuasiDenseTrackerConfig(init_score_thr=0.0, obj_score_thr=0.0),
                           vos_min_score=0.0)
    return (Session(torch_backend, tokenizer=tokenizer, config=config),
            Session(onnx_backend, tokenizer=tokenizer, config=config)), video


def prompts(video):
    ys, xs = np.nonzero(video.masks[0, 0])
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    mask_targets = tuple(TemplateTarget(n + 1, None, video.masks[0, n], video.tracks[n].kind)
                         for n in range(len(video.tracks)) if video.masks[0, n].any())
    return {
        "mots": CategoryPrompt(KINDS),
        "rvos": ExpressionPrompt("the red circle on the left"),
        "sot": TemplatePrompt((TemplateTarget(1, box, label=video.tracks[0].kind),), frame_stamp_ns=0,
                              image=video.frames[0]),
        "vos": TemplatePrompt(mask_targets, frame_stamp_ns=0, image=video.frames[0]),
    }


def assert_same_instances(expected: Instances, got: Instances, where: str) -> None:
    assert len(got) == len(expected), where
    np.testing.assert_array_equal(got.track_ids, expected.track_ids, err_msg=where)
    np.testing.assert_array_equal(got.class_indices, expected.class_indices, err_msg=where)
    assert got.labels == expected.labels, where
    np.testing.assert_allclose(got.boxes_xyxy, expected.boxes_xyxy, atol=1.0, rtol=0, err_msg=where)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-3, rtol=0, err_msg=where)
    if expected.masks is None:
        assert got.masks is None, where
        return
    for n, (a, b) in enumerate(zip(expected.masks, got.masks, strict=True)):
        differing = int((a != b).sum())
        assert differing <= max(3, int(0.005 * max(a.sum(), b.sum()))), f"{where} mask {n}: {differing} pixels"


@pytest.mark.parametrize("task", ["mots", "rvos", "sot", "vos"])
def test_sessions_on_torch_and_onnxruntime_give_the_same_instances(sessions_and_video, task):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        (torch_session, onnx_session), video = sessions_and_video
        prompt = prompts(video)[task]
        for session in (torch_session, onnx_session):
            session.reset(clear_prompt=True)
            session.process(video.frames[0], 0)  # buffer the prompt frame (template prompts refer to it)
            session.set_prompt(prompt, task=task)
        matched = 0
        for t in range(1, FRAMES):
            expected = torch_session.process(video.frames[t], t)
            got = onnx_session.process(video.frames[t], t)
            assert expected.task == got.task == task
            assert_same_instances(expected, got, f"{task} frame {t}")
            matched += len(got)
        assert matched > 0  # the comparison covered real instances
    finally:
        torch.set_num_threads(previous)
