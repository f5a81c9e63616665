"""Query resample: each query reads the encoder memory inside its final box once more, for the retrieval heads only.

No official counterpart (reference §5.1: the retrieval heads see the decoder output alone; the official decoder has six
layers, each of which samples the memory again). Why the `tiny` preset may use it: with two decoder layers, an
object's shape kind is poorly readable where the retrieval head looks. `training.diagnose_rec`'s probes on the file
shipped in session 11 recover the kind from the encoder memory's stride-8 cell at the object's centre at 0.32 and from
the query the retrieval head reads at 0.72 (majority 0.15), while colour and size reach 0.83 and 0.91; expressions
that pick an object of another kind are 65 of the 156 misses on the card's first 400 expressions, and a retrieval fit
of the heads behind the query (`training.fit_retrieval`) stopped at a training top-1 of 0.675. The decoder's own
sampling is shared with the box, mask and re-ID heads, and its boxes are refined only twice; this module samples the
memory at the final boxes for the retrieval question alone and trains on cached inputs like the other retrieval parts.

Each layer is pre-norm: multi-scale deformable cross-attention from the query (plus an embedding of its detached box)
to the memory, with the box as reference (the sampling points scale with it, `MSDeformAttn`), then a feed-forward
block. The result goes through a zero-initialised projection and is added to the retrieval features, so an untrained
module is an exact no-op and training can start from weights that predate it. The exported graph reuses the
decoder's deformable-attention ops (GridSample), which TensorRT 10 supports.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from uninext_core.model.decoder import box_reference_inputs
from uninext_core.model.deform_attn import MSDeformAttn, SpatialShapes
from uninext_core.model.mlp import MLP
from uninext_core.model.position_encoding import sine_box_embedding


class MemoryView(NamedTuple):
    """The encoder output as the deformable attention reads it.

    Attributes:
        memory: (B, S, C) encoder output.
        spatial_shapes: L pairs (H_l, W_l) of ints.
        valid_ratios: (B, L, 2) (w, h) valid fractions per level.
        padding_mask: (B, S) bool, True on padding.
    """

    memory: torch.Tensor
    spatial_shapes: SpatialShapes
    valid_ratios: torch.Tensor
    padding_mask: torch.Tensor


class QueryResampleLayer(nn.Module):
    """Pre-norm deformable cross-attention to the memory, then a pre-norm feed-forward block, each with a residual."""

    def __init__(self, *, d_model: int, num_heads: int, num_levels: int, num_points: int,
                 dim_feedforward: int) -> None:
        super().__init__()
        self.norm_cross = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformAttn(d_model=d_model, n_levels=num_levels, n_heads=num_heads, n_points=num_points)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, dim_feedforward), nn.ReLU(), nn.Linear(dim_feedforward, d_model))

    def forward(self, x: torch.Tensor, query_pos: torch.Tensor, reference_inputs: torch.Tensor,
                view: MemoryView) -> torch.Tensor:
        """x, query_pos (B, Q, d); reference_inputs (B, Q, L, 4) per-level boxes."""
        attended = self.cross_attn(self.norm_cross(x) + query_pos, reference_inputs, view.memory,
                                   view.spatial_shapes, view.padding_mask)
        x = x + attended
        return x + self.ffn(self.norm_ffn(x))


class QueryResample(nn.Module):
    """(B, Q, d_model) resample term of each query, to add to its retrieval features.

    Args:
        d_model: query and memory width.
        num_layers: resample layers (≥ 1).
        num_heads: attention heads.
        num_levels: memory levels.
        num_points: sampling points per head and level (the decoder's 4 read about one point per stride-8 cell of a
            small object; more points read its outline).
        dim_feedforward: feed-forward width.
    """

    def __init__(self, *, d_model: int, num_layers: int = 1, num_heads: int = 4, num_levels: int = 4,
                 num_points: int = 8, dim_feedforward: int = 256) -> None:
        super().__init__()
        if num_layers <= 0 or d_model <= 0 or d_model % 4:
            raise ValueError(f"num_layers must be positive and d_model a positive multiple of 4, got {num_layers} "
                             f"and {d_model}")
        self.d_model = d_model
        self.box_embed = MLP(input_dim=2 * d_model, hidden_dim=d_model, output_dim=d_model, num_layers=2)
        self.layers = nn.ModuleList(
            QueryResampleLayer(d_model=d_model, num_heads=num_heads, num_levels=num_levels, num_points=num_points,
                               dim_feedforward=dim_feedforward) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, queries: torch.Tensor, boxes_cxcywh: torch.Tensor, view: MemoryView) -> torch.Tensor:
        """The resample term.

        Args:
            queries: (B, Q, d_model) decoder output.
            boxes_cxcywh: (B, Q, 4) its boxes, normalised to the un-padded image (detached here: the term must not
                pull the boxes).
            view: the memory (`MemoryView`), batch B.

        Returns:
            (B, Q, d_model), zeros while `out_proj` is untrained.
        """
        dtype = self.out_proj.weight.dtype
        boxes = boxes_cxcywh.detach().to(dtype)
        reference_inputs = box_reference_inputs(boxes, view.valid_ratios.to(dtype))
        query_pos = self.box_embed(sine_box_embedding(boxes, num_pos_feats=self.d_model // 2))
        view = view._replace(memory=view.memory.to(dtype))
        x = queries.to(dtype)
        for layer in self.layers:
            x = layer(x, query_pos, reference_inputs, view)
        return self.out_proj(self.norm(x))
