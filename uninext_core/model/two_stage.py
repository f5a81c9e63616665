"""Two-stage proposals and query selection (reference §4.4).

Every encoder position proposes a box: centre = (index + 0.5) / valid extent of its level, size 0.05·2^level, stored in
logit space. Proposals with a coordinate outside (0.01, 0.99) or on padding become +inf (σ = 1) and their memory is
zeroed; their scores are *not* masked (official UNINEXT, unlike DINO). The top-K objectness scores pick the initial
reference boxes, which stay attached to the graph.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from uninext_core.model.deform_attn import SpatialShapes

PROPOSAL_BASE_SIZE = 0.05
PROPOSAL_VALID_MIN = 0.01
PROPOSAL_VALID_MAX = 0.99


class Proposals(NamedTuple):
    """Per-position proposals.

    Attributes:
        boxes_logit: (B, S, 4) inverse-sigmoid of (cx, cy, w, h); +inf where invalid or padded.
        valid: (B, S, 1) bool, True where the proposal is usable (inside (0.01, 0.99) and not padding).
    """

    boxes_logit: torch.Tensor
    valid: torch.Tensor


class Selection(NamedTuple):
    """Top-K selection.

    Attributes:
        index: (B, K) int64 positions in the flattened memory, by descending score.
        boxes_logit: (B, K, 4) selected encoder boxes in logit space (attached to the graph).
    """

    index: torch.Tensor
    boxes_logit: torch.Tensor


def encoder_proposals(padding_mask: torch.Tensor, spatial_shapes: SpatialShapes,
                      valid_sizes: torch.Tensor) -> Proposals:
    """Proposal boxes for every flattened encoder position.

    Args:
        padding_mask: (B, S) bool, True on padding.
        spatial_shapes: L pairs (H_l, W_l) of Python ints.
        valid_sizes: (B, L, 2) float (valid width, valid height) in cells of each level.

    Returns:
        Proposals.
    """
    B = padding_mask.shape[0]
    per_level = []
    for level, (h, w) in enumerate(spatial_shapes):
        ys = torch.arange(int(h), dtype=torch.float32, device=padding_mask.device)
        xs = torch.arange(int(w), dtype=torch.float32, device=padding_mask.device)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([grid_x, grid_y], -1)  # (H, W, 2)
        centres = (grid[None] + 0.5) / valid_sizes[:, level].view(B, 1, 1, 2)  # (B, H, W, 2)
        sizes = torch.full_like(centres, PROPOSAL_BASE_SIZE * (2.0**level))
        per_level.append(torch.cat([centres, sizes], -1).view(B, -1, 4))
    boxes = torch.cat(per_level, 1)  # (B, S, 4)
    valid = ((boxes > PROPOSAL_VALID_MIN) & (boxes < PROPOSAL_VALID_MAX)).all(-1, keepdim=True)
    valid = valid & ~padding_mask[..., None]
    boxes_logit = torch.log(boxes / (1 - boxes)).masked_fill(~valid, float("inf"))
    return Proposals(boxes_logit=boxes_logit, valid=valid)


def select_top_queries(scores: torch.Tensor, boxes_logit: torch.Tensor, num_queries: int) -> Selection:
    """Pick the `num_queries` highest-scoring encoder positions.

    Args:
        scores: (B, S) objectness logits.
        boxes_logit: (B, S, 4) encoder box predictions in logit space.
        num_queries: K (constant); must not exceed S.

    Returns:
        Selection.
    """
    if num_queries > scores.shape[1]:
        raise ValueError(f"num_queries ({num_queries}) exceeds the number of encoder positions "
                         f"({scores.shape[1]}); use a larger image")
    index = torch.topk(scores, num_queries, dim=1)[1]
    selected = torch.gather(boxes_logit, 1, index[..., None].expand(-1, -1, boxes_logit.shape[-1]))
    return Selection(index=index, boxes_logit=selected)
