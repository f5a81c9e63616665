"""VOS rule: soft aggregation on hand-computed probabilities, and the runner through the session on a scripted
backend (overlaps go to the more confident object, low scores give empty masks, template rebuilds only >= 0.7)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

from uninext_core.prompts import TemplatePrompt, TemplateTarget
from uninext_core.tasks.session import Session
from uninext_core.tasks.session_config import SessionConfig
from uninext_core.tasks.vos import soft_aggregate, tight_box_xyxy


def _load_fake():
    name = "uninext_test_fake_backend"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fake_backend.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fake = _load_fake()


def test_soft_aggregation_by_hand():
    # Four pixels, two objects. Background = (1 - p1)(1 - p2).
    p1 = torch.tensor([0.6, 0.3, 0.2, 0.55])
    p2 = torch.tensor([0.3, 0.6, 0.2, 0.55])
    # pixel 0: bg .28, p1 .6 -> obj 1; pixel 1: bg .28 -> obj 2; pixel 2: bg .64 -> background;
    # pixel 3: bg .2025, tie .55/.55 -> the lower index (obj 1).
    masks = soft_aggregate(torch.stack([p1, p2])[:, None, :])
    assert masks[:, 0].tolist() == [[True, False, False, True], [False, True, False, False]]
    # A lone object at 0.45 loses to its own background (0.55); at 0.55 it wins.
    assert soft_aggregate(torch.tensor([[[0.45, 0.55]]])).tolist() == [[[False, True]]]
    assert soft_aggregate(torch.zeros(0, 2, 2)).shape == (0, 2, 2)


def test_tight_box():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    assert tight_box_xyxy(mask) == (3.0, 2.0, 9.0, 5.0)


def test_vos_merges_objects_and_rebuilds_templates_of_confident_objects():
    backend = fake.FakeBackend()
    session = Session(backend, tokenizer=fake.tokenizer(), config=SessionConfig())
    image = fake.frame(0)
    mask_a = np.zeros((64, 64), bool)
    mask_a[8:40, 8:40] = True
    mask_b = np.zeros((64, 64), bool)
    mask_b[24:56, 24:56] = True
    prompt = TemplatePrompt((TemplateTarget(3, None, mask_a, "a"), TemplateTarget(5, None, mask_b, "b")),
                            frame_stamp_ns=0, image=image)
    session.set_prompt(prompt)
    assert session.task == "vos" and len(backend.template_calls) == 2
    assert backend.template_calls[0][0, 3].max() == 1.0  # the mask is the 4th channel

    first = session.process(image, 0)  # the prompt frame: the given masks, score 1
    np.testing.assert_array_equal(first.masks, np.stack([mask_a, mask_b]))
    assert first.track_ids.tolist() == [3, 5]

    # Frame 1: a at (8..40) with mask logit 2 (p .88), b at (24..56) with logit 4 (p .98): overlap goes to b.
    # Frame 2: b scores 0.4 < 0.5 -> empty, a takes its whole box.
    plan = {1: {1: (0.9, 2.0), 2: (0.9, 4.0)}, 2: {1: (0.9, 2.0), 2: (0.4, 4.0)}}
    boxes = {1: (8, 8, 40, 40), 2: (24, 24, 56, 56)}
    frame_index = {"value": 1}

    def respond(prompt_features, call):
        target = int(prompt_features.hidden[0, 0, 0])  # initial template encoding: #1 for a, #2 for b
        score, mask_logit = plan[frame_index["value"]][target]
        return fake.make_raw(boxes_xyxy=[boxes[target]], pooled=[score * score], iou=[1.0 - 1e-6],
                             mask_logit=[mask_logit])

    backend.respond = respond
    merged = session.process(fake.frame(1), 100)
    assert merged.track_ids.tolist() == [3, 5] and merged.labels == ["a", "b"]
    a, b = merged.masks
    assert not (a & b).any()
    assert b[30, 30] and not a[30, 30]  # overlap -> the more confident object
    assert a[12, 12] and b[50, 50] and not a[50, 50]
    np.testing.assert_allclose(merged.boxes_xyxy[1], tight_box_xyxy(b))
    assert len(backend.template_calls) == 4  # both scored 0.9 >= 0.7: both previous-frame templates rebuilt

    frame_index["value"] = 2
    lone = session.process(fake.frame(2), 200)
    assert lone.track_ids.tolist() == [3]  # b scored 0.4 < vos_min_score 0.5: empty mask, not reported
    assert lone.masks[0, 30, 30]
    assert len(backend.template_calls) == 5  # only a rebuilt its template
    # Frame 2's prompts used the frame-1 templates: a's second half is encoding #3, b's #4.
    tokens = fake.TEMPLATE_TOKENS
    assert [int(p.hidden[0, tokens, 0]) for p in backend.infer_prompts[2:4]] == [3, 4]
