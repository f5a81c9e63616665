"""Loss terms against hand-computed values on 2-4 element cases; empty targets give zero without NaN."""

from __future__ import annotations

import math

import pytest
import torch

from uninext_core.train.losses import (
    box_losses,
    classification_loss,
    downsample_gt_masks,
    gather_matches,
    iou_branch_loss,
    mask_losses,
    token_sigmoid_focal_loss,
    token_targets,
)
from uninext_core.train.matcher import Match

LN2 = math.log(2.0)


def _match(queries: list[int], targets: list[int]) -> Match:
    return Match(torch.tensor(queries, dtype=torch.int64), torch.tensor(targets, dtype=torch.int64))


def test_gather_matches_offsets_targets_per_image() -> None:
    index = gather_matches([_match([3, 5], [1, 0]), _match([], []), _match([0], [1])], [2, 4, 2])
    assert index.batch_idx.tolist() == [0, 0, 2]
    assert index.query_idx.tolist() == [3, 5, 0]
    assert index.target_idx.tolist() == [1, 0, 1]
    assert index.flat_target_idx.tolist() == [1, 0, 7]  # image 2 starts after 2 + 4 targets


def test_token_targets_copy_the_name_tokens_of_the_matched_gt() -> None:
    maps = [torch.tensor([[True, False, False], [False, True, True]])]
    index = gather_matches([_match([2, 0], [1, 0])], [2])
    target = token_targets(torch.Size([1, 3, 3]), index, maps)
    assert target[0].tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]


def test_token_focal_loss_by_hand_ignores_padded_tokens() -> None:
    ln3 = math.log(3.0)
    # probabilities: 0.5, 0.75 | 0.25, 0.5 ; third token is padding (its logits are +-inf and must not matter)
    logits = torch.tensor([[[0.0, ln3, float("inf")], [-ln3, 0.0, float("-inf")]]], requires_grad=True)
    targets = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]])
    token_mask = torch.tensor([[True, True, False]])
    # alpha_t (1 - p_t)^2 * CE per valid entry:
    #   q0t0 target 1, p .5 : 0.25 * 0.25   * ln2
    #   q0t1 target 0, p .75: 0.75 * 0.5625 * ln4
    #   q1t0 target 0, p .25: 0.75 * 0.0625 * ln(4/3)
    #   q1t1 target 0, p .5 : 0.75 * 0.25   * ln2
    expected = 0.0625 * LN2 + 0.421875 * 2 * LN2 + 0.046875 * math.log(4 / 3) + 0.1875 * LN2
    loss = token_sigmoid_focal_loss(logits, targets, token_mask, num_matches=1.0)
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, :, 2].abs().sum() == 0
    halved = token_sigmoid_focal_loss(logits, targets, token_mask, num_matches=2.0)
    assert math.isclose(halved.item(), expected / 2, rel_tol=1e-6)


def test_classification_loss_normalises_by_matched_queries() -> None:
    # pooled prompt (T = 1): q0 matched (target 1), q1 unmatched (target 0); logits 0 and 0 -> p = 0.5
    logits = torch.zeros(1, 2, 1)
    loss = classification_loss(logits, gather_matches([_match([0], [0])], [1]), [torch.ones(1, 1, dtype=torch.bool)],
                               None)
    assert math.isclose(loss.item(), (0.25 * 0.25 * LN2 + 0.75 * 0.25 * LN2) / 1, rel_tol=1e-6)


