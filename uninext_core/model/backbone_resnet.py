"""ResNet-18/50 body (torchvision layout) returning C3, C4, C5 (reference §1.5).

The official R50 is detectron2's ResNet with `STRIDE_IN_1X1: False`, i.e. the stride sits in the 3×3 conv, which is
torchvision's layout; only the module names differ (`stem.conv1` ↔ `conv1`/`bn1`, `res{2..5}` ↔ `layer{1..4}`,
`shortcut` ↔ `downsample`), which the checkpoint converter maps. Weights are never downloaded here.
"""

from __future__ import annotations

from typing import Literal

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

ResNetDepth = Literal[18, 50]
ResNetNorm = Literal["frozen_bn", "bn"]

# (C3, C4, C5) channels of the torchvision ResNets.
RESNET_OUT_CHANNELS: dict[int, tuple[int, int, int]] = {18: (128, 256, 512), 50: (512, 1024, 2048)}
# detectron2 FREEZE_AT counts the stem as stage 1 and res2..res5 as stages 2..5.
MAX_FREEZE_AT = 5


def _freeze_batch_norms(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d inside `module` by a FrozenBatchNorm2d holding the same statistics."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        with torch.no_grad():
            frozen.weight.copy_(module.weight)
            frozen.bias.copy_(module.bias)
            frozen.running_mean.copy_(module.running_mean)
            frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        replacement = _freeze_batch_norms(child)
        if replacement is not child:
            setattr(module, name, replacement)
    return module


class ResNetBody(nn.Module):
    """torchvision ResNet without its classifier; returns the outputs of layer2, layer3, layer4.

    Args:
        depth: 18 (BasicBlock) or 50 (Bottleneck).
        in_channels: image channels; 4 for the template branch (RGB + target prior).
        norm: "frozen_bn" (FrozenBatchNorm2d everywhere, the official setting) or "bn" (trainable BatchNorm2d).
        freeze_at: detectron2 FREEZE_AT: 0 freezes nothing, 1 the stem, 2 the stem and res2 (layer1), ... 5 all.
            Frozen stages get requires_grad False and, with norm "bn", frozen batch norms.
    """

    def __init__(self, *, depth: ResNetDepth, in_channels: int = 3, norm: ResNetNorm = "frozen_bn",
                 freeze_at: int = 0) -> None:
        super().__init__()
        if depth not in RESNET_OUT_CHANNELS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_OUT_CHANNELS)}, got {depth!r}")
        if norm not in ("frozen_bn", "bn"):
            raise ValueError(f"norm must be 'frozen_bn' or 'bn', got {norm!r}")
        if not 0 <= freeze_at <= MAX_FREEZE_AT:
            raise ValueError(f"freeze_at must be in [0, {MAX_FREEZE_AT}], got {freeze_at}")
        if in_channels <= 0:
            raise ValueError(f"in_channels must be positive, got {in_channels}")
        norm_layer = FrozenBatchNorm2d if norm == "frozen_bn" else nn.BatchNorm2d
        factory = torchvision.models.resnet50 if depth == 50 else torchvision.models.resnet18
        net = factory(weights=None, norm_layer=norm_layer)
        self.conv1 = net.conv1
        if in_channels != 3:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = RESNET_OUT_CHANNELS[depth]
        self.freeze_at = freeze_at
        self._freeze(freeze_at)

    def _freeze(self, freeze_at: int) -> None:
        stages: list[list[nn.Module]] = [[self.conv1, self.bn1], [self.layer1], [self.layer2], [self.layer3],
                                         [self.layer4]]
        for stage in stages[:freeze_at]:
            for module in stage:
                for parameter in module.parameters():
                    parameter.requires_grad_(False)
        if freeze_at >= 1:
            self.bn1 = _freeze_batch_norms(self.bn1)
        for index in range(1, freeze_at):
            name = f"layer{index}"
            setattr(self, name, _freeze_batch_norms(getattr(self, name)))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Args: images (B, in_channels, H, W) float. Returns [C3, C4, C5] at strides 8, 16, 32."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]
