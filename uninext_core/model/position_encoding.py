"""Sine position embeddings (DETR / Deformable DETR, reference §4.1 and §4.5).

Two forms, both with the interleaved (sin, cos) layout of the official code:

* `sine_position_embedding_2d`: for feature maps with a padding mask. Coordinates are the cumulative count of valid
  cells along each axis, shifted by -0.5 and normalised by the valid extent, times 2π (normalize=True); channels are
  [pos_y (F), pos_x (F)].
* `sine_box_embedding`: for reference points or boxes in [0, 1], one F-wide block per coordinate, times 2π, with the
  first two blocks exchanged (x, y, w, h) -> [pos_y, pos_x, pos_w, pos_h] (DINO / detrex `exchange_xy`).

For frequency index i in [0, F): dim_t[i] = temperature ** (2 * floor(i / 2) / F); channel i = sin(p / dim_t[i]) for
even i and cos(p / dim_t[i]) for odd i.
"""

from __future__ import annotations

import math

import torch

DEFAULT_TEMPERATURE = 10000.0
NORMALIZE_EPS = 1e-6


def _frequencies(num_pos_feats: int, temperature: float, device: torch.device) -> torch.Tensor:
    index = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    return temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / num_pos_feats)


def _interleave_sin_cos(angles: torch.Tensor) -> torch.Tensor:
    """(..., F) angles -> (..., F) with sin on even and cos on odd channels."""
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


def sine_position_embedding_2d(
    padding_mask: torch.Tensor,
    *,
    num_pos_feats: int,
    temperature: float = DEFAULT_TEMPERATURE,
    normalize: bool = True,
    scale: float = 2 * math.pi,
) -> torch.Tensor:
    """2-D sine embedding of a (padded) feature map.

    Args:
        padding_mask: (B, H, W) bool, True on padding cells.
        num_pos_feats: F, channels per axis (d_model / 2); must be even.
        temperature: frequency base (10000).
        normalize: divide the cumulative coordinate by the valid extent (+1e-6) and multiply by `scale`.
        scale: 2π in UNINEXT.

    Returns:
        (B, 2F, H, W) float32, channels [pos_y, pos_x].
    """
    if num_pos_feats <= 0 or num_pos_feats % 2:
        raise ValueError(f"num_pos_feats must be a positive even number, got {num_pos_feats}")
    not_mask = (~padding_mask).to(torch.float32)
    y_embed = not_mask.cumsum(1)
    x_embed = not_mask.cumsum(2)
    if normalize:
        y_embed = (y_embed - 0.5) / (y_embed[:, -1:, :] + NORMALIZE_EPS) * scale
        x_embed = (x_embed - 0.5) / (x_embed[:, :, -1:] + NORMALIZE_EPS) * scale
    dim_t = _frequencies(num_pos_feats, temperature, padding_mask.device)
    pos_x = _interleave_sin_cos(x_embed[..., None] / dim_t)  # (B, H, W, F)
    pos_y = _interleave_sin_cos(y_embed[..., None] / dim_t)
    return torch.cat((pos_y, pos_x), dim=-1).permute(0, 3, 1, 2)


def sine_box_embedding(
    positions: torch.Tensor,
    *,
    num_pos_feats: int,
    temperature: float = DEFAULT_TEMPERATURE,
    exchange_xy: bool = True,
) -> torch.Tensor:
    """Sine embedding of points (x, y) or boxes (cx, cy, w, h) in [0, 1] (DINO query positions, reference §4.5).

    Args:
        positions: (..., N) with N in {2, 4}, values normalised to [0, 1].
        num_pos_feats: F, channels per coordinate (d_model / 2 for the decoder's ref_point_head); must be even.
        temperature: frequency base (10000).
        exchange_xy: put the y block before the x block (official behaviour).

    Returns:
        (..., N * F) float32; for boxes the blocks are [y, x, w, h] when exchange_xy.
    """
    if num_pos_feats <= 0 or num_pos_feats % 2:
        raise ValueError(f"num_pos_feats must be a positive even number, got {num_pos_feats}")
    dim_t = _frequencies(num_pos_feats, temperature, positions.device)
    angles = positions[..., None].to(torch.float32) * (2 * math.pi) / dim_t  # (..., N, F)
    blocks = list(_interleave_sin_cos(angles).unbind(-2))
    if exchange_xy:
        blocks[0], blocks[1] = blocks[1], blocks[0]
    return torch.cat(blocks, dim=-1)
