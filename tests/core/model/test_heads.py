"""Retrieval head (VLAlign), objectness, pooled prompt, MLP and re-ID head, against direct formulas."""

from __future__ import annotations

import math

import pytest
import torch

from uninext_core.model.decoder import DeformableDecoderLayer
from uninext_core.model.mlp import MLP
from uninext_core.model.reid_head import ReidHead
from uninext_core.model.retrieval import StillClassifier, VLAlign, pool_prompt, prior_bias


def randomised_vl_align(seed: int) -> VLAlign:
    torch.manual_seed(seed)
    head = VLAlign(d_model=4, text_dim=6).double()
    with torch.no_grad():
        head.log_scale.fill_(0.3)
        head.bias_lang.normal_()
        head.bias0.fill_(-1.5)
    return head


def test_prior_bias_is_minus_log_99():
    assert prior_bias(0.01) == pytest.approx(-math.log(99))
    head = VLAlign(d_model=4, text_dim=6)
    assert head.bias0.item() == pytest.approx(-math.log(99), rel=1e-6)
    assert head.log_scale.item() == 0.0 and torch.count_nonzero(head.bias_lang) == 0
    assert StillClassifier(d_model=4).body.bias.item() == pytest.approx(-math.log(99), rel=1e-6)


def test_token_logits_equal_direct_formula():
    head = randomised_vl_align(0)
    g = torch.Generator().manual_seed(1)
    queries = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    tokens = torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    logits = head(queries, tokens)
    assert logits.shape == (2, 3, 5)
    W, b = head.dot_product_projection_text.weight, head.dot_product_projection_text.bias
    for i in range(2):
        for q in range(3):
            for t in range(5):
                t_hat = tokens[i, t] / torch.linalg.vector_norm(tokens[i, t])
                key = W @ (t_hat / 2) + b
                bias = t_hat @ head.bias_lang + head.bias0[0]
                expected = queries[i, q] @ key / math.exp(0.3) + bias
                torch.testing.assert_close(logits[i, q, t], expected, rtol=1e-12, atol=1e-12)


def test_logits_are_clamped():
    head = randomised_vl_align(2)
    with torch.no_grad():
        head.dot_product_projection_text.weight.fill_(1.0)
    logits = head(torch.full((1, 2, 4), 1e6, dtype=torch.float64), torch.ones(1, 1, 6, dtype=torch.float64))
    torch.testing.assert_close(logits, torch.full((1, 2, 1), 50000.0, dtype=torch.float64))


def test_pooled_prompt_averages_valid_tokens_and_gives_one_logit():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    pooled = pool_prompt(hidden, mask)
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 3.0]]))
    torch.testing.assert_close(pool_prompt(hidden, torch.zeros(1, 3, dtype=torch.bool)), torch.zeros(1, 2))
    head = VLAlign(d_model=3, text_dim=2)
    queries = torch.randn(1, 4, 3)
    single = head(queries, pooled[:, None, :])
    assert single.shape == (1, 4, 1)
    # The pooled logit is the token logit of a one-token prompt holding the average.
    torch.testing.assert_close(single, head(queries, torch.tensor([[[2.0, 3.0]]])))


def test_mlp_applies_relu_between_layers_only():
    mlp = MLP(input_dim=2, hidden_dim=2, output_dim=1, num_layers=2)
    with torch.no_grad():
        mlp.layers[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
        mlp.layers[0].bias.zero_()
        mlp.layers[1].weight.copy_(torch.tensor([[1.0, 1.0]]))
        mlp.layers[1].bias.fill_(-10.0)
    # hidden = relu([3, -4]) = [3, 0]; output = 3 - 10 (no ReLU on the last layer).
    torch.testing.assert_close(mlp(torch.tensor([[3.0, 4.0]])), torch.tensor([[-7.0]]))
    with pytest.raises(ValueError, match="num_layers"):
        MLP(input_dim=1, hidden_dim=1, output_dim=1, num_layers=0)


def test_reid_head_is_detached_and_keeps_query_count():
    torch.manual_seed(3)
    layer = DeformableDecoderLayer(d_model=16, dim_feedforward=32, dropout=0.0, n_levels=2, n_heads=2, n_points=2)
    head = ReidHead(layer=layer, num_layers=2, d_model=16, embed_dim=12)
    shapes = [(4, 4), (2, 2)]
    hidden = torch.randn(2, 5, 16, requires_grad=True)
    boxes = torch.rand(2, 5, 4, requires_grad=True)
    memory = torch.randn(2, 20, 16, requires_grad=True)
    emb = head(hidden, boxes, memory, shapes, torch.ones(2, 2, 2), torch.zeros(2, 20, dtype=torch.bool))
    assert emb.shape == (2, 5, 12)
    emb.sum().backward()
    assert hidden.grad is None and boxes.grad is None and memory.grad is None
    assert all(p.grad is not None for p in head.parameters())
    assert head.layers[0] is not head.layers[1]
