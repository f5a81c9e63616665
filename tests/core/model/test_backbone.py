from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from uninext_core.config import BackboneConfig, convnext_l, r50, tiny, vit_h
from uninext_core.model.backbone import Backbone, build_backbone
from uninext_core.model.backbone_convnext import ChannelsFirstLayerNorm, ConvNeXtBody, linear_drop_path_rates

# The ResNet-18 body (trainable BatchNorm), tested on its own now that the tiny preset uses MobileNetV3-Large.
RESNET18 = BackboneConfig(kind="resnet18", out_channels=(128, 256, 512), norm="bn", freeze_at=0)

STATE_DICTS = Path(__file__).resolve().parents[2] / "data" / "official_state_dicts"
H, W = 96, 160  # non-square, multiple of 32


def official_shapes(tsv: str, prefix: str) -> dict[str, tuple[int, ...]]:
    """{key without prefix: shape} of the official state-dict table rows under `prefix`."""
    path = STATE_DICTS / tsv
    shapes = {}
    for line in path.read_text().splitlines():
        key, shape, _dtype = line.split("\t")
        if key.startswith(prefix):
            shapes[key[len(prefix):]] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    assert shapes, f"no key starts with {prefix}"
    return shapes


def our_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k.removeprefix("body."): tuple(v.shape) for k, v in module.state_dict().items()}


