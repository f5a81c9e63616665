"""ConvNeXt body returning C3, C4, C5 (Liu et al. 2022, "A ConvNet for the 2020s"; reference §1.5).

Module names follow the official checkpoint (`downsample_layers.{i}.{j}`, `stages.{s}.{b}.{dwconv,norm,pwconv1,
pwconv2,gamma}`, `norm{1,2,3}`). The official UNINEXT copy stores every LayerNorm weight/bias and the layer-scale
gamma as `nn.Embedding(1, C)` (keys ending `.weight.weight`, `.bias.weight`, `gamma.weight`, shape (1, C)); here they
are plain (C,) parameters and the checkpoint converter reshapes them (reference §12 item 9).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

CONVNEXT_LARGE_DEPTHS = (3, 3, 27, 3)
CONVNEXT_LARGE_DIMS = (192, 384, 768, 1536)
LAYER_NORM_EPS = 1e-6
LAYER_SCALE_INIT = 1e-6


def linear_drop_path_rates(max_rate: float, count: int) -> list[float]:
    """Stochastic-depth rates growing linearly from 0 to `max_rate` over `count` blocks (plain floats, so a model
    can be built on the meta device)."""
    if count == 1:
        return [0.0]
    return [max_rate * i / (count - 1) for i in range(count)]


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) map (ConvNeXt downsampling and output norms).

    Args:
        num_channels: C.
        eps: variance epsilon (1e-6 in ConvNeXt).
    """

    def __init__(self, num_channels: int, *, eps: float = LAYER_NORM_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W), each pixel's C values normalised then scaled/shifted."""
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """dwconv 7×7 → LayerNorm → Linear(C, 4C) → GELU → Linear(4C, C) → layer-scale γ → stochastic depth → + input.

    Args:
        dim: channels C.
        drop_path: stochastic-depth probability of this block (row mode: whole samples dropped).
    """

    def __init__(self, *, dim: int, drop_path: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))
        self.drop_path = StochasticDepth(drop_path, mode="row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        residual = x
        x = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        x = (self.gamma * x).permute(0, 3, 1, 2)  # (B, C, H, W)
        return residual + self.drop_path(x)


class ConvNeXtBody(nn.Module):
    """ConvNeXt with output norms on stages 1..3 (strides 8, 16, 32).

    Args:
        depths: blocks per stage (ConvNeXt-L: 3, 3, 27, 3).
        dims: channels per stage (ConvNeXt-L: 192, 384, 768, 1536).
        in_channels: image channels; 4 for the template branch.
        drop_path: stochastic-depth rate of the last block; rates grow linearly from 0 over all blocks.
    """

    def __init__(self, *, depths: Sequence[int] = CONVNEXT_LARGE_DEPTHS, dims: Sequence[int] = CONVNEXT_LARGE_DIMS,
                 in_channels: int = 3, drop_path: float = 0.0) -> None:
        super().__init__()
        depths, dims = tuple(depths), tuple(dims)
        if len(depths) != 4 or len(dims) != 4 or min(depths) < 1 or min(dims) < 1:
            raise ValueError(f"ConvNeXt needs 4 positive depths and dims, got depths={depths}, dims={dims}")
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        stem = nn.Sequential(nn.Conv2d(in_channels, dims[0], kernel_size=4, stride=4), ChannelsFirstLayerNorm(dims[0]))
        downsample = [nn.Sequential(ChannelsFirstLayerNorm(dims[i - 1]), nn.Conv2d(dims[i - 1], dims[i], 2, stride=2))
                      for i in range(1, 4)]
        self.downsample_layers = nn.ModuleList([stem, *downsample])
        rates = linear_drop_path_rates(drop_path, sum(depths))
        stages = []
        for stage, depth in enumerate(depths):
            first = sum(depths[:stage])
            stages.append(nn.Sequential(*[ConvNeXtBlock(dim=dims[stage], drop_path=rates[first + b])
                                          for b in range(depth)]))
        self.stages = nn.ModuleList(stages)
        self.norm1 = ChannelsFirstLayerNorm(dims[1])
        self.norm2 = ChannelsFirstLayerNorm(dims[2])
        self.norm3 = ChannelsFirstLayerNorm(dims[3])
        self.out_channels = (dims[1], dims[2], dims[3])
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # ConvNeXt init: truncated normal (std 0.02) conv/linear weights, zero biases.
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Args: images (B, in_channels, H, W) float, H and W multiples of 32. Returns [C3, C4, C5]."""
        x = images
        outputs = []
        norms = (None, self.norm1, self.norm2, self.norm3)
        for downsample, stage, norm in zip(self.downsample_layers, self.stages, norms, strict=True):
            x = stage(downsample(x))
            if norm is not None:
                outputs.append(norm(x))
        return outputs
