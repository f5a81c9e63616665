"""Multi-scale deformable attention in pure PyTorch (Deformable DETR, Zhu et al. 2021, Eq. 3; reference §4.3).

Sampling uses `F.grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)`, which exports to ONNX
`GridSample` (opset >= 16) and runs on any device. Level sizes are plain Python ints (static per engine), so the
graph has no Python branches on tensor values. The slow per-point loop that this must equal lives in the tests.

Shape letters: B batch, Q queries, S = Σ H_l·W_l flattened positions, L levels, M heads, P points, C channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SpatialShapes = Sequence[tuple[int, int]]


def level_start_index(spatial_shapes: SpatialShapes) -> list[int]:
    """Offsets of each level in the flattened sequence: [0, H_0·W_0, H_0·W_0 + H_1·W_1, ...]."""
    starts, total = [], 0
    for h, w in spatial_shapes:
        starts.append(total)
        total += int(h) * int(w)
    return starts


def level_sizes_wh(spatial_shapes: SpatialShapes, *, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(L, 2) tensor of (W_l, H_l) per level, made on `device` without a host-to-device copy.

    Each value is written by a fill kernel that takes the Python number as an argument. `torch.tensor(list,
    device="cuda")` would instead copy from pageable host memory, which CUDA forbids while a graph is being captured
    (CudaGraphTorchBackend); the ONNX exporter folds either form into one constant.
    """
    values = [torch.full((), float(v), dtype=dtype, device=device) for h, w in spatial_shapes for v in (w, h)]
    return torch.stack(values).view(len(spatial_shapes), 2)


def ms_deform_attn_sample(
    value: torch.Tensor,
    spatial_shapes: SpatialShapes,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Bilinear multi-scale sampling and weighted sum (the core the CUDA kernel computes).

    Args:
        value: (B, S, M, C/M) per-head values, levels concatenated in `spatial_shapes` order.
        spatial_shapes: L pairs (H_l, W_l) of Python ints.
        sampling_locations: (B, Q, M, L, P, 2) (x, y) in [0, 1] of each level's full (padded) map; outside -> zeros.
        attention_weights: (B, Q, M, L, P), already normalised over (L, P).

    Returns:
        (B, Q, C) attended features, heads concatenated.
    """
    B, _, M, D = value.shape
    _, Q, _, L, P, _ = sampling_locations.shape
    value_per_level = value.split([int(h) * int(w) for h, w in spatial_shapes], dim=1)
    sampling_grids = 2.0 * sampling_locations - 1.0
    sampled_per_level = []
    for level, (h, w) in enumerate(spatial_shapes):
        # (B, H·W, M, D) -> (B·M, D, H, W)
        value_l = value_per_level[level].flatten(2).transpose(1, 2).reshape(B * M, D, int(h), int(w))
        # (B, Q, M, P, 2) -> (B·M, Q, P, 2)
        grid_l = sampling_grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        # (B·M, D, Q, P)
        sampled_per_level.append(
            F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False)
        )
    # (B, Q, M, L, P) -> (B·M, 1, Q, L·P)
    weights = attention_weights.transpose(1, 2).reshape(B * M, 1, Q, L * P)
    # (B·M, D, Q, L·P) -> (B·M, D, Q) -> (B, M·D, Q)
    output = (torch.stack(sampled_per_level, dim=-2).flatten(-2) * weights).sum(-1).view(B, M * D, Q)
    return output.transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module with the paper's parameter names and initialisation.

    Args:
        d_model: C, channels of queries and values; divisible by n_heads.
        n_levels: L, number of feature levels.
        n_heads: M, attention heads.
        n_points: P, sampling points per head and level.
    """

    def __init__(self, *, d_model: int, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        if d_model <= 0 or n_heads <= 0 or d_model % n_heads:
            raise ValueError(f"d_model must be a positive multiple of n_heads, got d_model={d_model}, "
                             f"n_heads={n_heads}")
        if n_levels <= 0 or n_points <= 0:
            raise ValueError(f"n_levels and n_points must be positive, got {n_levels} and {n_points}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """§4.3: offsets start on M unit directions (max-norm 1) scaled by point index + 1; uniform attention."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: SpatialShapes,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from each query to P points per head around its reference on every level.

        Args:
            query: (B, Q, C) query features (content + position).
            reference_points: (B, Q, L, 2) points (x, y) or (B, Q, L, 4) boxes (cx, cy, w, h), in [0, 1] of each
                level's full padded map (i.e. already multiplied by the valid ratios), top-left (0, 0).
                Points: location = ref + offset / (W_l, H_l). Boxes: location = centre + offset / P · wh · 0.5.
            value: (B, S, C) flattened multi-scale input, S = Σ H_l·W_l.
            spatial_shapes: L pairs (H_l, W_l) of Python ints.
            padding_mask: (B, S) bool, True on padded positions (their values are zeroed), or None.

        Returns:
            (B, Q, C).
        """
        B, Q, _ = query.shape
        M, L, P = self.n_heads, self.n_levels, self.n_points
        if len(spatial_shapes) != L:
            raise ValueError(f"expected {L} spatial shapes, got {len(spatial_shapes)}")
        value = self.value_proj(value)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(B, value.shape[1], M, self.d_model // M)
        sampling_offsets = self.sampling_offsets(query).view(B, Q, M, L, P, 2)
        attention_weights = self.attention_weights(query).view(B, Q, M, L * P).softmax(-1).view(B, Q, M, L, P)
        if reference_points.shape[-1] == 2:
            normalizer = level_sizes_wh(spatial_shapes, dtype=query.dtype, device=query.device)
            sampling_locations = (reference_points[:, :, None, :, None, :]
                                  + sampling_offsets / normalizer[None, None, None, :, None, :])
        elif reference_points.shape[-1] == 4:
            sampling_locations = (reference_points[:, :, None, :, None, :2]
                                  + sampling_offsets / P * reference_points[:, :, None, :, None, 2:] * 0.5)
        else:
            raise ValueError(f"reference_points must end in 2 or 4 values, got shape {tuple(reference_points.shape)}")
        output = ms_deform_attn_sample(value, spatial_shapes, sampling_locations, attention_weights)
        return self.output_proj(output)
