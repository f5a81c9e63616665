"""Query relation: a small prompt-conditioned transformer over the queries, added to their retrieval features.

No official counterpart (reference §5.1: the retrieval heads see the decoder output alone; the official decoder has six
layers whose self-attention can compare objects). Why the `tiny` preset uses it (2 layers): with two decoder layers,
REC on the card stood at 0.566 and the misses were expressions that compare objects — ordinals ("the second circle
from the left") 0.32, relations ("the square left of the star") 0.51, extremes ("the leftmost red ring") 0.64 on 400
expressions (MODEL.md) — while the colour and size of each object were already readable from its retrieval input
(probes 0.83 and 0.84). Comparing needs each query to see the others' boxes and which of them the prompt names. With
it (trained by `tiny_stage3_relation`, then `training.fit_retrieval`) the card's REC is 0.647.

Each layer is pre-norm: cross-attention from the queries to the fused prompt tokens (which words concern this
object), self-attention among the queries (where the others are), a feed-forward block. The queries enter as their
retrieval features plus an embedding of their detached box (cx, cy, w, h: the comparison must not pull the boxes);
the result goes through a zero-initialised projection and is added to the retrieval features. Untrained it is an
exact no-op, so training can start from weights that predate it. Only the retrieval heads (`class_embed`) see the
sum, like the query colour (`query_colour.py`). In training, the self-attention takes the decoder's denoising mask,
so the matching queries cannot see the noised ground-truth boxes of the denoising groups.

With `dedup_iou` > 0 the self-attention sees one query per object: about 16 of the 100 queries overlap a referent at
IoU ≥ 0.5 (cached inputs of the card's training data), and attention, which averages, cannot count "the second red
triangle" among copies. A query is its object's representative when no query with a higher prompt score (the
retrieval head's logit without the relation term, detached) overlaps it by more than `dedup_iou` — the matrix form of
NMS ("fast NMS", YOLACT), plain tensor arithmetic that exports like the rest. Every query attends to the
representatives and to itself, and learns whether it is one from a learnt embedding added to its input.
"""

from __future__ import annotations

import torch
from torch import nn

from uninext_core.ops.boxes import box_cxcywh_to_xyxy, self_box_iou


