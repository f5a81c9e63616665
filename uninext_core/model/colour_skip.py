"""Colour skip: the mean input colour of each feature cell, projected and added to every level (`tiny` only).

No official counterpart (reference §4: the official levels are the backbone maps through `input_proj` alone). Why
the `tiny` preset has it: its MobileNetV3 backbone is trained from scratch on the synthetic world, and stage 1
prompts name only shape kinds, so the backbone learns to drop colour. Probes on the shipped model found colour at
chance in the query features (MODEL.md, "Why REC is below its target"), and asking it to pick the right colour among
the 8 "<colour> <kind>" phrases of an object gave 0.097 (chance 0.125). Phrase-grounding training brought that
only to 0.29-0.31 over 2,600 CPU steps. The official presets start from an ImageNet-pretrained backbone that
already sees colour, so they keep `backbone.colour_skip` false.

Per level l (strides 8, 16, 32, 64): the normalised image is average-pooled to the level's grid (8×8 cells, then
2×2 cells with `ceil_mode`, which gives the same ceil(H/2) size as the stride-64 level's stride-2 convolution), and
a 1×1 convolution (3 -> d_model, zero-initialised) adds it to the projected map. Zero initialisation makes a model
with an untrained skip compute exactly what it computed without one, so training can continue from weights that
predate it. The ONNX graph gains AveragePool nodes, which TensorRT supports.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

FIRST_STRIDE = 8


class ColourSkip(nn.Module):
    """Adds a learned projection of each cell's mean colour to every projected feature level.

    Args:
        d_model: channels of the projected levels.
        num_levels: how many levels (strides 8, 16, 32, ... doubling).
    """

    def __init__(self, *, d_model: int, num_levels: int) -> None:
        super().__init__()
        if d_model <= 0 or num_levels <= 0:
            raise ValueError(f"d_model and num_levels must be positive, got {d_model} and {num_levels}")
        self.proj = nn.ModuleList(nn.Conv2d(3, d_model, kernel_size=1) for _ in range(num_levels))
        for conv in self.proj:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, images: torch.Tensor, levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Add the colour term to each level.

        Args:
            images: (B, 3, H, W) normalised images, H and W multiples of 8 (the model pads to 32).
            levels: the projected maps (B, d_model, H_l, W_l) at strides 8, 16, 32, 64.

        Returns:
            The maps with the colour term added, same shapes.

        Raises:
            ValueError: a level count or a level size that does not follow the stride pyramid.
        """
        if len(levels) != len(self.proj):
            raise ValueError(f"expected {len(self.proj)} levels, got {len(levels)}")
        pooled = F.avg_pool2d(images, kernel_size=FIRST_STRIDE, stride=FIRST_STRIDE)
        out = []
        for index, (level, conv) in enumerate(zip(levels, self.proj, strict=True)):
            if index:
                pooled = F.avg_pool2d(pooled, kernel_size=2, stride=2, ceil_mode=True)
            if pooled.shape[-2:] != level.shape[-2:]:
                raise ValueError(f"level {index} is {tuple(level.shape[-2:])}, but the image pools to "
                                 f"{tuple(pooled.shape[-2:])} at stride {FIRST_STRIDE * 2 ** index}")
            out.append(level + conv(pooled.to(level.dtype)))
        return out
