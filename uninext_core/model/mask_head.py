"""CondInst-style dynamic mask head (reference §5.4).

* `MaskHeadSmallConv` turns the encoder memory of the s8/s16/s32 levels into mask features at stride 8:
  s32 -> lay3+ReLU -> nearest ×2 + s16 -> lay4+ReLU -> nearest ×2 + s8 -> jia_dcn+ReLU -> lay1+ReLU -> lay2+ReLU.
* `controller` (an MLP in the assembly) gives each query the parameters of three dynamic 1×1 convolutions
  (C_f + 2) -> D -> D -> 1 (ReLU between), laid out [w0, w1, w2, b0, b1, b2], each weight row-major (out, in).
* Inputs of the first dynamic layer are [rel_x, rel_y, feature_0..C_f-1], where rel = reference centre − location, both
  in pixels of the resized un-padded image, locations = 8·(i, j) + 4 (not normalised).
* Logits at stride 8 are upsampled ×2 to stride 4 with CondInst "aligned bilinear".

The dynamic convolutions are written as batched matmuls over a fixed set of queries, so they export to ONNX.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from uninext_core.model.outputs import RawOutputs
from uninext_core.ops.resize import aligned_bilinear

MASK_FEATURE_STRIDE = 8


def dynamic_param_count(*, in_channels: int, channels: int, num_layers: int) -> int:
    """Parameters per query: weights (C_f+2)·D + D·D·(n−2) + D, biases D·(n−1) + 1 (169 for 8, 8, 3)."""
    if num_layers < 2:
        raise ValueError(f"the dynamic mask head needs at least 2 layers, got {num_layers}")
    weights = (in_channels + 2) * channels + channels * channels * (num_layers - 2) + channels
    biases = channels * (num_layers - 1) + 1
    return weights + biases


def _layer_shapes(in_channels: int, channels: int, num_layers: int) -> list[tuple[int, int]]:
    shapes = []
    for layer in range(num_layers):
        c_in = in_channels + 2 if layer == 0 else channels
        c_out = 1 if layer == num_layers - 1 else channels
        shapes.append((c_out, c_in))
    return shapes


def mask_locations(height: int, width: int, *, stride: int = MASK_FEATURE_STRIDE,
                   device: torch.device | None = None) -> torch.Tensor:
    """(H·W, 2) pixel (x, y) of each feature cell: stride·index + stride // 2, row-major."""
    ys = torch.arange(height, dtype=torch.float32, device=device) * stride
    xs = torch.arange(width, dtype=torch.float32, device=device) * stride
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1) + stride // 2


