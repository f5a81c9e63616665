"""UNINEXT deformable transformer (reference §3-§4): Bi-XAtt fusion, encoder, two-stage selection, decoder.

`DeformableTransformer` owns the transformer's own parameters (level embedding, fusion block, encoder, proposal
projection, static content queries, decoder, and the ×0 `resizer` kept for checkpoint compatibility). The heads it
needs for query selection and refinement belong to the assembly and are passed to `forward`.

Shape letters: B batch, L levels, S = Σ H_l·W_l, C = d_model, T prompt tokens, C_l prompt width, K queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from uninext_core.model.decoder import DecoderOutputs, DeformableDecoder
from uninext_core.model.deform_attn import MSDeformAttn, level_sizes_wh
from uninext_core.model.denoising import DenoisingQueries, FeatureResizer
from uninext_core.model.encoder import DeformableEncoder
from uninext_core.model.fusion import BiMultiHeadAttention, BiXAttentionBlock
from uninext_core.model.position_encoding import sine_position_embedding_2d
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.retrieval import pool_prompt
from uninext_core.model.two_stage import encoder_proposals, select_top_queries

TRANSFORMER_RESIZER_DROPOUT = 0.1


class TransformerOutputs(NamedTuple):
    """Everything downstream heads need.

    Attributes:
        decoder: DecoderOutputs over N_dn + K queries (denoising queries first).
        memory: (B, S, C) encoder output.
        padding_mask: (B, S) bool, True on padding.
        spatial_shapes: L pairs (H_l, W_l) of ints.
        valid_ratios: (B, L, 2) (w, h) valid fractions per level.
        prompt: (B, T, C_l) fused prompt tokens.
        pooled_prompt: (B, C_l) fused prompt averaged over valid tokens.
        encoder_logits: (B, S, 1) proposal objectness.
        encoder_boxes_cxcywh: (B, S, 4) proposal boxes (1.0 where invalid).
    """

    decoder: DecoderOutputs
    memory: torch.Tensor
    padding_mask: torch.Tensor
    spatial_shapes: list[tuple[int, int]]
    valid_ratios: torch.Tensor
    prompt: torch.Tensor
    pooled_prompt: torch.Tensor
    encoder_logits: torch.Tensor
    encoder_boxes_cxcywh: torch.Tensor


def flatten_levels(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """L maps (B, C, H_l, W_l) -> (B, S, C), level-major then row-major."""
    return torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)


def valid_sizes(padding_masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, L, 2) float (valid width, valid height) in cells, counted on the first row / column of each mask."""
    sizes = [torch.stack([(~m[:, 0, :]).sum(1), (~m[:, :, 0]).sum(1)], -1) for m in padding_masks]
    return torch.stack(sizes, 1).to(torch.float32)


