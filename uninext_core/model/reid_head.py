"""Re-ID embedding head (stage 3, reference §5.5): two extra deformable decoder layers + MLP.

The layers run on the detached last decoder output, with the detached final boxes as fixed references (no refinement)
and the detached encoder memory; an MLP(C -> C -> C -> E) gives the (unnormalised) instance embedding.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from uninext_core.model.decoder import DeformableDecoderLayer, box_reference_inputs
from uninext_core.model.deform_attn import SpatialShapes
from uninext_core.model.mlp import MLP
from uninext_core.model.position_encoding import sine_box_embedding


class ReidHead(nn.Module):
    """Deformable re-ID head (official `DeformableReidHead` + MLP).

    Args:
        layer: decoder layer to clone (same type and sizes as the main decoder's).
        num_layers: number of clones (2 official).
        d_model: C.
        embed_dim: E, embedding width (256 official).
    """

    def __init__(self, *, layer: DeformableDecoderLayer, num_layers: int, d_model: int, embed_dim: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.d_model = d_model
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.ref_point_head = MLP(input_dim=2 * d_model, hidden_dim=d_model, output_dim=d_model, num_layers=2)
        self.embed = MLP(input_dim=d_model, hidden_dim=d_model, output_dim=embed_dim, num_layers=3)

    def forward(self, hidden: torch.Tensor, boxes_cxcywh: torch.Tensor, memory: torch.Tensor,
                spatial_shapes: SpatialShapes, valid_ratios: torch.Tensor,
                padding_mask: torch.Tensor) -> torch.Tensor:
        """Embed every query (inputs are detached here, so no gradient reaches the detector).

        Args:
            hidden: (B, Q, C) last decoder layer output.
            boxes_cxcywh: (B, Q, 4) final boxes, normalised to the un-padded image.
            memory: (B, S, C) encoder output.
            spatial_shapes: L pairs (H_l, W_l).
            valid_ratios: (B, L, 2).
            padding_mask: (B, S) bool, True on padding.

        Returns:
            (B, Q, E) embeddings.
        """
        output, memory = hidden.detach(), memory.detach()
        reference_inputs = box_reference_inputs(boxes_cxcywh.detach(), valid_ratios)
        query_pos = self.ref_point_head(sine_box_embedding(reference_inputs[:, :, 0, :],
                                                           num_pos_feats=self.d_model // 2))
        for layer in self.layers:
            output = layer(output, query_pos, reference_inputs, memory, spatial_shapes, padding_mask)
        return self.embed(output)
