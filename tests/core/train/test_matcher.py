"""Matchers on constructed cases: empty images, dynamic k, conflicts, centre prior, one-to-one Hungarian."""

from __future__ import annotations

import itertools
import math
import time

import pytest
import torch

from uninext_core.train.matcher import (
    CENTER_RADIUS,
    DynamicKMatcher,
    HungarianMatcher,
    best_query_per_target,
    center_prior,
    dynamic_k_assignment,
    focal_class_cost,
    ota_cost,
)


def _focal_cost_by_hand(logit: float) -> float:
    p = 1.0 / (1.0 + math.exp(-logit))
    pos = 0.25 * (1 - p) ** 2 * -math.log(p + 1e-8)
    neg = 0.75 * p**2 * -math.log(1 - p + 1e-8)
    return pos - neg


def _one_token_map(n: int) -> torch.Tensor:
    return torch.ones(n, 1, dtype=torch.bool)


def test_image_without_targets_leaves_everything_unmatched() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 10, 3)
    boxes = torch.rand(2, 10, 4) * 0.5 + 0.25
    targets = [torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.1], [0.7, 0.6, 0.2, 0.3]]), torch.zeros(0, 4)]
    maps = [torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=torch.bool), torch.zeros(0, 3, dtype=torch.bool)]
    for matcher in (DynamicKMatcher(), HungarianMatcher()):
        matches = matcher(logits, boxes, targets, maps)
        assert matches[1].query_idx.numel() == 0 and matches[1].target_idx.numel() == 0
        assert matches[1].query_idx.dtype == torch.int64
        assert set(matches[0].target_idx.tolist()) == {0, 1, 2}
    hungarian = HungarianMatcher()(logits, boxes, targets, maps)
    assert [len(m.query_idx) for m in hungarian] == [3, 0]


def test_focal_class_cost_is_the_mean_over_name_tokens() -> None:
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    positive_map = torch.tensor([[True, True, False], [False, False, True]])
    cost = focal_class_cost(logits, positive_map)
    expected = [(_focal_cost_by_hand(0.0) + _focal_cost_by_hand(2.0)) / 2, _focal_cost_by_hand(-1.0)]
    torch.testing.assert_close(cost, torch.tensor([expected]), rtol=0, atol=1e-6)


def test_gt_with_high_iou_queries_gets_floor_of_top10_iou_sum() -> None:
    gt = torch.tensor([[0.5, 0.5, 0.4, 0.4]])
    exact = [[0.5, 0.5, 0.4, 0.4]] * 5  # IoU 1
    half = [[0.5, 0.5, 0.4, 0.2]] * 3  # inside the GT with half its area: IoU 0.5
    far = [[0.05 + 0.01 * i, 0.05, 0.02, 0.02] for i in range(12)]  # IoU 0
    boxes = torch.tensor(exact + half + far)
    logits = torch.zeros(20, 1)
    logits[5] = 2.0  # the cheapest of the IoU-0.5 queries
    logits[6:8] = -2.0
    # top-10 IoUs: 5 x 1 + 3 x 0.5 + 2 x 0 = 6.5 -> k = 6
    cost = ota_cost(logits, boxes, gt, _one_token_map(1))
    torch.testing.assert_close(cost.iou[:8, 0], torch.tensor([1.0] * 5 + [0.5] * 3))
    assigned = dynamic_k_assignment(cost.cost, cost.iou)
    assert torch.nonzero(assigned[:, 0]).flatten().tolist() == [0, 1, 2, 3, 4, 5]
    match = DynamicKMatcher()(logits[None], boxes[None], [gt], [_one_token_map(1)])[0]
    assert match.query_idx.tolist() == [0, 1, 2, 3, 4, 5]
    assert match.target_idx.tolist() == [0] * 6


