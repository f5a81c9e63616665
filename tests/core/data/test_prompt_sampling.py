from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from uninext_core.data.prompt_sampling import (
    BACKGROUND_ID,
    apply_category_prompt,
    build_training_caption,
    caption_fits,
    keep_instance,
    positive_map,
    sample_category_prompt,
    sample_expression,
    sample_negative_count,
    sample_template,
)
from uninext_core.data.records import Category
from uninext_core.data.targets import Target
from uninext_core.model.text_encoder import packaged_minilm_path

CATEGORIES = [Category(k + 1, name) for k, name in enumerate(
    ["circle", "square", "triangle", "star", "hexagon", "cross", "heart", "ring", "ellipse", "diamond"])]


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(packaged_minilm_path()), local_files_only=True)


def test_positives_kept_negatives_never_positive_and_names_aligned():
    rng = np.random.default_rng(0)
    seen_background = False
    for _ in range(200):
        sample = sample_category_prompt(positive_ids=[4, 2, 4], categories=CATEGORIES, rng=rng,
                                        fits=lambda names: True)
        assert sample.positive_ids == (4, 2) and sample.dropped_ids == ()
        assert set(sample.category_ids) >= {2, 4}
        assert len(set(sample.category_ids)) == len(sample.category_ids)
        by_id = {c.id: c.name for c in CATEGORIES} | {BACKGROUND_ID: "background"}
        assert list(sample.names) == [by_id[c] for c in sample.category_ids]
        seen_background |= BACKGROUND_ID in sample.category_ids
    assert seen_background


def test_order_is_shuffled():
    rng = np.random.default_rng(1)
    firsts = {sample_category_prompt(positive_ids=[1], categories=CATEGORIES, rng=rng, fits=lambda n: True).names[0]
              for _ in range(50)}
    assert len(firsts) > 3


def test_negative_count_distribution():
    # 10 classes: N = min(85, 11) = 11; P(11) = 0.5 + 0.5 / 11, other counts 0.5 / 11 each.
    rng = np.random.default_rng(0)
    counts = np.bincount([sample_negative_count(rng, 10) for _ in range(20000)], minlength=12)
    assert counts[0] == 0
    assert counts[11] / 20000 == pytest.approx(0.5 + 0.5 / 11, abs=0.015)
    assert counts[1:11] / 20000 == pytest.approx(np.full(10, 0.5 / 11), abs=0.01)
    assert sample_negative_count(rng, 1000) <= 85


def test_budget_drops_positives_then_skips_negatives():
    rng = np.random.default_rng(2)
    sample = sample_category_prompt(positive_ids=[1, 2, 3, 4], categories=CATEGORIES, rng=rng,
                                    fits=lambda names: len(names) <= 3)
    assert len(sample.positive_ids) == 3 and len(sample.dropped_ids) == 1
    assert set(sample.positive_ids) | set(sample.dropped_ids) == {1, 2, 3, 4}
    assert len(sample.names) == 3  # no room left for negatives


def test_bad_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="empty category list"):
        sample_category_prompt(positive_ids=[], categories=[], rng=rng, fits=lambda n: True)
    with pytest.raises(ValueError, match=r"positive category ids \[42\]"):
        sample_category_prompt(positive_ids=[42], categories=CATEGORIES, rng=rng, fits=lambda n: True)
    with pytest.raises(ValueError, match="no category name fits"):
        sample_category_prompt(positive_ids=[1], categories=CATEGORIES, rng=rng, fits=lambda n: False)


def test_real_tokenizer_budget_and_positive_map(tokenizer):
    rng = np.random.default_rng(0)
    many = [Category(k + 1, f"thing number {k}") for k in range(200)]
    fits = caption_fits(tokenizer, max_tokens=64)
    sample = sample_category_prompt(positive_ids=[3, 7], categories=many, rng=rng, fits=fits)
    caption = build_training_caption(sample, tokenizer, max_tokens=64)
    assert {3, 7} <= set(sample.category_ids) and caption.names == tuple(sample.names)
    assert int(caption.attention_mask.sum()) <= 64
    target = Target(np.zeros((3, 4), np.float32), None, np.array([1, 2, 3]), np.array([7, 3, 7]))
    kept, labels = apply_category_prompt(target, sample)
    assert kept.ids.tolist() == [1, 2, 3]
    assert [sample.category_ids[k] for k in labels] == [7, 3, 7]
    pmap = positive_map(caption, labels)
    assert pmap.shape == (3, 64)
    for row, label in enumerate(labels):
        assert np.flatnonzero(pmap[row]).tolist() == list(caption.token_spans[label])


def test_positive_map_hand_checked(tokenizer):
    caption = build_training_caption(
        sample_category_prompt(positive_ids=[1], categories=CATEGORIES[:1], rng=np.random.default_rng(0),
                               fits=lambda n: len(n) == 1),
        tokenizer, max_tokens=8)
    assert caption.caption == "circle"
    assert positive_map(caption, np.array([0])).tolist() == [[0, 1, 0, 0, 0, 0, 0, 0]]
    with pytest.raises(ValueError):
        positive_map(caption, np.array([1]))


def test_expression_and_template_sampling():
    rng = np.random.default_rng(0)
    assert sample_expression(["The RED circle, left!"], rng) == "the red circle left"
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0, 0] = masks[1, 3, 3] = True
    frame0 = Target(np.array([[0, 0, 1, 1], [3, 3, 4, 4]], np.float32), masks, np.array([5, 6]), np.array([1, 1]))
    frame1 = Target(np.array([[1, 1, 2, 2]], np.float32), None, np.array([6]), np.array([1]))
    template = sample_template([frame0, frame1], rng=rng)
    assert template.instance_id == 6 and template.box_xyxy_px.tolist() == [3, 3, 4, 4]
    assert template.mask[3, 3] and template.mask.sum() == 1
    assert [t.ids.tolist() for t in keep_instance([frame0, frame1], 6)] == [[6], [6]]
    assert sample_template([frame0, Target.empty(4, 4)], rng=rng) is None
