"""Bi-directional vision-language cross-attention (Bi-XAtt, GLIP; reference §3).

One block in front of encoder layer 0 fuses the flattened multi-scale image tokens with the prompt tokens:

    v, l = LN_v(v), LN_l(l)                                   (pre-norm; residuals are added to these)
    A = clamp((W_v v) · s) (W_l l)ᵀ per head, s = head_dim^-1/2, clamp ±50000
    vision <- language: softmax over prompt tokens of A with padded tokens set to `mask_value` (−9e15)
    language <- vision: softmax over image tokens of clamp(Aᵀ − rowmax(Aᵀ), ±50000) (no image padding mask)
    dropout on both probability maps (train only); outputs projected back by out_v_proj / out_l_proj
    v' = v + γ_v · Δv,  l' = l + γ_l · Δl                      (γ initialised to cfg.fusion.init_gamma)

Official GLIP adds the mask to A (valid tokens +1, padded −9e15); in float32 that equals filling padded entries with
−9e15 and a uniform shift of the valid ones, which softmax ignores. For float16 engines set `mask_value` to
FP16_SAFE_MASK_VALUE: since A is clamped to ≥ −50000 first, −60000 still drives padded probabilities to exactly 0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

ATTN_CLAMP = 50000.0
MASK_VALUE = -9e15
FP16_SAFE_MASK_VALUE = -6.0e4


class FusedFeatures(NamedTuple):
    """Output of the Bi-XAtt block.

    Attributes:
        visual: (B, S, C_v) fused image tokens (go to the encoder).
        prompt: (B, T, C_l) fused prompt tokens (go to the retrieval head and the pooled prompt).
    """

    visual: torch.Tensor
    prompt: torch.Tensor


class BiMultiHeadAttention(nn.Module):
    """The two-way attention of §3 steps 2-4 (GLIP `BiMultiHeadAttention`, same parameter names).

    Args:
        v_dim: C_v, image token width (d_model).
        l_dim: C_l, prompt token width (768 for BERT-base).
        embed_dim: shared inner width (2048), split into num_heads heads.
        num_heads: attention heads (8).
        dropout: dropout on both probability maps (0.1), active in train mode only.
        mask_value: logit given to padded prompt tokens (MASK_VALUE, or FP16_SAFE_MASK_VALUE for fp16 export).
    """

    def __init__(self, *, v_dim: int, l_dim: int, embed_dim: int, num_heads: int, dropout: float,
                 mask_value: float = MASK_VALUE) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"embed_dim must be a positive multiple of num_heads, got embed_dim={embed_dim}, "
                             f"num_heads={num_heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim**-0.5
        self.dropout = dropout
        self.mask_value = float(mask_value)
        self.v_proj = nn.Linear(v_dim, embed_dim)
        self.l_proj = nn.Linear(l_dim, embed_dim)
        self.values_v_proj = nn.Linear(v_dim, embed_dim)
        self.values_l_proj = nn.Linear(l_dim, embed_dim)
        self.out_v_proj = nn.Linear(embed_dim, v_dim)
        self.out_l_proj = nn.Linear(embed_dim, l_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights, zero biases (GLIP)."""
        for layer in (self.v_proj, self.l_proj, self.values_v_proj, self.values_l_proj, self.out_v_proj,
                      self.out_l_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        # (B, N, E) -> (B, M, N, E/M)
        B, N, _ = x.shape
        return x.view(B, N, self.num_heads, self.head_dim).transpose(1, 2)

    def _merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        # (B, M, N, E/M) -> (B, N, E)
        B, _, N, _ = x.shape
        return x.transpose(1, 2).reshape(B, N, self.embed_dim)

    def forward(self, v: torch.Tensor, l: torch.Tensor, prompt_mask: torch.Tensor) -> FusedFeatures:  # noqa: E741
        """Compute both updates.

        Args:
            v: (B, S, C_v) normalised image tokens.
            l: (B, T, C_l) normalised prompt tokens.
            prompt_mask: (B, T) bool, True for valid prompt tokens.

        Returns:
            FusedFeatures(visual=Δv (B, S, C_v), prompt=Δl (B, T, C_l)) — the updates, before γ and the residual.
        """
        query = self._split_heads(self.v_proj(v) * self.scale)  # (B, M, S, E/M)
        key = self._split_heads(self.l_proj(l))  # (B, M, T, E/M)
        value_v = self._split_heads(self.values_v_proj(v))
        value_l = self._split_heads(self.values_l_proj(l))

        attn = torch.matmul(query, key.transpose(-1, -2)).clamp(min=-ATTN_CLAMP, max=ATTN_CLAMP)  # (B, M, S, T)

        attn_l = attn.transpose(-1, -2)  # (B, M, T, S)
        attn_l = (attn_l - attn_l.max(dim=-1, keepdim=True)[0]).clamp(min=-ATTN_CLAMP, max=ATTN_CLAMP)
        probs_l = attn_l.softmax(dim=-1)

        attn_v = attn.masked_fill(~prompt_mask[:, None, None, :], self.mask_value)
        probs_v = attn_v.softmax(dim=-1)

        probs_v = F.dropout(probs_v, p=self.dropout, training=self.training)
        probs_l = F.dropout(probs_l, p=self.dropout, training=self.training)

        delta_v = self.out_v_proj(self._merge_heads(torch.matmul(probs_v, value_l)))
        delta_l = self.out_l_proj(self._merge_heads(torch.matmul(probs_l, value_v)))
        return FusedFeatures(visual=delta_v, prompt=delta_l)


def use_fp16_safe_mask(model: nn.Module) -> int:
    """Give every fusion attention of `model` the float16-safe padded-token logit; returns how many it changed.

    The official −9e15 overflows float16, so `masked_fill` fails under float16 autocast. Logits are clamped to
    ±ATTN_CLAMP first, so −6e4 still puts padded tokens ≥ 1e4 below every valid one: their softmax weight is exactly
    0 in float32 as well, and float32 outputs do not change (tests/core/model/test_fusion.py checks it).
    """
    changed = 0
    for module in model.modules():
        if isinstance(module, BiMultiHeadAttention) and module.mask_value != FP16_SAFE_MASK_VALUE:
            module.mask_value = FP16_SAFE_MASK_VALUE
            changed += 1
    return changed


class BiXAttentionBlock(nn.Module):
    """Pre-norm Bi-XAtt block with layer-scale residuals on the normalised inputs (§3 steps 1 and 5).

    Args:
        v_dim: image token width (d_model).
        l_dim: prompt token width.
        embed_dim: inner width (2048 official).
        num_heads: heads (8 official).
        dropout: attention-probability dropout (0.1 official).
        init_gamma: initial layer-scale value γ for both directions (1 / number of encoder layers).
        mask_value: see BiMultiHeadAttention.
    """

    def __init__(self, *, v_dim: int, l_dim: int, embed_dim: int, num_heads: int, dropout: float,
                 init_gamma: float, mask_value: float = MASK_VALUE) -> None:
        super().__init__()
        self.layer_norm_v = nn.LayerNorm(v_dim)
        self.layer_norm_l = nn.LayerNorm(l_dim)
        self.attn = BiMultiHeadAttention(v_dim=v_dim, l_dim=l_dim, embed_dim=embed_dim, num_heads=num_heads,
                                         dropout=dropout, mask_value=mask_value)
        self.gamma_v = nn.Parameter(torch.full((v_dim,), float(init_gamma)))
        self.gamma_l = nn.Parameter(torch.full((l_dim,), float(init_gamma)))

    def forward(self, visual: torch.Tensor, prompt: torch.Tensor, prompt_mask: torch.Tensor) -> FusedFeatures:
        """Fuse image and prompt tokens.

        Args:
            visual: (B, S, C_v) flattened multi-scale image tokens (no position embedding).
            prompt: (B, T, C_l) prompt tokens.
            prompt_mask: (B, T) bool, True for valid prompt tokens.

        Returns:
            FusedFeatures with the same shapes as the inputs.
        """
        v = self.layer_norm_v(visual)
        l = self.layer_norm_l(prompt)  # noqa: E741
        delta = self.attn(v, l, prompt_mask)
        return FusedFeatures(visual=v + self.gamma_v * delta.visual, prompt=l + self.gamma_l * delta.prompt)
