"""Input projection: backbone maps C3, C4, C5 -> the four d_model-wide levels of the deformable transformer.

Reference §4.1 (Deformable DETR, Zhu et al. 2021, §4.1 "multi-scale feature maps"): levels 0..2 are a 1×1 conv +
GroupNorm(32) on C3, C4, C5 (strides 8, 16, 32); level 3 (stride 64) is a 3×3 stride-2 conv + GroupNorm(32) on the
raw C5 map. The template branch (SOT/VOS) reuses this module of the main branch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

NUM_LEVELS = 4
GROUP_NORM_GROUPS = 32


class InputProjection(nn.Module):
    """Projects C3, C4, C5 to d_model channels and adds a stride-64 level made from C5.

    `self.levels[l]` is `Sequential(conv, GroupNorm)`, so state-dict keys map 1:1 onto the official
    `input_proj.{0..3}.{0,1}.*`.

    Args:
        in_channels: channels of C3, C4, C5 (e.g. (512, 1024, 2048) for ResNet-50).
        d_model: output width of every level; must be divisible by 32 (GroupNorm groups).
    """

    def __init__(self, *, in_channels: Sequence[int], d_model: int) -> None:
        super().__init__()
        in_channels = tuple(int(c) for c in in_channels)
        if len(in_channels) != 3 or any(c <= 0 for c in in_channels):
            raise ValueError(f"in_channels must be three positive ints (C3, C4, C5), got {in_channels}")
        if d_model <= 0 or d_model % GROUP_NORM_GROUPS != 0:
            raise ValueError(f"d_model must be a positive multiple of {GROUP_NORM_GROUPS} (GroupNorm), got {d_model}")
        self.in_channels = in_channels
        self.d_model = d_model
        blocks = [
            nn.Sequential(nn.Conv2d(c, d_model, kernel_size=1), nn.GroupNorm(GROUP_NORM_GROUPS, d_model))
            for c in in_channels
        ]
        blocks.append(
            nn.Sequential(
                nn.Conv2d(in_channels[-1], d_model, kernel_size=3, stride=2, padding=1),
                nn.GroupNorm(GROUP_NORM_GROUPS, d_model),
            )
        )
        self.levels = nn.ModuleList(blocks)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable-DETR init: Xavier-uniform conv weights, zero conv bias; GroupNorm (1, 0)."""
        for block in self.levels:
            conv, norm = block[0], block[1]
            nn.init.xavier_uniform_(conv.weight, gain=1.0)
            nn.init.zeros_(conv.bias)
            nn.init.ones_(norm.weight)
            nn.init.zeros_(norm.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Project the backbone maps.

        Args:
            features: [C3, C4, C5], each (B, C_l, H_l, W_l) float at strides 8, 16, 32.

        Returns:
            Four maps (B, d_model, H_l, W_l) at strides 8, 16, 32, 64; the last has H = ceil(H_C5 / 2).
        """
        if len(features) != 3:
            raise ValueError(f"expected 3 feature maps (C3, C4, C5), got {len(features)}")
        projected = [block(feature) for block, feature in zip(self.levels[:3], features, strict=True)]
        projected.append(self.levels[3](features[-1]))
        return projected
