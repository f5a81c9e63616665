"""Deformable decoder with iterative box refinement and look-forward-twice (reference §4.5).

Per layer l (post-norm; self-attention -> deformable cross-attention -> FFN):

    ref_in   = ref_l × (valid ratios)                         (B, Q, L, 4) box references per level
    query_pos = ref_point_head(sine_box_embedding(ref_in[:, :, 0]))
    h_l      = layer(h_{l-1}, query_pos, ref_in, memory)
    δ_l      = bbox_embed[l](h_l)
    new_l    = σ(δ_l + σ⁻¹(ref_l))                          next reference: ref_{l+1} = new_l.detach()
    box_l    = σ(δ_l + σ⁻¹(R_l)),  R_0 = ref_0, R_l = new_{l-1} (not detached) — "look forward twice"

box_l equals new_l in value; only the gradient differs (box_l also trains layer l−1's box head). ref_0 (the two-stage
selection) is not detached, so layer 0 also trains the encoder proposals. Shape letters: B, Q queries, L levels, C.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from uninext_core.model.deform_attn import MSDeformAttn, SpatialShapes
from uninext_core.model.mlp import MLP
from uninext_core.model.position_encoding import sine_box_embedding
from uninext_core.ops.boxes import inverse_sigmoid


class DecoderOutputs(NamedTuple):
    """All decoder layers.

    Attributes:
        hidden: (N_layers, B, Q, C) output of every layer.
        boxes_cxcywh: (N_layers, B, Q, 4) box predicted by every layer, normalised to the un-padded image.
        reference_boxes: (N_layers, B, Q, 4) R_l, the box each layer's prediction is relative to (the layer's input
            reference; look-forward-twice keeps it attached to the previous layer's graph). The last entry's centres
            are the mask head's relative-coordinate origins.
    """

    hidden: torch.Tensor
    boxes_cxcywh: torch.Tensor
    reference_boxes: torch.Tensor


def box_reference_inputs(reference_boxes: torch.Tensor, valid_ratios: torch.Tensor) -> torch.Tensor:
    """(B, Q, 4) boxes normalised to the un-padded image -> (B, Q, L, 4) boxes in each level's padded map."""
    return reference_boxes[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]


