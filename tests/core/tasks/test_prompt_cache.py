"""Prompt caching: the text and template encoders run once per prompt change (counted on a scripted backend),
never per frame; the cache is keyed by content and shared between sessions on one backend."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from uninext_core.model.template_crop import TemplateCrop
from uninext_core.model.text_encoder import TokenizedText
from uninext_core.prompts import CategoryPrompt, ExpressionPrompt, TemplatePrompt, TemplateTarget
from uninext_core.tasks.prompt_cache import PromptCache
from uninext_core.tasks.session import Session


def _load_fake():
    name = "uninext_test_fake_backend"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fake_backend.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fake = _load_fake()


def detections_raw():
    return fake.make_raw(boxes_xyxy=[(10, 10, 30, 30)])


def test_encoders_run_once_per_prompt_change_never_per_frame():
    backend = fake.FakeBackend()
    backend.respond = lambda prompt, call: detections_raw()
    session = Session(backend, tokenizer=fake.tokenizer())
    session.set_prompt(CategoryPrompt(("cat", "dog")))
    for index in range(5):
        session.process(fake.frame(index), index)
    assert len(backend.text_calls) == 1 and len(backend.infer_prompts) == 5

    session.set_prompt(ExpressionPrompt("the cat on the left"))
    for index in range(5, 8):
        session.process(fake.frame(index), index)
    assert len(backend.text_calls) == 2

    session.set_prompt(CategoryPrompt(("cat", "dog")))  # seen before: answered from the cache
    session.process(fake.frame(8), 8)
    assert len(backend.text_calls) == 2
    stats = session.stats()
    assert (stats.cache.text_encodings, stats.cache.hits) == (2, 1)
    assert stats.prompt_changes == 3 and stats.frames_processed == 9

    session.set_prompt(TemplatePrompt((TemplateTarget(1, (10, 10, 30, 30)),), frame_stamp_ns=8))
    for index in range(9, 14):  # interval 200: no online update in these frames
        session.process(fake.frame(index), index)
    assert len(backend.template_calls) == 1 and len(backend.text_calls) == 2


def test_a_shared_cache_encodes_a_prompt_once_for_several_sessions():
    backend = fake.FakeBackend()
    cache = PromptCache(backend)
    cameras = [Session(backend, tokenizer=fake.tokenizer(), prompt_cache=cache) for _ in range(3)]
    for session in cameras:
        session.set_prompt(CategoryPrompt(("person", "car")), task="detection")
    assert len(backend.text_calls) == 1
    assert cache.stats().hits == 2
    with pytest.raises(ValueError, match="belongs to another backend"):
        Session(fake.FakeBackend(), tokenizer=fake.tokenizer(), prompt_cache=cache)


def test_cache_keys_are_content_and_capacity_is_bounded():
    backend = fake.FakeBackend()
    cache = PromptCache(backend, capacity=2)

    def tokens(ids):
        padded = torch.zeros(1, 8, dtype=torch.int64)
        padded[0, : len(ids)] = torch.tensor(ids)
        return TokenizedText(padded, (padded != 0).to(torch.int64))

    first = cache.text(tokens([101, 5, 102]))
    assert cache.text(tokens([101, 5, 102])) is first  # equal content, new tensors: a hit
    cache.text(tokens([101, 6, 102]))
    cache.text(tokens([101, 7, 102]))  # evicts [5] (least recently used)
    cache.text(tokens([101, 5, 102]))
    assert len(backend.text_calls) == 4 and cache.stats().entries == 2

    crop = TemplateCrop(torch.ones(4, 16, 16), torch.zeros(16, 16, dtype=torch.bool))
    cache.template(crop)
    cache.template(TemplateCrop(torch.ones(4, 16, 16), torch.zeros(16, 16, dtype=torch.bool)))
    moved = TemplateCrop(torch.ones(4, 16, 16), torch.ones(16, 16, dtype=torch.bool))  # other padding: other key
    cache.template(moved)
    assert len(backend.template_calls) == 2
    cache.clear()
    assert cache.stats() == (0, 0, 0, 0)
