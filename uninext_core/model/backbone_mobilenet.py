"""MobileNetV3-Large body (torchvision layout, random init) returning C3, C4, C5 — the `tiny` preset's backbone.

Why not ResNet-18: the tiny model carries two backbone copies (frames and 4-channel template crops). Two ResNet-18s are
22.4 M parameters, which alone put the shipped weights far above their 30 MB budget and cost most of the CPU frame
time; two MobileNetV3-Large bodies are 6 M parameters at about an eighth of the FLOPs (0.45 vs 3.7 GFLOPs at 320 px).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

# torchvision's mobilenet_v3_large().features: the blocks ending at stride 8, 16 and 32, and their channels.
MOBILENET_V3_LARGE_TAPS = (6, 12, 16)
MOBILENET_V3_LARGE_OUT_CHANNELS = (40, 112, 960)


class MobileNetV3Body(nn.Module):
    """torchvision MobileNetV3-Large feature blocks; outputs after blocks 6 (s8), 12 (s16) and 16 (s32).

    Args:
        in_channels: 3 for frames, 4 for template crops (the stem convolution takes the extra channel).
    """

    def __init__(self, *, in_channels: int = 3) -> None:
        super().__init__()
        features = torchvision.models.mobilenet_v3_large(weights=None).features
        if in_channels != 3:
            stem = features[0][0]
            features[0][0] = nn.Conv2d(in_channels, stem.out_channels, kernel_size=stem.kernel_size,
                                       stride=stem.stride, padding=stem.padding, bias=False)
        self.features = features[: MOBILENET_V3_LARGE_TAPS[-1] + 1]
        self.out_channels = MOBILENET_V3_LARGE_OUT_CHANNELS

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, in_channels, H, W) -> [C3, C4, C5] at strides 8, 16, 32."""
        outputs = []
        x = images
        for index, block in enumerate(self.features):
            x = block(x)
            if index in MOBILENET_V3_LARGE_TAPS:
                outputs.append(x)
        return outputs