class DeformableTransformer(nn.Module):
    """Fusion + encoder + two-stage query selection + decoder.

    Args:
        fusion: Bi-XAtt block applied once before encoder layer 0.
        encoder: deformable encoder.
        decoder: deformable decoder.
        d_model: C.
        text_dim: C_l, prompt token width.
        num_levels: L.
        num_queries: K, constant number of selected queries.
    """

    def __init__(self, *, fusion: BiXAttentionBlock, encoder: DeformableEncoder, decoder: DeformableDecoder,
                 d_model: int, text_dim: int, num_levels: int, num_queries: int) -> None:
        super().__init__()
        if num_queries <= 0:
            raise ValueError(f"num_queries must be positive, got {num_queries}")
        self.d_model = d_model
        self.num_levels = num_levels
        self.num_queries = num_queries
        self.level_embed = nn.Parameter(torch.empty(num_levels, d_model))
        self.fusion = fusion
        self.encoder = encoder
        self.enc_output = nn.Linear(d_model, d_model)
        self.enc_output_norm = nn.LayerNorm(d_model)
        self.tgt_embed = nn.Embedding(num_queries, d_model)
        self.decoder = decoder
        self.reset_parameters()
        # Official: pooled fused prompt -> resizer, added ×0.0 to the static queries (DECOUPLE_TGT and
        # STILL_TGT_FOR_BOTH); kept so official checkpoints map 1:1. Created after the Xavier pass, as upstream.
        self.resizer = FeatureResizer(input_dim=text_dim, output_dim=d_model, dropout=TRANSFORMER_RESIZER_DROPOUT)

    def reset_parameters(self) -> None:
        """Official order: Xavier on every matrix, then MSDA / Bi-XAtt own init, then normal level embedding."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn | BiMultiHeadAttention):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(
        self,
        srcs: Sequence[torch.Tensor],
        padding_masks: Sequence[torch.Tensor],
        prompt: PromptFeatures,
        *,
        score_head: nn.Module,
        box_heads: Sequence[nn.Module],
        denoising: DenoisingQueries | None = None,
    ) -> TransformerOutputs:
        """Run the transformer.

        Args:
            srcs: L projected maps (B, C, H_l, W_l), strides 8..64.
            padding_masks: L bool masks (B, H_l, W_l), True on padding.
            prompt: PromptFeatures (hidden (B, T, C_l), mask (B, T) True valid).
            score_head: encoder objectness head, (B, S, C) -> (B, S, 1).
            box_heads: N_layers + 1 box heads (B, N, C) -> (B, N, 4); the last one scores encoder proposals.
            denoising: denoising queries to prepend (training), or None.

        Returns:
            TransformerOutputs.
        """
        if len(srcs) != self.num_levels or len(padding_masks) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} levels, got {len(srcs)} maps and {len(padding_masks)} masks")
        if len(box_heads) != len(self.decoder.layers) + 1:
            raise ValueError(f"expected {len(self.decoder.layers) + 1} box heads, got {len(box_heads)}")
        B = srcs[0].shape[0]
        spatial_shapes = [(int(s.shape[-2]), int(s.shape[-1])) for s in srcs]
        pos = [sine_position_embedding_2d(m, num_pos_feats=self.d_model // 2) + self.level_embed[lvl].view(1, -1, 1, 1)
               for lvl, m in enumerate(padding_masks)]
        src_flat = flatten_levels(srcs)
        pos_flat = flatten_levels(pos)
        mask_flat = torch.cat([m.flatten(1) for m in padding_masks], 1)
        sizes = valid_sizes(padding_masks)
        full = level_sizes_wh(spatial_shapes, dtype=sizes.dtype, device=sizes.device)
        valid_ratios = sizes / full

        fused = self.fusion(src_flat, prompt.hidden, prompt.mask)
        memory = self.encoder(fused.visual, pos_flat, spatial_shapes, valid_ratios, mask_flat)
        pooled = pool_prompt(fused.prompt, prompt.mask)

        proposals = encoder_proposals(mask_flat, spatial_shapes, sizes)
        output_memory = self.enc_output_norm(self.enc_output(memory.masked_fill(~proposals.valid, 0.0)))
        encoder_logits = score_head(output_memory)
        encoder_boxes_logit = box_heads[-1](output_memory) + proposals.boxes_logit
        selection = select_top_queries(encoder_logits[..., 0], encoder_boxes_logit, self.num_queries)
        reference_boxes = selection.boxes_logit.sigmoid()

        tgt = self.tgt_embed.weight[None].expand(B, -1, -1)
        tgt = tgt + 0.0 * self.resizer(pooled)[:, None, :]
        attn_mask = None
        if denoising is not None and denoising.meta.num_queries > 0:
            tgt = torch.cat([denoising.content, tgt], 1)
            reference_boxes = torch.cat([denoising.boxes_logit.sigmoid(), reference_boxes], 1)
            attn_mask = denoising.attn_mask
        decoded = self.decoder(tgt, reference_boxes, memory, spatial_shapes, valid_ratios, mask_flat,
                               box_heads[:-1], attn_mask)
        return TransformerOutputs(decoder=decoded, memory=memory, padding_mask=mask_flat,
                                  spatial_shapes=spatial_shapes, valid_ratios=valid_ratios, prompt=fused.prompt,
                                  pooled_prompt=pooled, encoder_logits=encoder_logits,
                                  encoder_boxes_cxcywh=encoder_boxes_logit.sigmoid())