def dynamic_mask_logits(mask_features: torch.Tensor, params: torch.Tensor, reference_px: torch.Tensor, *,
                        channels: int = 8, num_layers: int = 3, out_stride: int = 4) -> torch.Tensor:
    """Run each query's dynamic 1×1 convolutions over the shared mask features.

    Args:
        mask_features: (B, C_f, H8, W8) stride-8 features.
        params: (B, K, P) dynamic parameters of K queries (P = dynamic_param_count).
        reference_px: (B, K, 2) (x, y) centres in pixels of the resized un-padded image.
        channels: D, hidden width of the dynamic convs (8).
        num_layers: dynamic layers (3).
        out_stride: output stride (4): logits are upsampled by 8 // out_stride.

    Returns:
        (B, K, H8 · 8/out_stride, W8 · 8/out_stride) mask logits.
    """
    B, C_f, H, W = mask_features.shape
    K = params.shape[1]
    expected = dynamic_param_count(in_channels=C_f, channels=channels, num_layers=num_layers)
    if params.shape[-1] != expected:
        raise ValueError(f"expected {expected} dynamic parameters per query, got {params.shape[-1]}")
    if MASK_FEATURE_STRIDE % out_stride:
        raise ValueError(f"out_stride must divide {MASK_FEATURE_STRIDE}, got {out_stride}")
    shapes = _layer_shapes(C_f, channels, num_layers)
    sizes = [o * i for o, i in shapes] + [o for o, _ in shapes]
    pieces = params.split(sizes, dim=-1)
    weights = [p.reshape(B, K, o, i) for p, (o, i) in zip(pieces[:num_layers], shapes, strict=True)]
    biases = pieces[num_layers:]

    locations = mask_locations(H, W, device=mask_features.device)  # (H·W, 2)
    relative = (reference_px[:, :, None, :] - locations[None, None]).transpose(-1, -2)  # (B, K, 2, H·W)
    features = mask_features.reshape(B, 1, C_f, H * W).expand(B, K, C_f, H * W)
    x = torch.cat([relative.to(features.dtype), features], dim=2)  # (B, K, C_f + 2, H·W)
    for layer, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
        x = torch.matmul(weight, x) + bias[..., None]  # (B, K, out, H·W)
        if layer < num_layers - 1:
            x = F.relu(x)
    logits = x.reshape(B * K, 1, H, W)
    logits = aligned_bilinear(logits, MASK_FEATURE_STRIDE // out_stride)
    return logits.reshape(B, K, logits.shape[-2], logits.shape[-1])


def masks_for_queries(raw: RawOutputs, query_idx: torch.Tensor, *, channels: int = 8, num_layers: int = 3,
                      out_stride: int = 4) -> torch.Tensor:
    """Mask logits of chosen queries, computed outside the network graph (shared by every backend).

    Args:
        raw: network outputs (uses mask_params, mask_features, mask_reference_px).
        query_idx: (B, K) int64 query indices per image (e.g. the top-K after scoring).
        channels, num_layers, out_stride: dynamic head layout (official 8, 3, 4).

    Returns:
        (B, K, H/4, W/4) mask logits at stride 4 of the padded input (crop to the valid region, then resize).
    """
    if query_idx.dim() != 2 or query_idx.shape[0] != raw.mask_params.shape[0]:
        raise ValueError(f"query_idx must be (B, K) with B = {raw.mask_params.shape[0]}, "
                         f"got {tuple(query_idx.shape)}")
    index = query_idx.long()
    params = torch.gather(raw.mask_params, 1, index[..., None].expand(-1, -1, raw.mask_params.shape[-1]))
    reference = torch.gather(raw.mask_reference_px, 1, index[..., None].expand(-1, -1, 2))
    return dynamic_mask_logits(raw.mask_features, params, reference, channels=channels, num_layers=num_layers,
                               out_stride=out_stride)


class MaskHeadSmallConv(nn.Module):
    """Mask-feature branch on the encoder memory (official `MaskHeadSmallConv`, same parameter names).

    Args:
        d_model: C, memory width.
        mid_dim: lay1 output width (C / 4 = 64 official).
        out_dim: C_f, mask feature width (8 official).
    """

    def __init__(self, *, d_model: int, mid_dim: int, out_dim: int) -> None:
        super().__init__()
        self.lay3 = nn.Conv2d(d_model, d_model, 3, padding=1)
        self.lay4 = nn.Conv2d(d_model, d_model, 3, padding=1)
        self.jia_dcn = nn.Conv2d(d_model, d_model, 3, padding=1)
        self.lay1 = nn.Conv2d(d_model, mid_dim, 3, padding=1)
        self.lay2 = nn.Conv2d(mid_dim, out_dim, 3, padding=1)
        for conv in (self.lay3, self.lay4, self.jia_dcn, self.lay1, self.lay2):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fuse top-down and reduce.

        Args:
            maps: [s8, s16, s32] encoder memory as maps, each (B, C, H_l, W_l).

        Returns:
            (B, C_f, H_s8, W_s8) mask features.
        """
        if len(maps) != 3:
            raise ValueError(f"expected 3 maps (s8, s16, s32), got {len(maps)}")
        s8, s16, s32 = maps
        x = F.relu(self.lay3(s32))
        x = s16 + F.interpolate(x, size=s16.shape[-2:], mode="nearest")
        x = F.relu(self.lay4(x))
        x = s8 + F.interpolate(x, size=s8.shape[-2:], mode="nearest")
        x = F.relu(self.jia_dcn(x))
        x = F.relu(self.lay1(x))
        return F.relu(self.lay2(x))
