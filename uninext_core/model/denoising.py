"""Contrastive denoising queries (DINO; UNINEXT `prepare_for_cdn`, reference §4.6) and the label encoder.

Training only. With G = max(1, (2·dn_number) // (2·max_gt)) groups, each group holds a positive and a negative noisy
copy of every ground-truth box of the image, laid out per group as [positives (max_gt) | negatives (max_gt)]; images
with fewer boxes leave zero padding queries. Box noise moves each corner by U·(w/2, h/2)·scale with random sign,
U ~ U[0, 1) for positives and U[1, 2) for negatives, then clips to [0, 1]. With the dynamic label encoder every
denoising query's content is the same vector per image: `FeatureResizer`(average-pooled raw prompt).

Attention mask (True = blocked): matching queries cannot see any denoising query; denoising groups cannot see each
other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from uninext_core.ops.boxes import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, inverse_sigmoid


class FeatureResizer(nn.Module):
    """Linear -> LayerNorm(eps 1e-12) -> dropout (official `FeatureResizer`, keys `fc`, `layer_norm`).

    Args:
        input_dim: prompt width (768 for BERT-base).
        output_dim: d_model.
        dropout: dropout after the norm.
    """

    def __init__(self, *, input_dim: int, output_dim: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(input_dim, output_dim)
        self.layer_norm = nn.LayerNorm(output_dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., input_dim) -> (..., output_dim)."""
        return self.dropout(self.layer_norm(self.fc(x)))


class DenoisingMeta(NamedTuple):
    """Layout of the denoising queries (they come first, before the K matching queries).

    Attributes:
        num_groups: G.
        max_gt: boxes per half-group (the largest ground-truth count in the batch); 0 means no denoising queries.
    """

    num_groups: int
    max_gt: int

    @property
    def num_queries(self) -> int:
        """2 · G · max_gt denoising queries per image."""
        return 2 * self.num_groups * self.max_gt

    def positive_index(self, num_gt: int, device: torch.device | None = None) -> torch.Tensor:
        """(G · num_gt,) int64 query indices of the positive copies of GT 0..num_gt-1, group-major."""
        group_start = torch.arange(self.num_groups, device=device) * (2 * self.max_gt)
        return (group_start[:, None] + torch.arange(num_gt, device=device)[None]).flatten()

    def negative_index(self, num_gt: int, device: torch.device | None = None) -> torch.Tensor:
        """(G · num_gt,) int64 query indices of the negative copies, aligned with `positive_index`."""
        return self.positive_index(num_gt, device) + self.max_gt

    def gt_index(self, num_gt: int, device: torch.device | None = None) -> torch.Tensor:
        """(G · num_gt,) the GT index each entry of `positive_index` / `negative_index` reconstructs."""
        return torch.arange(num_gt, device=device).repeat(self.num_groups)


class DenoisingQueries(NamedTuple):
    """Denoising inputs for the decoder.

    Attributes:
        content: (B, N_dn, C) query content (zeros on padding queries).
        boxes_logit: (B, N_dn, 4) inverse-sigmoid of the noisy boxes (zeros on padding queries).
        attn_mask: (N_dn + K, N_dn + K) bool, True where attention is blocked; None when N_dn = 0.
        meta: DenoisingMeta.
    """

    content: torch.Tensor
    boxes_logit: torch.Tensor
    attn_mask: torch.Tensor | None
    meta: DenoisingMeta


def denoising_attn_mask(meta: DenoisingMeta, num_queries: int, device: torch.device | None = None) -> torch.Tensor:
    """(N_dn + K, N_dn + K) bool mask, True = blocked (see module docstring)."""
    pad = meta.num_queries
    total = pad + num_queries
    mask = torch.zeros(total, total, dtype=torch.bool, device=device)
    mask[pad:, :pad] = True
    group = 2 * meta.max_gt
    for g in range(meta.num_groups):
        rows = slice(g * group, (g + 1) * group)
        mask[rows, : g * group] = True
        mask[rows, (g + 1) * group : pad] = True
    return mask


def build_denoising_queries(
    gt_boxes_cxcywh: Sequence[torch.Tensor],
    label_content: torch.Tensor,
    *,
    dn_number: int,
    box_noise_scale: float,
    num_queries: int,
    generator: torch.Generator | None = None,
) -> DenoisingQueries:
    """Noisy positive/negative copies of the ground-truth boxes.

    Args:
        gt_boxes_cxcywh: B tensors (N_b, 4), normalised (cx, cy, w, h) of each image's ground truth.
        label_content: (B, C) content vector per image (label encoder output).
        dn_number: official DN_NUMBER (100); 2·dn_number queries are shared out among the groups.
        box_noise_scale: λ (1.0).
        num_queries: K matching queries that follow (for the attention mask).
        generator: random source (None: torch's global one).

    Returns:
        DenoisingQueries; with no ground truth in the whole batch, N_dn = 0 and attn_mask None.
    """
    B, C = label_content.shape
    if len(gt_boxes_cxcywh) != B:
        raise ValueError(f"got ground truth for {len(gt_boxes_cxcywh)} images but label content for {B}")
    device = label_content.device
    counts = [int(b.shape[0]) for b in gt_boxes_cxcywh]
    max_gt = max(counts, default=0)
    if max_gt == 0 or dn_number <= 0:
        meta = DenoisingMeta(num_groups=0, max_gt=0)
        return DenoisingQueries(content=label_content.new_zeros(B, 0, C), boxes_logit=label_content.new_zeros(B, 0, 4),
                                attn_mask=None, meta=meta)
    groups = max(1, (2 * dn_number) // (2 * max_gt))
    meta = DenoisingMeta(num_groups=groups, max_gt=max_gt)

    boxes = torch.cat([b.to(device=device, dtype=torch.float32) for b in gt_boxes_cxcywh])  # (N, 4)
    image_index = torch.cat([torch.full((n,), i, dtype=torch.long, device=device) for i, n in enumerate(counts)])
    gt_index = torch.cat([torch.arange(n, device=device) for n in counts])
    copies = 2 * groups  # copy c: group c // 2, positive when c is even
    boxes = boxes.repeat(copies, 1)  # (copies · N, 4), copy-major
    negative = (torch.arange(copies, device=device) % 2 == 1).repeat_interleave(len(gt_index))

    if box_noise_scale > 0:
        corners = box_cxcywh_to_xyxy(boxes)
        half_wh = boxes[:, 2:].repeat(1, 2) / 2
        sign = torch.randint(0, 2, boxes.shape, generator=generator, device=device).to(boxes.dtype) * 2.0 - 1.0
        magnitude = torch.rand(boxes.shape, generator=generator, device=device) + negative[:, None].to(boxes.dtype)
        corners = (corners + magnitude * sign * half_wh * box_noise_scale).clamp(min=0.0, max=1.0)
        boxes = box_xyxy_to_cxcywh(corners)

    slot = gt_index.repeat(copies) + max_gt * torch.arange(copies, device=device).repeat_interleave(len(gt_index))
    rows = image_index.repeat(copies)
    content = label_content.new_zeros(B, meta.num_queries, C)
    content[rows, slot] = label_content[rows]
    boxes_logit = label_content.new_zeros(B, meta.num_queries, 4)
    boxes_logit[rows, slot] = inverse_sigmoid(boxes).to(boxes_logit.dtype)
    return DenoisingQueries(content=content, boxes_logit=boxes_logit,
                            attn_mask=denoising_attn_mask(meta, num_queries, device), meta=meta)
