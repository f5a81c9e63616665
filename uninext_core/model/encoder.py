"""Deformable encoder (reference §4.2): post-norm layers of multi-scale deformable self-attention + FFN.

Shape letters: B batch, S = Σ H_l·W_l, L levels, C channels.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from uninext_core.model.deform_attn import MSDeformAttn, SpatialShapes


def encoder_reference_points(spatial_shapes: SpatialShapes, valid_ratios: torch.Tensor) -> torch.Tensor:
    """Cell centres of every level, normalised by the valid extent of their own level, seen from every level.

    Args:
        spatial_shapes: L pairs (H_l, W_l) of Python ints.
        valid_ratios: (B, L, 2) float (valid width / W_l, valid height / H_l).

    Returns:
        (B, S, L, 2) (x, y) in [0, 1] of each level's padded map (centre / valid extent × valid ratio of the target
        level), the 2-d references of the encoder's self-attention.
    """
    points_per_level = []
    for level, (h, w) in enumerate(spatial_shapes):
        ys = torch.arange(int(h), dtype=torch.float32, device=valid_ratios.device) + 0.5
        xs = torch.arange(int(w), dtype=torch.float32, device=valid_ratios.device) + 0.5
        ref_y, ref_x = torch.meshgrid(ys, xs, indexing="ij")
        ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, level, 1] * int(h))  # (B, H·W)
        ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, level, 0] * int(w))
        points_per_level.append(torch.stack((ref_x, ref_y), -1))
    reference_points = torch.cat(points_per_level, 1)  # (B, S, 2)
    return reference_points[:, :, None] * valid_ratios[:, None]


class DeformableEncoderLayer(nn.Module):
    """Post-norm encoder layer: src = LN(src + MSDA(src + pos)); src = LN(src + FFN(src)).

    Official key names: norm1 = norm_self_attn, norm2 = norm_ffn (others unchanged).

    Args:
        d_model: C.
        dim_feedforward: FFN inner width (2048 official).
        dropout: dropout after attention and in the FFN (0.0 official).
        n_levels, n_heads, n_points: MSDeformAttn sizes.
    """

    def __init__(self, *, d_model: int, dim_feedforward: int, dropout: float, n_levels: int, n_heads: int,
                 n_points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points)
        self.dropout_self_attn = nn.Dropout(dropout)
        self.norm_self_attn = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout_ffn_inner = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout_ffn = nn.Dropout(dropout)
        self.norm_ffn = nn.LayerNorm(d_model)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                spatial_shapes: SpatialShapes, padding_mask: torch.Tensor) -> torch.Tensor:
        """One layer.

        Args:
            src: (B, S, C) tokens.
            pos: (B, S, C) sine position + level embedding.
            reference_points: (B, S, L, 2) from `encoder_reference_points`.
            spatial_shapes: L pairs (H_l, W_l).
            padding_mask: (B, S) bool, True on padding.

        Returns:
            (B, S, C).
        """
        attended = self.self_attn(src + pos, reference_points, src, spatial_shapes, padding_mask)
        src = self.norm_self_attn(src + self.dropout_self_attn(attended))
        ffn = self.linear2(self.dropout_ffn_inner(F.relu(self.linear1(src))))
        return self.norm_ffn(src + self.dropout_ffn(ffn))


class DeformableEncoder(nn.Module):
    """A stack of encoder layers (submodules `layers.{i}`).

    Args:
        layers: the encoder layers, applied in order.
    """

    def __init__(self, *, layers: Sequence[DeformableEncoderLayer]) -> None:
        super().__init__()
        if len(layers) == 0:
            raise ValueError("the encoder needs at least one layer, got 0")
        self.layers = nn.ModuleList(layers)

    @classmethod
    def with_clones(cls, layer: DeformableEncoderLayer, num_layers: int) -> DeformableEncoder:
        """`num_layers` independent deep copies of `layer`."""
        return cls(layers=[copy.deepcopy(layer) for _ in range(num_layers)])

    def forward(self, src: torch.Tensor, pos: torch.Tensor, spatial_shapes: SpatialShapes,
                valid_ratios: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """Encode the (fused) multi-scale tokens.

        Args:
            src: (B, S, C) fused image tokens.
            pos: (B, S, C) position + level embedding.
            spatial_shapes: L pairs (H_l, W_l).
            valid_ratios: (B, L, 2) (w, h) valid fractions per level.
            padding_mask: (B, S) bool, True on padding.

        Returns:
            (B, S, C) memory.
        """
        reference_points = encoder_reference_points(spatial_shapes, valid_ratios)
        for layer in self.layers:
            src = layer(src, pos, reference_points, spatial_shapes, padding_mask)
        return src