class DeformableDecoderLayer(nn.Module):
    """Post-norm decoder layer.

    Official key names: norm2 = norm_self_attn, norm1 = norm_cross_attn, norm3 = norm_ffn (others unchanged).

    Args:
        d_model: C.
        dim_feedforward: FFN inner width.
        dropout: dropout in attention and FFN (0.0 official).
        n_levels, n_heads, n_points: attention sizes (the self-attention uses the same n_heads).
    """

    def __init__(self, *, d_model: int, dim_feedforward: int, dropout: float, n_levels: int, n_heads: int,
                 n_points: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.dropout_self_attn = nn.Dropout(dropout)
        self.norm_self_attn = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformAttn(d_model=d_model, n_levels=n_levels, n_heads=n_heads, n_points=n_points)
        self.dropout_cross_attn = nn.Dropout(dropout)
        self.norm_cross_attn = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout_ffn_inner = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout_ffn = nn.Dropout(dropout)
        self.norm_ffn = nn.LayerNorm(d_model)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor, reference_inputs: torch.Tensor,
                memory: torch.Tensor, spatial_shapes: SpatialShapes, padding_mask: torch.Tensor,
                self_attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One layer.

        Args:
            tgt: (B, Q, C) queries.
            query_pos: (B, Q, C) position embedding of the references.
            reference_inputs: (B, Q, L, 4) box references per level (from `box_reference_inputs`).
            memory: (B, S, C) encoder output.
            spatial_shapes: L pairs (H_l, W_l).
            padding_mask: (B, S) bool, True on padding.
            self_attn_mask: (Q, Q) bool, True where query i must not attend to query j (denoising), or None.

        Returns:
            (B, Q, C).
        """
        q = k = tgt + query_pos
        attended = self.self_attn(q, k, tgt, attn_mask=self_attn_mask, need_weights=False)[0]
        tgt = self.norm_self_attn(tgt + self.dropout_self_attn(attended))
        attended = self.cross_attn(tgt + query_pos, reference_inputs, memory, spatial_shapes, padding_mask)
        tgt = self.norm_cross_attn(tgt + self.dropout_cross_attn(attended))
        ffn = self.linear2(self.dropout_ffn_inner(F.relu(self.linear1(tgt))))
        return self.norm_ffn(tgt + self.dropout_ffn(ffn))


class DeformableDecoder(nn.Module):
    """Decoder layers plus `ref_point_head` MLP(2C -> C -> C) on the 4-d sine embedding of the reference boxes.

    The per-layer box heads belong to the assembly and are passed to `forward`.

    Args:
        layers: decoder layers, applied in order.
        d_model: C.
        look_forward_twice: see the module docstring (True official).
    """

    def __init__(self, *, layers: Sequence[DeformableDecoderLayer], d_model: int,
                 look_forward_twice: bool = True) -> None:
        super().__init__()
        if len(layers) == 0:
            raise ValueError("the decoder needs at least one layer, got 0")
        if d_model % 4:
            raise ValueError(f"d_model must be divisible by 4 (sine box embedding), got {d_model}")
        self.layers = nn.ModuleList(layers)
        self.d_model = d_model
        self.look_forward_twice = look_forward_twice
        self.ref_point_head = MLP(input_dim=2 * d_model, hidden_dim=d_model, output_dim=d_model, num_layers=2)

    @classmethod
    def with_clones(cls, layer: DeformableDecoderLayer, num_layers: int, *, d_model: int,
                    look_forward_twice: bool = True) -> DeformableDecoder:
        """`num_layers` independent deep copies of `layer`."""
        return cls(layers=[copy.deepcopy(layer) for _ in range(num_layers)], d_model=d_model,
                   look_forward_twice=look_forward_twice)

    def query_pos(self, reference_inputs: torch.Tensor) -> torch.Tensor:
        """(B, Q, L, 4) per-level references -> (B, Q, C) query position (embedding of the level-0 box)."""
        return self.ref_point_head(sine_box_embedding(reference_inputs[:, :, 0, :], num_pos_feats=self.d_model // 2))

    def forward(self, tgt: torch.Tensor, reference_boxes: torch.Tensor, memory: torch.Tensor,
                spatial_shapes: SpatialShapes, valid_ratios: torch.Tensor, padding_mask: torch.Tensor,
                bbox_embed: Sequence[nn.Module], self_attn_mask: torch.Tensor | None = None) -> DecoderOutputs:
        """Run every layer with iterative refinement.

        Args:
            tgt: (B, Q, C) initial content queries (denoising queries first, if any).
            reference_boxes: (B, Q, 4) initial boxes (cx, cy, w, h) in [0, 1] of the un-padded image; not detached.
            memory: (B, S, C) encoder output.
            spatial_shapes: L pairs (H_l, W_l).
            valid_ratios: (B, L, 2).
            padding_mask: (B, S) bool, True on padding.
            bbox_embed: one box head per layer, (B, Q, C) -> (B, Q, 4) logit-space deltas.
            self_attn_mask: (Q, Q) bool denoising mask or None.

        Returns:
            DecoderOutputs.
        """
        if len(bbox_embed) < len(self.layers):
            raise ValueError(f"need one box head per decoder layer ({len(self.layers)}), got {len(bbox_embed)}")
        output = tgt
        reference = reference_boxes  # ref_l: input of layer l (detached for l >= 1)
        attached_reference = reference_boxes  # R_l
        hidden, boxes, used_references = [], [], []
        for layer, box_head in zip(self.layers, bbox_embed, strict=False):
            reference_inputs = box_reference_inputs(reference, valid_ratios)
            output = layer(output, self.query_pos(reference_inputs), reference_inputs, memory, spatial_shapes,
                           padding_mask, self_attn_mask)
            delta = box_head(output)
            new_reference = (delta + inverse_sigmoid(reference)).sigmoid()
            if self.look_forward_twice:
                box = (delta + inverse_sigmoid(attached_reference)).sigmoid()
                used_references.append(attached_reference)
                attached_reference = new_reference
            else:
                box = new_reference
                used_references.append(reference)
            hidden.append(output)
            boxes.append(box)
            reference = new_reference.detach()
        return DecoderOutputs(hidden=torch.stack(hidden), boxes_cxcywh=torch.stack(boxes),
                              reference_boxes=torch.stack(used_references))