def test_low_iou_gt_still_gets_one_query() -> None:
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    boxes = torch.tensor([[0.5, 0.5, 0.02, 0.02], [0.52, 0.5, 0.03, 0.03], [0.1, 0.1, 0.05, 0.05]])
    cost = ota_cost(torch.zeros(3, 1), boxes, gt, _one_token_map(1))
    assert float(cost.iou.sum()) < 1.0  # k = max(1, 0) = 1
    assigned = dynamic_k_assignment(cost.cost, cost.iou)
    assert assigned.sum().item() == 1
    assert assigned[:, 0].nonzero().item() == int(cost.cost[:, 0].argmin())


@pytest.mark.parametrize("swap", [False, True])
def test_conflict_goes_to_the_cheaper_gt(swap: bool) -> None:
    gt_a = [0.47, 0.5, 0.3, 0.3]
    gt_b = [0.53, 0.5, 0.3, 0.3]
    boxes = torch.tensor([[0.5, 0.5, 0.3, 0.3],  # q0: IoU 0.818 with both GTs, centre in both centre regions
                          [0.6, 0.5, 0.2, 0.2],  # q1: B's second choice
                          [0.1, 0.1, 0.05, 0.05], [0.9, 0.9, 0.05, 0.05]])
    logits = torch.zeros(4, 2)
    logits[0, 0] = 3.0  # q0 scores A's token highly -> q0 is cheaper for A
    targets = torch.tensor([gt_b, gt_a] if swap else [gt_a, gt_b])
    maps = torch.tensor([[False, True], [True, False]] if swap else [[True, False], [False, True]])
    index_a, index_b = (1, 0) if swap else (0, 1)
    cost = ota_cost(logits, boxes, targets, maps)
    # both GTs have k = 1 and both rank q0 first
    assert torch.equal(cost.iou.topk(4, dim=0).values.sum(0).int(), torch.tensor([1, 1]))
    assert cost.cost[:, index_a].argmin().item() == 0 and cost.cost[:, index_b].argmin().item() == 0
    assert cost.cost[0, index_a] < cost.cost[0, index_b]
    match = DynamicKMatcher()(logits[None], boxes[None], [targets], [maps])[0]
    pairs = dict(zip(match.query_idx.tolist(), match.target_idx.tolist(), strict=True))
    assert pairs == {0: index_a, 1: index_b}


def test_center_prior_and_cost_penalties_by_hand() -> None:
    gt = torch.tensor([[0.5, 0.5, 0.6, 0.6]])  # box x, y in (0.2, 0.8); centre region 0.5 ± 0.078125
    boxes = torch.tensor([[0.5, 0.5, 0.6, 0.6],  # centre in box and centre region
                          [0.7, 0.5, 0.6, 0.6],  # in box only -> +100
                          [0.9, 0.5, 0.6, 0.6],  # in neither -> +100 + 10000
                          [0.5 + CENTER_RADIUS, 0.5, 0.6, 0.6]])  # on the region's edge: strict -> outside
    candidate, inside_both = center_prior(boxes, gt)
    assert candidate.tolist() == [True, True, False, True]
    assert inside_both[:, 0].tolist() == [True, False, False, False]

    cost = ota_cost(torch.zeros(4, 1), boxes, gt, _one_token_map(1))
    c0 = _focal_cost_by_hand(0.0)
    # GIoU by hand: q0 identical = 1; q1 (0.4..1.0) vs (0.2..0.8) in x, same y: inter 0.4*0.6, union 0.48,
    # hull 0.8*0.6 -> 0.5 - 0 = 0.5; q2 (0.6..1.2): inter 0.2*0.6=0.12, union 0.6, hull 0.6 -> 0.2
    expected = torch.tensor([c0 - 3 * 1.0, c0 - 3 * 0.5 + 100, c0 - 3 * 0.2 + 100 + 10000])
    torch.testing.assert_close(cost.cost[:3, 0], expected, rtol=0, atol=1e-4)


def test_center_prior_excludes_far_queries_even_with_high_scores() -> None:
    gt = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    boxes = torch.tensor([[0.7, 0.5, 0.2, 0.2],  # overlaps a little but its centre is outside box and region
                          [0.45, 0.5, 0.05, 0.05],  # small box, centre inside both
                          [0.2, 0.2, 0.4, 0.4]])
    logits = torch.tensor([[8.0], [-3.0], [8.0]])
    match = DynamicKMatcher()(logits[None], boxes[None], [gt], [_one_token_map(1)])[0]
    assert match.query_idx.tolist() == [1]