class QueryRelationLayer(nn.Module):
    """Prompt cross-attention, query self-attention and a feed-forward block, each pre-norm with a residual."""

    def __init__(self, *, d_model: int, num_heads: int, dim_feedforward: int) -> None:
        super().__init__()
        self.norm_cross = nn.LayerNorm(d_model)
        self.cross_attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.norm_self = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, dim_feedforward), nn.ReLU(), nn.Linear(dim_feedforward, d_model))

    def forward(self, x: torch.Tensor, prompt: torch.Tensor, prompt_padding: torch.Tensor,
                attn_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, Q, d); prompt (B, T, d) projected tokens; prompt_padding (B, T) True on padding; attn_mask (Q, Q)
        True where blocked, or None."""
        h = self.norm_cross(x)
        x = x + self.cross_attn(h, prompt, prompt, key_padding_mask=prompt_padding, need_weights=False)[0]
        h = self.norm_self(x)
        # the value as a distinct tensor object (same values) keeps nn.MultiheadAttention off its fused inference
        # kernel, which needs query, key and value to be one tensor and which ONNX cannot export
        # (aten::_native_multi_head_attention)
        x = x + self.self_attn(h, h, h.view_as(h), attn_mask=attn_mask, need_weights=False)[0]
        return x + self.ffn(self.norm_ffn(x))


def representatives(boxes_cxcywh: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """(B, Q) bool: queries that no higher-scored query overlaps by more than `iou_threshold` (fast NMS; equal
    scores are ordered by index, so exactly one of two identical queries is kept).

    Args:
        boxes_cxcywh: (B, Q, 4) boxes.
        scores: (B, Q) scores (any monotone scale, e.g. logits).
        iou_threshold: overlap above which the lower-scored query is a copy.
    """
    iou = self_box_iou(box_cxcywh_to_xyxy(boxes_cxcywh))  # (B, Q, Q)
    index = torch.arange(scores.shape[-1], device=scores.device)
    ahead = (scores[:, None, :] > scores[:, :, None]) | (
        (scores[:, None, :] == scores[:, :, None]) & (index[None, :] < index[:, None])[None])  # [b, i, j]: j ahead of i
    return ~((iou > iou_threshold) & ahead).any(-1)


class QueryRelation(nn.Module):
    """(B, Q, d_model) relation term of each query, to add to its retrieval features.

    Args:
        d_model: query width.
        text_dim: width of the fused prompt tokens.
        num_layers: relation layers (≥ 1).
        num_heads: attention heads.
        dim_feedforward: feed-forward width.
        dedup_iou: > 0: the self-attention sees only each object's representative query (`representatives`; the
            forward then needs `scores`); 0: every query (off).
    """

    def __init__(self, *, d_model: int, text_dim: int, num_layers: int = 2, num_heads: int = 4,
                 dim_feedforward: int = 256, dedup_iou: float = 0.0) -> None:
        super().__init__()
        if num_layers <= 0 or d_model <= 0 or text_dim <= 0:
            raise ValueError(f"d_model, text_dim and num_layers must be positive, got {d_model}, {text_dim}, "
                             f"{num_layers}")
        if not 0.0 <= dedup_iou < 1.0:
            raise ValueError(f"dedup_iou must be in [0, 1), got {dedup_iou}")
        self.num_heads = num_heads
        self.dedup_iou = dedup_iou
        # added to a representative's input (zero at first: an untrained module stays a no-op either way)
        self.representative_embed = nn.Parameter(torch.zeros(d_model)) if dedup_iou > 0 else None
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.box_embed = nn.Sequential(nn.Linear(4, d_model), nn.ReLU(), nn.Linear(d_model, d_model))
        self.prompt_proj = nn.Linear(text_dim, d_model)
        self.layers = nn.ModuleList(QueryRelationLayer(d_model=d_model, num_heads=num_heads,
                                                       dim_feedforward=dim_feedforward) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, queries: torch.Tensor, boxes_cxcywh: torch.Tensor, prompt: torch.Tensor,
                prompt_mask: torch.Tensor, attn_mask: torch.Tensor | None = None,
                scores: torch.Tensor | None = None) -> torch.Tensor:
        """The relation term.

        Args:
            queries: (B, Q, d_model) retrieval features (decoder output, plus the query colour when there is one).
            boxes_cxcywh: (B, Q, 4) predicted boxes, normalised (detached here).
            prompt: (B, T, text_dim) fused prompt tokens.
            prompt_mask: (B, T) bool, True on valid tokens.
            attn_mask: (Q, Q) bool, True where query i must not attend to query j (the denoising mask), or None.
            scores: (B, Q) prompt scores of the queries (detached here); needed when `dedup_iou` > 0.

        Returns:
            (B, Q, d_model), zeros while `out_proj` is untrained.

        Raises:
            ValueError: `dedup_iou` > 0 without scores.
        """
        dtype = self.out_proj.weight.dtype
        x = queries.to(dtype) + self.box_embed(boxes_cxcywh.detach().to(dtype))
        if self.representative_embed is not None:
            if scores is None:
                raise ValueError("a query relation with dedup_iou > 0 needs the queries' scores")
            kept = representatives(boxes_cxcywh.detach().float(), scores.detach().float(), self.dedup_iou)
            x = x + kept[..., None].to(dtype) * self.representative_embed
            Q = kept.shape[-1]
            blocked = ~kept[:, None, :] & ~torch.eye(Q, dtype=torch.bool, device=kept.device)  # (B, Q, Q)
            if attn_mask is not None:
                blocked = blocked | attn_mask
            attn_mask = blocked.repeat_interleave(self.num_heads, dim=0)  # (B·heads, Q, Q), batch-major
        tokens = self.prompt_proj(prompt.to(dtype))
        # a prompt without any valid token would make every cross-attention weight NaN: let it attend to all of them
        padding = ~prompt_mask.bool()
        padding = padding & padding.logical_not().any(-1, keepdim=True)
        for layer in self.layers:
            x = layer(x, tokens, padding, attn_mask)
        return self.out_proj(self.norm(x))
