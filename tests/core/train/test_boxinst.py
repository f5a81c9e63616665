"""BoxInst projection and pairwise terms, LAB colour similarity and targets, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from uninext_core.train.boxinst import (
    BoxInstLoss,
    box_bitmasks,
    boxinst_targets,
    color_similarity,
    projection_loss,
    rgb_to_lab,
    unfold_neighbours,
)


def _lab_by_hand(r: int, g: int, b: int) -> tuple[float, float, float]:
    def linear(c: int) -> float:
        c = c / 255
        return ((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92

    rl, gl, bl = linear(r), linear(g), linear(b)
    x = (0.412453 * rl + 0.357580 * gl + 0.180423 * bl) / 0.95047
    y = 0.212671 * rl + 0.715160 * gl + 0.072169 * bl
    z = (0.019334 * rl + 0.119193 * gl + 0.950227 * bl) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def test_rgb_to_lab_matches_reference_colours() -> None:
    colours = [(255, 255, 255), (0, 0, 0), (255, 0, 0), (0, 255, 0), (128, 128, 128), (10, 200, 90)]
    image = torch.tensor(colours, dtype=torch.float32).T.reshape(3, 1, len(colours))
    lab = rgb_to_lab(image)[:, 0].T
    expected = torch.tensor([_lab_by_hand(*c) for c in colours])
    torch.testing.assert_close(lab, expected, rtol=0, atol=1e-3)
    # published CIELAB values (D65): white (100, 0, 0), sRGB red (53.24, 80.09, 67.20)
    torch.testing.assert_close(lab[0], torch.tensor([100.0, 0.0, 0.0]), rtol=0, atol=1e-2)
    torch.testing.assert_close(lab[2], torch.tensor([53.24, 80.09, 67.20]), rtol=0, atol=1e-2)


def test_unfold_neighbours_dilation_two_order_and_zero_padding() -> None:
    x = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    nb = unfold_neighbours(x, kernel_size=3, dilation=2)
    assert nb.shape == (1, 1, 8, 5, 5)
    assert nb[0, 0, :, 2, 2].tolist() == [0, 2, 4, 10, 14, 20, 22, 24]
    assert nb[0, 0, :, 0, 0].tolist() == [0, 0, 0, 0, 2, 0, 10, 12]


def test_color_similarity_exp_of_half_lab_distance_and_padding() -> None:
    lab = torch.zeros(1, 3, 1, 3)
    lab[0, :, 0, 2] = torch.tensor([3.0, 4.0, 0.0])  # distance 5 from pixel 0
    valid = torch.tensor([[[1.0, 1.0, 1.0]]])
    sim = color_similarity(lab, valid)
    # neighbour 4 = (0, +2), neighbour 3 = (0, -2)
    assert math.isclose(sim[0, 4, 0, 0].item(), math.exp(-2.5), rel_tol=1e-6)
    assert math.isclose(sim[0, 3, 0, 2].item(), math.exp(-2.5), rel_tol=1e-6)
    assert sim[0, 0, 0, 0].item() == 0.0  # neighbour outside the image
    valid[0, 0, 2] = 0.0
    assert color_similarity(lab, valid)[0, 4, 0, 0].item() == 0.0  # neighbour on padding


def test_box_bitmasks_use_truncated_corners_inclusive() -> None:
    masks = box_bitmasks(torch.tensor([[1.7, 2.2, 3.9, 4.0]]), 6, 6)
    rows, cols = torch.nonzero(masks[0], as_tuple=True)
    assert sorted(set(rows.tolist())) == [2, 3, 4] and sorted(set(cols.tolist())) == [1, 2, 3]
    assert masks.sum().item() == 9


def test_boxinst_targets_mask_padding_and_bottom_band() -> None:
    images = torch.full((1, 3, 32, 32), 100.0)
    images[..., 24:, :] = 0.0  # padding rows
    targets = boxinst_targets(images, [torch.tensor([[4.0, 4.0, 11.0, 11.0]])], [(24, 32)], [48])
    t = targets[0]
    assert t.box_masks.shape == (1, 8, 8) and t.color_similarity.shape == (8, 8, 8)
    # stride-4 samples at 2, 6, 10: the box covers pixels 4..11 -> samples 6, 10 -> cells 1, 2
    assert torch.nonzero(t.box_masks[0].sum(1)).flatten().tolist() == [1, 2]
    # removed band: int(10 * 24 / 48) = 5 rows (19..23); valid sampled rows: 2..18 -> cells 0..4
    below = t.color_similarity[6]  # neighbour (+2 cells, same column)
    assert torch.allclose(below[:3, 2], torch.ones(3))  # cells 0..2 look at 2..4: valid, same colour
    assert below[3:, 2].abs().sum().item() == 0.0  # cells 3.. look at 5.. (removed band / padding)


def test_projection_loss_by_hand() -> None:
    probs = torch.tensor([[[0.5, 0.25], [0.75, 0.0]]])
    box = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    # max over y: probs (.75, .25) vs box (1, 0); max over x: probs (.5, .75) vs box (1, 1)
    along_y = 1 - 2 * 0.75 / (0.75**2 + 0.25**2 + 1 + 1e-5)
    along_x = 1 - 2 * (0.5 + 0.75) / (0.5**2 + 0.75**2 + 2 + 1e-5)
    assert math.isclose(projection_loss(probs, box).item(), along_x + along_y, rel_tol=1e-6)


def _pairwise_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits = torch.tensor([[[0.0, 5.0, math.log(3.0)]]], requires_grad=True)  # p0 = .5, p2 = .75
    box = torch.ones(1, 1, 3)
    sim = torch.zeros(1, 8, 1, 3)
    sim[0, 4, 0, 0] = 0.9  # pixel 0 -> pixel 2
    sim[0, 3, 0, 2] = 0.3  # pixel 2 -> pixel 0 (at the threshold: kept)
    sim[0, 4, 0, 1] = 0.29  # pixel 1 -> outside the image, below the threshold anyway
    return logits, box, sim


def test_pairwise_loss_by_hand_with_warmup() -> None:
    logits, box, sim = _pairwise_case()
    loss_fn = BoxInstLoss(warmup_iters=2)
    # P(same) for pixels 0 and 2 = .5 * .75 + .5 * .25 = .5 -> -log = ln2 for both kept pairs; mean ln2
    first = loss_fn(logits, box, sim)
    assert math.isclose(first.pairwise.item(), 0.5 * math.log(2.0), rel_tol=1e-6)  # warm-up 1/2
    second = loss_fn(logits, box, sim)
    third = loss_fn(logits, box, sim)
    assert math.isclose(second.pairwise.item(), math.log(2.0), rel_tol=1e-6)
    assert math.isclose(third.pairwise.item(), math.log(2.0), rel_tol=1e-6)
    assert loss_fn.calls.item() == 3
    second.pairwise.backward()
    assert torch.isfinite(logits.grad).all()


def test_pairwise_ignores_pixels_outside_the_box() -> None:
    logits, box, sim = _pairwise_case()
    box[0, 0, 2] = 0.0  # pixel 2 outside the box: only the pair starting at pixel 0 is kept
    loss = BoxInstLoss(warmup_iters=1)(logits, box, sim)
    assert math.isclose(loss.pairwise.item(), math.log(2.0), rel_tol=1e-6)


def test_boxinst_empty_and_instance_cap() -> None:
    loss_fn = BoxInstLoss(max_instances=2, warmup_iters=1)
    empty = loss_fn(torch.zeros(0, 4, 4, requires_grad=True), torch.zeros(0, 4, 4), torch.zeros(0, 8, 4, 4))
    assert empty.projection.item() == 0.0 and empty.pairwise.item() == 0.0
    logits = torch.tensor([[[0.0, 1.0, 2.0]], [[-1.0, 0.5, 3.0]], [[2.0, -2.0, 0.0]]])
    box = torch.ones(3, 1, 3)
    sim = torch.ones(3, 8, 1, 3)
    capped = loss_fn(logits, box, sim, generator=torch.Generator().manual_seed(0)).projection.item()
    uncapped = BoxInstLoss(warmup_iters=1)
    per_pair = [uncapped(logits[list(p)], box[:2], sim[:2]).projection.item() for p in ((0, 1), (0, 2), (1, 2))]
    everything = uncapped(logits, box, sim).projection.item()
    assert any(math.isclose(capped, value, rel_tol=1e-6) for value in per_pair)
    assert not math.isclose(capped, everything, rel_tol=1e-6)


def test_boxinst_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="box masks"):
        BoxInstLoss()(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5), torch.zeros(2, 8, 4, 4))
