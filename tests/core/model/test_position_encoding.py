"""Sine embeddings against the direct formula, element by element."""

from __future__ import annotations

import math

import pytest
import torch

from uninext_core.model.position_encoding import sine_box_embedding, sine_position_embedding_2d


def channel(value: float, i: int, num_pos_feats: int, temperature: float = 10000.0) -> float:
    angle = value / temperature ** (2 * (i // 2) / num_pos_feats)
    return math.sin(angle) if i % 2 == 0 else math.cos(angle)


def test_2d_embedding_with_padding_equals_direct_formula():
    F_, H, W = 6, 3, 4
    padding = torch.zeros(2, H, W, dtype=torch.bool)
    padding[1, 2:, :] = True  # image 1: 2 valid rows, 3 valid columns
    padding[1, :, 3:] = True
    valid_hw = [(3, 4), (2, 3)]
    pos = sine_position_embedding_2d(padding, num_pos_feats=F_)
    assert pos.shape == (2, 2 * F_, H, W)
    for b, (vh, vw) in enumerate(valid_hw):
        for y in range(vh):
            for x in range(vw):
                y_embed = (y + 1 - 0.5) / (vh + 1e-6) * 2 * math.pi
                x_embed = (x + 1 - 0.5) / (vw + 1e-6) * 2 * math.pi
                expected = [channel(y_embed, i, F_) for i in range(F_)] + [channel(x_embed, i, F_) for i in range(F_)]
                torch.testing.assert_close(pos[b, :, y, x], torch.tensor(expected, dtype=torch.float32),
                                           rtol=1e-5, atol=1e-5)


def test_2d_embedding_of_padding_cells_repeats_the_last_valid_cumsum():
    # Padded rows keep the cumulative count of their column (official behaviour, cumsum over valid cells).
    padding = torch.zeros(1, 4, 2, dtype=torch.bool)
    padding[0, 2:] = True
    pos = sine_position_embedding_2d(padding, num_pos_feats=4)
    torch.testing.assert_close(pos[0, :4, 1], pos[0, :4, 3])


def test_box_embedding_equals_direct_formula_with_exchanged_xy():
    F_ = 8
    boxes = torch.tensor([[[0.1, 0.7, 0.3, 0.05]], [[0.9, 0.2, 0.5, 1.0]]])
    emb = sine_box_embedding(boxes, num_pos_feats=F_)
    assert emb.shape == (2, 1, 4 * F_)
    for b in range(2):
        x, y, w, h = boxes[b, 0].tolist()
        expected = []
        for coord in (y, x, w, h):
            expected += [channel(coord * 2 * math.pi, i, F_) for i in range(F_)]
        torch.testing.assert_close(emb[b, 0], torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_box_embedding_of_points_and_without_exchange():
    points = torch.tensor([[0.25, 0.5]])
    emb = sine_box_embedding(points, num_pos_feats=4, exchange_xy=False)
    expected = [channel(0.25 * 2 * math.pi, i, 4) for i in range(4)] + [channel(0.5 * 2 * math.pi, i, 4)
                                                                        for i in range(4)]
    torch.testing.assert_close(emb[0], torch.tensor(expected), rtol=1e-6, atol=1e-6)


def test_odd_feature_count_is_rejected():
    with pytest.raises(ValueError, match="positive even"):
        sine_box_embedding(torch.zeros(1, 4), num_pos_feats=3)
    with pytest.raises(ValueError, match="positive even"):
        sine_position_embedding_2d(torch.zeros(1, 2, 2, dtype=torch.bool), num_pos_feats=0)
