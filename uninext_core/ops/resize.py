"""Aligned bilinear upsampling (CondInst, Tian et al. 2020), shared by the mask head and the template fuser."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def aligned_bilinear(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample by an integer factor keeping pixel centres aligned.

    Replicate-pad one row/column at the bottom/right, bilinear (align_corners=True) to factor·size + 1, replicate-pad
    factor // 2 at the top/left, crop to factor·size. Exports to ONNX (Pad + Resize + Slice).

    Args:
        x: (B, C, H, W) float.
        factor: integer >= 1.

    Returns:
        (B, C, factor·H, factor·W).
    """
    if x.ndim != 4:
        raise ValueError(f"aligned_bilinear expects (B, C, H, W), got shape {tuple(x.shape)}")
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor}")
    factor = int(factor)
    if factor == 1:
        return x
    height, width = x.shape[2], x.shape[3]
    x = F.pad(x, (0, 1, 0, 1), mode="replicate")
    x = F.interpolate(x, size=(factor * height + 1, factor * width + 1), mode="bilinear", align_corners=True)
    x = F.pad(x, (factor // 2, 0, factor // 2, 0), mode="replicate")
    return x[:, :, : factor * height, : factor * width]
