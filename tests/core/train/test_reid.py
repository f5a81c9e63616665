"""Contrastive re-ID loss, its auxiliary cosine term and the positive / negative selection."""

from __future__ import annotations

import math

import torch

from uninext_core.train.matcher import DynamicKMatcher, dynamic_k_assignment
from uninext_core.train.reid import (
    ReidSamples,
    contrastive_reid_loss,
    cosine_aux_loss,
    reid_losses,
    sample_aux_negatives,
    select_reid_samples,
)


def _ref_embeddings() -> torch.Tensor:
    # e·k with k = (1, 0): q0 -> 2, q1 -> 0, q2 -> 1, q3 -> 3
    return torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 3.0]])


def test_contrastive_loss_by_hand() -> None:
    key = torch.tensor([[1.0, 0.0]], requires_grad=True)
    refs = _ref_embeddings()[None].clone().requires_grad_(True)
    positive = torch.tensor([[True, False, False, False]])
    negative = torch.tensor([[False, True, True, False]])
    # log(1 + exp(0 - 2) + exp(1 - 2))
    expected = math.log(1 + math.exp(-2) + math.exp(-1))
    loss = contrastive_reid_loss(key, refs, positive, negative)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    loss.backward()
    assert torch.isfinite(key.grad).all() and torch.isfinite(refs.grad).all()


def test_contrastive_loss_with_two_positives_and_an_instance_without_positives() -> None:
    keys = torch.tensor([[1.0, 0.0], [1.0, 0.0]], requires_grad=True)
    refs = _ref_embeddings()[None].expand(2, 4, 2)
    positive = torch.tensor([[True, False, False, True], [False, False, False, False]])
    negative = torch.tensor([[False, True, True, False], [True, True, True, True]])
    # instance 0: pairs (pos s=2, 3) x (neg s=0, 1): e^-2 + e^-1 + e^-3 + e^-2 ; instance 1 has no positive -> 0
    first = math.log(1 + 2 * math.exp(-2) + math.exp(-1) + math.exp(-3))
    loss = contrastive_reid_loss(keys, refs, positive, negative)
    assert math.isclose(loss.item(), first / 2, rel_tol=1e-6)
    loss.backward()
    assert torch.isfinite(keys.grad).all()


def test_cosine_aux_loss_by_hand() -> None:
    key = torch.tensor([[1.0, 0.0]])
    refs = _ref_embeddings()[None]
    positive = torch.tensor([[True, False, False, False]])
    negative = torch.tensor([[False, True, True, False]])
    # cos: q0 1 (label 1) -> 0 ; q1 0 (label 0) -> 0 ; q2 1 (label 0) -> 1 ; mean over 3 samples
    assert math.isclose(cosine_aux_loss(key, refs, positive, negative).item(), 1 / 3, rel_tol=1e-6)


def test_aux_negative_sampling_counts() -> None:
    positive = torch.zeros(3, 40, dtype=torch.bool)
    negative = torch.zeros(3, 40, dtype=torch.bool)
    positive[0, :1] = True
    negative[0, 1:31] = True  # 1 positive, 30 negatives -> 10
    negative[1, :30] = True  # no positive -> 10
    positive[2, :3] = True
    negative[2, 3:23] = True  # 3 positives, 20 negatives <= 30 -> all 20
    sampled = sample_aux_negatives(positive, negative, generator=torch.Generator().manual_seed(0))
    assert sampled.sum(1).tolist() == [10, 10, 20]
    assert not (sampled & ~negative).any()


def test_select_reid_samples_uses_dynamic_k_sets_and_skips_invalid_instances() -> None:
    gts = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]])
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.31, 0.3, 0.2, 0.2], [0.32, 0.31, 0.2, 0.2],
                          [0.7, 0.7, 0.2, 0.2], [0.35, 0.3, 0.25, 0.2]]
                         + [[0.05 + 0.03 * i, 0.95, 0.02, 0.02] for i in range(15)])
    logits = torch.zeros(1, 20, 1)
    maps = [torch.ones(2, 1, dtype=torch.bool)]
    matcher = DynamicKMatcher()
    samples = select_reid_samples(matcher, key_query_idx=[torch.tensor([7, 9])], ref_logits=logits,
                                  ref_boxes_cxcywh=boxes[None], ref_target_boxes_cxcywh=[gts],
                                  ref_positive_maps=maps, valid=[torch.tensor([True, False])])
    assert samples.image_idx.tolist() == [0] and samples.key_query_idx.tolist() == [7]
    cost = matcher.cost(logits[0], boxes, gts[:1], maps[0][:1])
    expected_pos = dynamic_k_assignment(cost.cost, cost.iou, num_candidates=10)[:, 0]
    expected_neg = ~dynamic_k_assignment(cost.cost, cost.iou, num_candidates=100)[:, 0]
    assert torch.equal(samples.positive[0], expected_pos) and torch.equal(samples.negative[0], expected_neg)
    assert samples.positive[0, :3].all() and not samples.positive[0, 3]  # the other instance's box is no positive
    assert samples.negative[0, 3] and not (samples.positive & samples.negative).any()


def test_reid_losses_zero_without_valid_instances() -> None:
    embeddings = torch.randn(2, 5, 4, requires_grad=True)
    empty = ReidSamples(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                        torch.zeros(0, 5, dtype=torch.bool), torch.zeros(0, 5, dtype=torch.bool))
    losses = reid_losses(embeddings, embeddings, empty)
    assert losses.contrastive.item() == 0.0 and losses.aux.item() == 0.0
    (losses.contrastive + losses.aux).backward()
    assert torch.equal(embeddings.grad, torch.zeros_like(embeddings))


def test_reid_losses_gather_key_embeddings_by_key_query() -> None:
    key_frame = torch.zeros(1, 4, 2)
    key_frame[0, 2] = torch.tensor([1.0, 0.0])  # instance key at query 2
    samples = ReidSamples(torch.tensor([0]), torch.tensor([2]), torch.tensor([[True, False, False, False]]),
                          torch.tensor([[False, True, True, False]]))
    losses = reid_losses(key_frame, _ref_embeddings()[None], samples)
    assert math.isclose(losses.contrastive.item(), math.log(1 + math.exp(-2) + math.exp(-1)), rel_tol=1e-6)
    assert math.isclose(losses.aux.item(), 1 / 3, rel_tol=1e-6)