def test_classification_loss_without_matches_is_zero_with_graph() -> None:
    logits = torch.randn(2, 4, 3, requires_grad=True)
    loss = classification_loss(logits, gather_matches([_match([], []), _match([], [])], [0, 0]),
                               [torch.zeros(0, 3, dtype=torch.bool)] * 2, torch.ones(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_denoising_classification_uses_fixed_positive_queries() -> None:
    # one GT, two DN groups laid out [pos, neg | pos, neg]; positives 0 and 2 target the GT's single token
    logits = torch.tensor([[[0.0], [0.0], [math.log(3.0)], [-math.log(3.0)]]])
    dn_match = _match([0, 2], [0, 0])
    loss = classification_loss(logits, gather_matches([dn_match], [1]), [torch.ones(1, 1, dtype=torch.bool)], None)
    # q0 pos p .5: .0625 ln2; q1 neg p .5: .1875 ln2; q2 pos p .75: .25*.0625*ln(4/3); q3 neg p .25: .75*.0625*ln(4/3)
    expected = (0.0625 * LN2 + 0.1875 * LN2 + 0.015625 * math.log(4 / 3) + 0.046875 * math.log(4 / 3)) / 2
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)


def test_box_losses_by_hand() -> None:
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2]], requires_grad=True)
    target = torch.tensor([[0.55, 0.5, 0.2, 0.2], [0.8, 0.2, 0.2, 0.2]])
    # pair 0: L1 0.05; xyxy (.4,.4,.6,.6) vs (.45,.4,.65,.6): inter .03, union .05, hull .05 -> GIoU .6 -> loss .4
    # pair 1: L1 0.6; disjoint, union .08, hull (.1..0.9)x(.1..0.3) = .16 -> GIoU -.5 -> loss 1.5
    losses = box_losses(pred, target)
    assert math.isclose(losses.l1.item(), 0.65 / 2, rel_tol=1e-5)
    assert math.isclose(losses.giou.item(), 1.9 / 2, rel_tol=1e-5)
    across_processes = box_losses(pred, target, num_matches=4.0)
    assert math.isclose(across_processes.l1.item(), 0.65 / 4, rel_tol=1e-5)
    (losses.l1 + losses.giou).backward()
    assert torch.isfinite(pred.grad).all()


def test_empty_targets_give_zero_box_and_mask_losses_without_nan() -> None:
    pred = torch.zeros(0, 4, requires_grad=True)
    losses = box_losses(pred, torch.zeros(0, 4))
    masks = mask_losses(torch.zeros(0, 8, 8, requires_grad=True), torch.zeros(0, 8, 8))
    iou = iou_branch_loss(torch.zeros(0, 1, requires_grad=True), pred, torch.zeros(0, 4))
    for value in (*losses, *masks, iou):
        assert value.item() == 0.0 and not torch.isnan(value)
    (losses.l1 + losses.giou).backward()
    assert pred.grad is not None and pred.grad.numel() == 0


def test_iou_branch_bce_against_detached_iou() -> None:
    ln3 = math.log(3.0)
    pred = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2]], requires_grad=True)
    target = torch.tensor([[0.55, 0.5, 0.2, 0.2], [0.8, 0.2, 0.2, 0.2]])  # IoUs 0.6 and 0
    iou_logits = torch.tensor([[0.0], [ln3]], requires_grad=True)
    loss = iou_branch_loss(iou_logits, pred, target)
    # BCE(0; .6) = ln2 ; BCE(ln3; 0) = -ln(1 - .75) = ln4 ; mean
    assert math.isclose(loss.item(), (LN2 + 2 * LN2) / 2, rel_tol=1e-5)
    loss.backward()
    assert pred.grad is None and iou_logits.grad is not None


def test_downsample_gt_masks_takes_every_fourth_pixel_from_offset_two() -> None:
    masks = torch.zeros(1, 8, 12, dtype=torch.bool)
    masks[0, 2, 6] = True
    masks[0, 6, 10] = True
    masks[0, 3, 3] = True  # not sampled
    out = downsample_gt_masks(masks)
    assert out.shape == (1, 2, 3) and out.dtype == torch.float32
    assert out[0].tolist() == [[0, 1, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match="multiple of the stride"):
        downsample_gt_masks(torch.zeros(1, 10, 12))


def test_mask_focal_and_dice_by_hand() -> None:
    ln3 = math.log(3.0)
    logits = torch.tensor([[[0.0, ln3], [-ln3, 0.0]]], requires_grad=True)  # p = .5 .75 / .25 .5
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    losses = mask_losses(logits, target)
    focal = (0.0625 * LN2 + 0.421875 * 2 * LN2 + 0.046875 * math.log(4 / 3) + 0.1875 * LN2) / 4  # mean over pixels
    dice = 1 - (2 * 0.5 + 1) / ((0.5 + 0.75 + 0.25 + 0.5) + 1 + 1)  # 0.5
    assert math.isclose(losses.focal.item(), focal, rel_tol=1e-6)
    assert math.isclose(losses.dice.item(), dice, rel_tol=1e-6)
    two = mask_losses(logits.expand(2, 2, 2), target.expand(2, 2, 2), num_matches=1.0)
    assert math.isclose(two.dice.item(), 2 * dice, rel_tol=1e-6)  # summed over instances / num_matches


def test_iou_branch_target_is_zero_for_two_zero_area_boxes() -> None:
    point = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    loss = iou_branch_loss(torch.zeros(1), point, point)
    assert math.isclose(loss.item(), LN2, rel_tol=1e-6)  # BCE(0; 0) = ln2