def test_hungarian_is_one_to_one_and_optimal() -> None:
    torch.manual_seed(1)
    gts = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.36, 0.3, 0.2, 0.2], [0.7, 0.7, 0.3, 0.2]])
    boxes = torch.tensor([[0.33, 0.3, 0.2, 0.2],  # the individually cheapest query of GT 0 *and* GT 1
                          [0.25, 0.3, 0.2, 0.2], [0.45, 0.3, 0.2, 0.2], [0.7, 0.68, 0.3, 0.2], [0.1, 0.9, 0.1, 0.1]])
    logits = torch.randn(5, 1)
    matcher = HungarianMatcher()
    cost = matcher.cost(logits, boxes, gts, _one_token_map(3))
    assert cost[:, 0].argmin() == 0 and cost[:, 1].argmin() == 0
    match = matcher(logits[None], boxes[None], [gts], [_one_token_map(3)])[0]
    assert len(set(match.query_idx.tolist())) == 3 and sorted(match.target_idx.tolist()) == [0, 1, 2]
    total = cost[match.query_idx, match.target_idx].sum()
    brute = min(sum(float(cost[q, n]) for n, q in enumerate(perm)) for perm in itertools.permutations(range(5), 3))
    assert math.isclose(float(total), brute, rel_tol=0, abs_tol=1e-5)


def test_hungarian_with_more_targets_than_queries_matches_each_query_once() -> None:
    gts = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]])
    boxes = torch.tensor([[[0.3, 0.3, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2]]])
    match = HungarianMatcher()(torch.zeros(1, 2, 1), boxes, [gts], [_one_token_map(3)])[0]
    assert match.query_idx.tolist() == [0, 1] and match.target_idx.tolist() == [0, 1]


def test_dynamic_k_invariants_and_speed_at_training_size() -> None:
    generator = torch.Generator().manual_seed(0)
    Q, N, T = 100, 20, 16
    logits = torch.randn(2, Q, T, generator=generator)
    centres = torch.rand(2, Q, 2, generator=generator) * 0.8 + 0.1
    boxes = torch.cat([centres, torch.rand(2, Q, 2, generator=generator) * 0.2 + 0.02], dim=-1)
    gt_centres = torch.rand(N, 2, generator=generator) * 0.8 + 0.1
    targets = [torch.cat([gt_centres, torch.rand(N, 2, generator=generator) * 0.2 + 0.05], dim=-1)] * 2
    maps = [torch.nn.functional.one_hot(torch.arange(N) % T, T).bool()] * 2
    matcher = DynamicKMatcher()
    matcher(logits, boxes, targets, maps)  # warm-up
    start = time.perf_counter()
    for _ in range(5):
        matches = matcher(logits, boxes, targets, maps)
    per_call_ms = (time.perf_counter() - start) / 5 * 1000
    for match in matches:
        assert len(set(match.query_idx.tolist())) == len(match.query_idx)  # a query has one GT at most
        assert set(match.target_idx.tolist()) == set(range(N))  # every GT has a query
    assert per_call_ms < 200, f"dynamic-k matching of 2 images took {per_call_ms:.1f} ms"


def test_best_query_per_target_is_the_cheapest_assigned_query() -> None:
    cost = torch.tensor([[1.0, 0.0], [0.5, 5.0], [2.0, 3.0]])
    assigned = torch.tensor([[True, False], [False, False], [False, True]])
    assert best_query_per_target(cost, assigned).tolist() == [0, 2]


def test_empty_positive_map_row_is_rejected() -> None:
    with pytest.raises(ValueError, match="no positive prompt token"):
        ota_cost(torch.zeros(3, 2), torch.rand(3, 4), torch.rand(1, 4), torch.zeros(1, 2, dtype=torch.bool))
