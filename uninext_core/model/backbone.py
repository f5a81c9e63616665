"""Image backbone: one interface over ResNet-18/50, ConvNeXt-L and ViT-H (reference §1.5), and MobileNetV3-Large for
the small preset.

`build_backbone(cfg)` picks the body by `cfg.kind`; every body returns [C3, C4, C5] at strides 8, 16, 32 (the stride-64
level is made by `InputProjection`). `in_channels=4` builds the template-branch copy (RGB + target prior, §2.2).
"""

from __future__ import annotations

import torch
from torch import nn

from uninext_core.config import BackboneConfig
from uninext_core.model.backbone_convnext import CONVNEXT_LARGE_DEPTHS, CONVNEXT_LARGE_DIMS, ConvNeXtBody
from uninext_core.model.backbone_mobilenet import MobileNetV3Body
from uninext_core.model.backbone_resnet import ResNetBody
from uninext_core.model.backbone_vit import ViTBody

BACKBONE_STRIDES = (8, 16, 32)


class Backbone(nn.Module):
    """A backbone body behind the [C3, C4, C5] contract.

    Args:
        body: module mapping (B, C_in, H, W) images to three maps with `out_channels` channels at strides 8, 16, 32.
        out_channels: channels of C3, C4, C5.
        in_channels: image channels the body expects (3 for frames, 4 for template crops).

    State-dict keys are the body's keys under `body.` (official: `backbone.0.backbone.` / `ref_backbone.0.backbone.`).
    """

    def __init__(self, *, body: nn.Module, out_channels: tuple[int, int, int], in_channels: int) -> None:
        super().__init__()
        self.body = body
        self.out_channels = tuple(out_channels)
        self.in_channels = in_channels
        self.strides = BACKBONE_STRIDES

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Multi-scale features.

        Args:
            images: (B, in_channels, H, W) float, normalised, H and W multiples of 32.

        Returns:
            [C3, C4, C5]: (B, out_channels[l], H / s_l, W / s_l) for s_l = 8, 16, 32.
        """
        return self.body(images)


def build_backbone(cfg: BackboneConfig, *, in_channels: int = 3) -> Backbone:
    """Backbone of kind `cfg.kind` with random weights (pretrained weights come from checkpoint loading).

    Args:
        cfg: backbone configuration; `cfg.out_channels` must equal the natural channels of `cfg.kind`.
        in_channels: 3 for the image branch, 4 for the template branch.

    Raises:
        ValueError: unknown kind, out_channels that do not match the kind, or freezing asked of a non-ResNet body.
    """
    if in_channels not in (3, 4):
        raise ValueError(f"in_channels must be 3 (image) or 4 (template crop), got {in_channels}")
    if cfg.kind not in ("resnet18", "resnet50") and cfg.freeze_at != 0:
        raise ValueError(f"freeze_at is only supported for ResNet backbones; got freeze_at={cfg.freeze_at} "
                         f"for {cfg.kind!r} (expected 0)")
    body: nn.Module
    match cfg.kind:
        case "resnet18" | "resnet50":
            body = ResNetBody(depth=18 if cfg.kind == "resnet18" else 50, in_channels=in_channels, norm=cfg.norm,
                              freeze_at=cfg.freeze_at)
        case "mobilenet_v3_large":
            if cfg.norm != "bn":
                raise ValueError(f"mobilenet_v3_large trains its BatchNorms (norm 'bn'), got norm {cfg.norm!r}")
            body = MobileNetV3Body(in_channels=in_channels)
        case "convnext_large":
            body = ConvNeXtBody(depths=CONVNEXT_LARGE_DEPTHS, dims=CONVNEXT_LARGE_DIMS, in_channels=in_channels,
                                drop_path=cfg.drop_path)
        case "vit_huge":
            body = ViTBody(in_channels=in_channels, patch_size=cfg.vit_patch_size, dim=cfg.vit_dim,
                           depth=cfg.vit_depth, num_heads=cfg.vit_heads, window_size=cfg.vit_window_size,
                           window_blocks=cfg.vit_window_blocks, img_size=cfg.vit_img_size,
                           pretrain_img_size=cfg.vit_pretrain_img_size, drop_path=cfg.drop_path)
        case _:
            raise ValueError(f"unknown backbone kind {cfg.kind!r}; expected resnet18, resnet50, mobilenet_v3_large, "
                             f"convnext_large or vit_huge")
    if tuple(cfg.out_channels) != tuple(body.out_channels):
        raise ValueError(f"out_channels {tuple(cfg.out_channels)} do not match backbone {cfg.kind!r}, "
                         f"which gives {tuple(body.out_channels)}")
    return Backbone(body=body, out_channels=body.out_channels, in_channels=in_channels)
