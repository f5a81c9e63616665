from __future__ import annotations

import pytest
import torch

from uninext_core.model.backbone_vit import (
    RelPosAttention,
    ViTBlock,
    ViTBody,
    decomposed_rel_pos_bias,
    resize_rel_pos_table,
    window_partition,
    window_unpartition,
)


def test_resize_rel_pos_table_linear_hand_computed():
    table = torch.tensor([[0.0], [1.0], [2.0]])
    # align_corners=False: source positions (i + 0.5) * 3/5 - 0.5 = -0.2, 0.4, 1.0, 1.6, 2.2 (clamped to [0, 2]).
    expected = torch.tensor([[0.0], [0.4], [1.0], [1.6], [2.0]])
    assert torch.allclose(resize_rel_pos_table(table, 5), expected, atol=1e-6)
    assert resize_rel_pos_table(table, 3) is table


def test_decomposed_rel_pos_bias_hand_computed_2x1_grid():
    q = torch.tensor([[[[2.0]], [[3.0]]]])  # (N=1, H=2, W=1, d=1)
    rel_h = torch.tensor([[10.0], [20.0], [30.0]])  # offsets -1, 0, +1
    rel_w = torch.tensor([[1.0]])  # offset 0
    bias = decomposed_rel_pos_bias(q, rel_h, rel_w)
    # bias[i, j] = q_i * (rel_h[i - j + 1] + rel_w[0])
    expected = torch.tensor([[[2.0 * 21, 2.0 * 11], [3.0 * 31, 3.0 * 21]]])
    assert torch.equal(bias, expected)


def test_decomposed_rel_pos_bias_matches_naive_loop():
    torch.manual_seed(0)
    n, h, w, d = 2, 3, 4, 5
    q = torch.randn(n, h, w, d, dtype=torch.float64)
    rel_h = torch.randn(2 * h - 1, d, dtype=torch.float64)
    rel_w = torch.randn(2 * w - 1, d, dtype=torch.float64)
    bias = decomposed_rel_pos_bias(q, rel_h, rel_w)
    naive = torch.zeros(n, h * w, h * w, dtype=torch.float64)
    for b in range(n):
        for qh in range(h):
            for qw in range(w):
                for kh in range(h):
                    for kw in range(w):
                        value = q[b, qh, qw] @ (rel_h[qh - kh + h - 1] + rel_w[qw - kw + w - 1])
                        naive[b, qh * w + qw, kh * w + kw] = value
    assert torch.allclose(bias, naive)


def test_rel_pos_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    attn = RelPosAttention(dim=8, num_heads=2, rel_pos_size=3).double()
    torch.nn.init.normal_(attn.rel_pos_h)
    torch.nn.init.normal_(attn.rel_pos_w)
    x = torch.randn(1, 3, 2, 8, dtype=torch.float64)
    q, k, v = attn.qkv(x).reshape(1, 6, 3, 2, 4).permute(2, 0, 3, 1, 4)[:, 0]  # each (heads, 6, 4)
    heads = []
    for head in range(2):
        logits = q[head] @ k[head].T / 2.0  # head_dim 4 -> scale 1/2
        # tables sized for 3 tokens (5 rows) are resized to 2*3-1 = 5 rows (H) and 2*2-1 = 3 rows (W).
        logits = logits + decomposed_rel_pos_bias(q[head].reshape(1, 3, 2, 4), attn.rel_pos_h, attn.rel_pos_w)[0]
        heads.append(logits.softmax(-1) @ v[head])
    expected = attn.proj(torch.cat(heads, dim=-1).reshape(1, 3, 2, 8))
    assert torch.allclose(attn(x), expected)


def test_window_partition_pads_with_zeros_and_round_trips():
    x = torch.arange(1 * 3 * 5 * 2, dtype=torch.float32).reshape(1, 3, 5, 2)
    windows = window_partition(x, 2)
    assert windows.shape == (2 * 3, 2, 2, 2)  # padded to 4 x 6 -> 2 x 3 windows
    assert torch.equal(windows[0], x[0, 0:2, 0:2])
    assert torch.equal(windows[5, 0, 0], x[0, 2, 4])
    assert torch.count_nonzero(windows[5, 1]) == 0 and torch.count_nonzero(windows[5, :, 1]) == 0
    assert torch.equal(window_unpartition(windows, batch=1, height=3, width=5), x)


def test_windowed_block_equals_global_block_when_grid_is_one_window():
    torch.manual_seed(0)
    windowed = ViTBlock(dim=16, num_heads=2, mlp_ratio=4.0, window=4, global_rel_pos_size=99, drop_path=0.0)
    global_ = ViTBlock(dim=16, num_heads=2, mlp_ratio=4.0, window=0, global_rel_pos_size=4, drop_path=0.0)
    torch.nn.init.normal_(windowed.attn.rel_pos_h)
    global_.load_state_dict(windowed.state_dict())
    x = torch.randn(2, 4, 4, 16)
    assert torch.allclose(windowed(x), global_(x), atol=1e-5)


def test_windowed_block_keeps_windows_independent():
    torch.manual_seed(0)
    block = ViTBlock(dim=16, num_heads=2, mlp_ratio=4.0, window=4, global_rel_pos_size=8, drop_path=0.0).eval()
    x = torch.randn(1, 6, 10, 16)
    y = x.clone()
    y[0, 5, 9] += 10.0  # a token in the last (padded) window
    out_x, out_y = block(x), block(y)
    assert torch.equal(out_x[0, :4, :8], out_y[0, :4, :8])
    assert not torch.allclose(out_x[0, 4:, 8:], out_y[0, 4:, 8:])


def test_abs_pos_embed_drops_class_token_and_resizes():
    torch.manual_seed(0)
    body = ViTBody(dim=8, depth=1, num_heads=2, window_blocks=(), img_size=64, pretrain_img_size=64, patch_size=16)
    assert body.pos_embed.shape == (1, 17, 8)
    assert torch.equal(body.abs_pos_embed(4, 4), body.pos_embed[:, 1:].reshape(1, 4, 4, 8))
    assert body.abs_pos_embed(6, 10).shape == (1, 6, 10, 8)


def test_vit_body_rejects_window_block_out_of_range():
    with pytest.raises(ValueError, match="window_blocks"):
        ViTBody(dim=8, depth=2, num_heads=2, window_blocks=(2,))
