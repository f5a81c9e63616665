"""Bi-XAtt against the direct formula of reference §3 (float64), loops over images and heads."""

from __future__ import annotations

import pytest
import torch

from uninext_core.model.fusion import FP16_SAFE_MASK_VALUE, BiXAttentionBlock

V_DIM, L_DIM, EMBED, HEADS = 6, 10, 8, 2


def make_block(seed: int, *, weight_scale: float = 0.5, mask_value: float | None = None) -> BiXAttentionBlock:
    torch.manual_seed(seed)
    kwargs = {} if mask_value is None else {"mask_value": mask_value}
    block = BiXAttentionBlock(v_dim=V_DIM, l_dim=L_DIM, embed_dim=EMBED, num_heads=HEADS, dropout=0.1,
                              init_gamma=0.5, **kwargs).double()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * weight_scale)
    return block.eval()


def layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def linear(x, layer):
    return x @ layer.weight.T + layer.bias


def direct_formula(block: BiXAttentionBlock, v, l, mask):  # noqa: E741
    attn = block.attn
    v_n = layer_norm(v, block.layer_norm_v.weight, block.layer_norm_v.bias)
    l_n = layer_norm(l, block.layer_norm_l.weight, block.layer_norm_l.bias)
    dh = EMBED // HEADS
    out_v = torch.zeros(v.shape[0], v.shape[1], EMBED, dtype=v.dtype)
    out_l = torch.zeros(l.shape[0], l.shape[1], EMBED, dtype=v.dtype)
    for b in range(v.shape[0]):
        valid = mask[b]
        for h in range(HEADS):
            cols = slice(h * dh, (h + 1) * dh)
            q = linear(v_n[b], attn.v_proj)[:, cols] * dh**-0.5
            k = linear(l_n[b], attn.l_proj)[:, cols]
            value_v = linear(v_n[b], attn.values_v_proj)[:, cols]
            value_l = linear(l_n[b], attn.values_l_proj)[:, cols]
            a = torch.clamp(q @ k.T, -50000, 50000)  # (S, T)
            # vision <- language: softmax over valid tokens only.
            e = torch.exp(a[:, valid] - a[:, valid].max(1, keepdim=True)[0])
            out_v[b, :, cols] = (e / e.sum(1, keepdim=True)) @ value_l[valid]
            # language <- vision: every token (padded too) over every image token.
            a_t = torch.clamp(a.T - a.T.max(1, keepdim=True)[0], -50000, 50000)
            e_t = torch.exp(a_t)
            out_l[b, :, cols] = (e_t / e_t.sum(1, keepdim=True)) @ value_v
    delta_v = linear(out_v, attn.out_v_proj)
    delta_l = linear(out_l, attn.out_l_proj)
    return v_n + block.gamma_v * delta_v, l_n + block.gamma_l * delta_l


def inputs(seed: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(2, 7, V_DIM, generator=g, dtype=torch.float64) * scale
    l = torch.randn(2, 5, L_DIM, generator=g, dtype=torch.float64) * scale  # noqa: E741
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    return v, l, mask


def test_block_equals_direct_formula_with_padded_prompt_tokens():
    block = make_block(0)
    v, l, mask = inputs(1)  # noqa: E741
    fused = block(v, l, mask)
    expected_v, expected_l = direct_formula(block, v, l, mask)
    torch.testing.assert_close(fused.visual, expected_v, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fused.prompt, expected_l, rtol=1e-9, atol=1e-9)


def test_block_equals_direct_formula_when_the_clamps_are_active():
    block = make_block(2, weight_scale=40.0)
    v, l, mask = inputs(3, scale=3.0)  # noqa: E741
    with torch.no_grad():
        raw = block.attn.v_proj(block.layer_norm_v(v)) @ block.attn.l_proj(block.layer_norm_l(l)).transpose(1, 2)
    assert raw.abs().max() * (EMBED // HEADS) ** -0.5 > 50000  # the clamp really matters here
    fused = block(v, l, mask)
    expected_v, expected_l = direct_formula(block, v, l, mask)
    torch.testing.assert_close(fused.visual, expected_v, rtol=1e-9, atol=1e-6)
    torch.testing.assert_close(fused.prompt, expected_l, rtol=1e-9, atol=1e-6)


def test_padded_prompt_tokens_do_not_reach_the_image_tokens():
    block = make_block(4)
    v, l, mask = inputs(5)  # noqa: E741
    changed = l.clone()
    changed[1, 3:] = 100.0
    torch.testing.assert_close(block(v, l, mask).visual, block(v, changed, mask).visual)


def test_fp16_safe_mask_value_gives_identical_outputs():
    v, l, mask = inputs(6)  # noqa: E741
    reference = make_block(7)(v, l, mask)
    safe = make_block(7, mask_value=FP16_SAFE_MASK_VALUE)(v, l, mask)
    assert FP16_SAFE_MASK_VALUE > -65504.0  # representable in float16
    torch.testing.assert_close(safe.visual, reference.visual, rtol=0, atol=0)


def test_gamma_init_and_dropout_only_in_train_mode():
    torch.manual_seed(8)
    block = BiXAttentionBlock(v_dim=V_DIM, l_dim=L_DIM, embed_dim=EMBED, num_heads=HEADS, dropout=0.5,
                              init_gamma=1 / 6)
    sixth = torch.tensor(1 / 6, dtype=torch.float32)
    assert torch.all(block.gamma_v == sixth) and torch.all(block.gamma_l == sixth)
    block = block.double()
    v, l, mask = inputs(9)  # noqa: E741
    block.eval()
    torch.testing.assert_close(block(v, l, mask).visual, block(v, l, mask).visual)
    block.train()
    torch.manual_seed(10)
    first = block(v, l, mask).visual
    torch.manual_seed(11)
    assert not torch.allclose(first, block(v, l, mask).visual)


def test_bad_head_split_is_rejected():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        BiXAttentionBlock(v_dim=4, l_dim=4, embed_dim=10, num_heads=3, dropout=0.0, init_gamma=0.1)


def test_fp16_safe_mask_leaves_float32_outputs_unchanged() -> None:
    """TorchBackend(fp16=True) switches a loaded model to the float16-safe mask; float32 results must not move."""
    from uninext_core.model.build import build_model
    from uninext_core.model.fusion import MASK_VALUE, BiMultiHeadAttention, use_fp16_safe_mask
    from uninext_core.model.prompt_features import PromptFeatures

    torch.manual_seed(0)
    model = build_model("tiny").eval()
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(1, 3, 128, 160, generator=generator)
    pixel_mask = torch.ones(1, 128, 160, dtype=torch.bool)
    hidden = torch.randn(1, 16, model.text_encoder.hidden_dim, generator=generator) * 3.0
    prompt_mask = torch.zeros(1, 16, dtype=torch.bool)
    prompt_mask[:, :5] = True  # 11 padded tokens, so the mask value matters
    with torch.no_grad():
        before = model(images, pixel_mask, PromptFeatures(hidden, prompt_mask))
        fusions = [m for m in model.modules() if isinstance(m, BiMultiHeadAttention)]
        assert fusions and all(m.mask_value == MASK_VALUE for m in fusions)
        assert use_fp16_safe_mask(model) == len(fusions)
        assert all(m.mask_value == FP16_SAFE_MASK_VALUE for m in fusions)
        after = model(images, pixel_mask, PromptFeatures(hidden, prompt_mask))
    for name, a, b in zip(before._fields, before, after, strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)
    assert use_fp16_safe_mask(model) == 0