def strides_and_channels(backbone: Backbone, images: torch.Tensor) -> list[tuple[int, int, int]]:
    """(channels, stride_h, stride_w) of each output map."""
    features = backbone(images)
    assert len(features) == 3
    return [(f.shape[1], images.shape[2] // f.shape[2], images.shape[3] // f.shape[3]) for f in features]


@pytest.mark.parametrize(("cfg", "expected"), [
    (r50().backbone, (512, 1024, 2048)),
    (RESNET18, (128, 256, 512)),
    (tiny().backbone, (40, 112, 960)),
])
@pytest.mark.parametrize("in_channels", [3, 4])
def test_resnet_outputs_strides_8_16_32(cfg, expected, in_channels):
    torch.manual_seed(0)
    backbone = build_backbone(cfg, in_channels=in_channels).eval()
    with torch.no_grad():
        got = strides_and_channels(backbone, torch.randn(1, in_channels, H, W))
    assert got == [(expected[0], 8, 8), (expected[1], 16, 16), (expected[2], 32, 32)]
    assert backbone.out_channels == expected


def test_resnet50_freeze_at_2_freezes_stem_and_res2_only():
    backbone = build_backbone(r50().backbone)  # frozen_bn, freeze_at 2
    body = backbone.body
    frozen = {name for name, p in body.named_parameters() if not p.requires_grad}
    trainable = {name for name, p in body.named_parameters() if p.requires_grad}
    assert frozen == {n for n, _ in body.named_parameters() if n.startswith(("conv1.", "layer1."))}
    assert all(n.startswith(("layer2.", "layer3.", "layer4.")) for n in trainable)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    # FrozenBatchNorm2d holds its affine terms as buffers: no norm parameter is trainable.
    assert not any("bn" in n or "downsample.1" in n for n in trainable)


def test_resnet18_bn_is_trainable_and_freezing_converts_frozen_stages():
    body = build_backbone(RESNET18).body  # bn, freeze_at 0
    assert all(p.requires_grad for p in body.parameters())
    assert isinstance(body.layer1[0].bn1, nn.BatchNorm2d)
    frozen_body = build_backbone(dataclasses.replace(RESNET18, freeze_at=2)).body
    assert isinstance(frozen_body.bn1, FrozenBatchNorm2d)
    assert isinstance(frozen_body.layer1[0].bn1, FrozenBatchNorm2d)
    assert isinstance(frozen_body.layer2[0].bn1, nn.BatchNorm2d)
    assert not frozen_body.conv1.weight.requires_grad
    assert frozen_body.layer2[0].conv1.weight.requires_grad


def test_resnet_bn_training_updates_running_stats_only_in_unfrozen_stages():
    torch.manual_seed(0)
    body = build_backbone(dataclasses.replace(RESNET18, freeze_at=2)).body.train()
    before_l1 = body.layer1[0].bn1.running_mean.clone()
    before_l2 = body.layer2[0].bn1.running_mean.clone()
    body(torch.randn(2, 3, 64, 64))
    assert torch.equal(body.layer1[0].bn1.running_mean, before_l1)
    assert not torch.equal(body.layer2[0].bn1.running_mean, before_l2)


@pytest.mark.parametrize(("in_channels", "prefix"), [(3, "detr.detr.backbone.0.backbone."),
                                                     (4, "detr.detr.ref_backbone.0.backbone.")])
def test_resnet50_state_shapes_equal_official_multiset(in_channels, prefix):
    official = official_shapes("sd_vid_r50.tsv", prefix)
    ours = our_shapes(build_backbone(r50().backbone, in_channels=in_channels))
    assert Counter(ours.values()) == Counter(official.values())
    assert ours["conv1.weight"] == (64, in_channels, 7, 7)


def test_convnext_body_outputs_strides_8_16_32_reduced():
    torch.manual_seed(0)
    body = ConvNeXtBody(depths=(1, 1, 2, 1), dims=(32, 64, 96, 128), in_channels=4, drop_path=0.2).eval()
    backbone = Backbone(body=body, out_channels=body.out_channels, in_channels=4)
    with torch.no_grad():
        got = strides_and_channels(backbone, torch.randn(2, 4, H, W))
    assert got == [(64, 8, 8), (96, 16, 16), (128, 32, 32)]


def test_convnext_output_norms_normalise_channels():
    torch.manual_seed(0)
    body = ConvNeXtBody(depths=(1, 1, 1, 1), dims=(32, 64, 96, 128)).eval()
    with torch.no_grad():
        c3 = body(torch.randn(1, 3, 64, 64))[0]
    assert torch.allclose(c3.mean(dim=1), torch.zeros(1, 8, 8), atol=1e-5)
    assert torch.allclose(c3.var(dim=1, unbiased=False), torch.ones(1, 8, 8), atol=1e-3)


def test_linear_drop_path_rates():
    assert linear_drop_path_rates(0.7, 1) == [0.0]
    assert linear_drop_path_rates(0.6, 4) == pytest.approx([0.0, 0.2, 0.4, 0.6])


def as_official_convnext(backbone: Backbone) -> dict[str, tuple[int, ...]]:
    """Our ConvNeXt state shapes under the official keys: LayerNorm weight/bias and layer-scale gamma are stored
    there as nn.Embedding(1, C), i.e. key + ".weight" with shape (1, C)."""
    body = backbone.body
    embedding_like = {f"{name}.{param}" for name, module in body.named_modules()
                      if isinstance(module, nn.LayerNorm | ChannelsFirstLayerNorm) for param in ("weight", "bias")}
    shapes = {}
    for key, value in body.state_dict().items():
        if key in embedding_like or key.endswith(".gamma"):
            shapes[key + ".weight"] = (1, *value.shape)
        else:
            shapes[key] = tuple(value.shape)
    return shapes


@pytest.mark.parametrize(("in_channels", "prefix"), [(3, "detr.detr.backbone.0.backbone."),
                                                     (4, "detr.detr.ref_backbone.0.backbone.")])
def test_convnext_large_state_keys_and_shapes_match_official(in_channels, prefix):
    official = official_shapes("sd_video_joint_convnext_large.tsv", prefix)
    with torch.device("meta"):
        backbone = build_backbone(convnext_l().backbone, in_channels=in_channels)
    ours = as_official_convnext(backbone)
    assert ours == official
    assert ours["downsample_layers.0.0.weight"] == (192, in_channels, 4, 4)


def test_convnext_large_full_config_output_shapes_on_meta():
    with torch.device("meta"):
        backbone = build_backbone(convnext_l().backbone)
        features = backbone(torch.empty(1, 3, H, W))
    assert [tuple(f.shape) for f in features] == [(1, 384, 12, 20), (1, 768, 6, 10), (1, 1536, 3, 5)]


def small_vit_cfg(**changes) -> BackboneConfig:
    base = dataclasses.replace(vit_h().backbone, vit_dim=64, vit_depth=4, vit_heads=4, vit_window_size=4,
                               vit_window_blocks=(0, 2), vit_img_size=128, out_channels=(32, 64, 64),
                               drop_path=0.1)
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("in_channels", [3, 4])
def test_vit_reduced_depth_outputs_strides_8_16_32(in_channels):
    torch.manual_seed(0)
    backbone = build_backbone(small_vit_cfg(), in_channels=in_channels).eval()
    with torch.no_grad():
        got = strides_and_channels(backbone, torch.randn(2, in_channels, H, W))
    assert got == [(32, 8, 8), (64, 16, 16), (64, 32, 32)]
    blocks = backbone.body.blocks
    assert [b.window for b in blocks] == [4, 0, 4, 0]
    assert tuple(blocks[0].attn.rel_pos_h.shape) == (7, 16)  # 2 * window - 1
    assert tuple(blocks[1].attn.rel_pos_h.shape) == (15, 16)  # 2 * (128 / 16) - 1


def test_vit_trains_end_to_end():
    torch.manual_seed(0)
    backbone = build_backbone(small_vit_cfg()).train()
    loss = sum(f.square().mean() for f in backbone(torch.randn(2, 3, 64, 96)))
    loss.backward()
    body = backbone.body
    assert body.pos_embed.grad is not None and body.pos_embed.grad.abs().sum() > 0
    assert body.blocks[1].attn.rel_pos_h.grad.abs().sum() > 0
    assert body.fpn1[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("in_channels", "prefix"), [(3, "detr.detr.backbone.0.backbone."),
                                                     (4, "detr.detr.ref_backbone.0.backbone.")])
def test_vit_huge_state_keys_and_shapes_equal_official(in_channels, prefix):
    official = official_shapes("sd_video_joint_vit_huge.tsv", prefix)
    with torch.device("meta"):
        backbone = build_backbone(vit_h().backbone, in_channels=in_channels)
    ours = our_shapes(backbone)
    assert ours == official
    assert ours["blocks.0.attn.rel_pos_h"] == (27, 80)
    assert ours["blocks.2.attn.rel_pos_w"] == (127, 80)
    assert ours["fpn1.0.weight"] == (1280, 640, 2, 2)
    assert ours["patch_embed.proj.weight"] == (1280, in_channels, 16, 16)


def test_vit_huge_full_config_output_shapes_on_meta():
    with torch.device("meta"):
        backbone = build_backbone(vit_h().backbone)
        features = backbone(torch.empty(1, 3, H, W))
    assert [tuple(f.shape) for f in features] == [(1, 640, 12, 20), (1, 1280, 6, 10), (1, 1280, 3, 5)]


def test_build_backbone_rejects_bad_settings():
    with pytest.raises(ValueError, match="do not match"):
        build_backbone(dataclasses.replace(r50().backbone, out_channels=(128, 256, 512)))
    with pytest.raises(ValueError, match="freeze_at"):
        build_backbone(dataclasses.replace(convnext_l().backbone, freeze_at=2))
    with pytest.raises(ValueError, match="in_channels"):
        build_backbone(r50().backbone, in_channels=1)
