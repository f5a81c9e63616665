from __future__ import annotations

import pytest
import torch
from torch import nn

from uninext_core.config import r50, tiny
from uninext_core.model.backbone import build_backbone
from uninext_core.model.input_proj import InputProjection
from uninext_core.model.template_crop import crop_template_with_padding
from uninext_core.model.template_encoder import FeatureFuser, TemplateEncoder
from uninext_core.ops.resize import aligned_bilinear


def test_aligned_bilinear_hand_computed_2x2_to_4x4():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    # pad -> [[0,1,1],[2,3,3],[2,3,3]]; align_corners resize to 5x5 samples at 0, .5, 1, 1.5, 2;
    # replicate-pad 1 at top/left; keep 4x4.
    expected = torch.tensor([[[[0.0, 0.0, 0.5, 1.0],
                               [0.0, 0.0, 0.5, 1.0],
                               [1.0, 1.0, 1.5, 2.0],
                               [2.0, 2.0, 2.5, 3.0]]]])
    assert torch.allclose(aligned_bilinear(x, 2), expected)


def test_aligned_bilinear_identity_and_shapes():
    x = torch.randn(2, 3, 4, 5)
    assert aligned_bilinear(x, 1) is x
    assert aligned_bilinear(x, 4).shape == (2, 3, 16, 20)
    assert torch.allclose(aligned_bilinear(torch.full((1, 1, 2, 3), 7.0), 8), torch.full((1, 1, 16, 24), 7.0))
    with pytest.raises(ValueError, match="integer"):
        aligned_bilinear(x, 1.5)


def test_feature_fuser_sums_levels_at_p3_resolution():
    fuser = FeatureFuser(d_model=2, num_levels=4)
    with torch.no_grad():
        for conv in fuser.refine:  # identity 3x3 convs
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = conv.weight[1, 1, 1, 1] = 1.0
            conv.bias.zero_()
    levels = [torch.full((1, 2, 8 // 2**i, 8 // 2**i), float(10**i)) for i in range(4)]
    out = fuser(levels)
    assert out.shape == (1, 2, 8, 8)
    assert torch.allclose(out, torch.full((1, 2, 8, 8), 1111.0))


def test_feature_fuser_rejects_non_integer_factor():
    fuser = FeatureFuser(d_model=2, num_levels=2)
    with pytest.raises(ValueError, match="integer factor"):
        fuser([torch.zeros(1, 2, 6, 6), torch.zeros(1, 2, 4, 4)])


def make_encoder(d_model: int = 256, text_dim: int = 768) -> tuple[InputProjection, TemplateEncoder]:
    torch.manual_seed(0)
    backbone = build_backbone(tiny().backbone, in_channels=4)
    input_proj = InputProjection(in_channels=backbone.out_channels, d_model=d_model)
    return input_proj, TemplateEncoder(backbone=backbone, input_proj=input_proj, d_model=d_model, text_dim=text_dim)


def test_template_encoder_gives_1024_tokens_for_256_crop():
    _, encoder = make_encoder()
    with torch.no_grad():
        features = encoder.eval()(torch.randn(2, 4, 256, 256))
    assert features.hidden.shape == (2, 1024, 768)
    assert features.mask.shape == (2, 1024) and features.mask.dtype == torch.bool and features.mask.all()


def test_template_encoder_gradient_reaches_shared_input_proj():
    input_proj, encoder = make_encoder(d_model=64, text_dim=32)
    assert encoder.input_proj is input_proj
    encoder(torch.randn(1, 4, 128, 128)).hidden.square().mean().backward()
    for block in input_proj.levels:
        assert block[0].weight.grad is not None and block[0].weight.grad.abs().sum() > 0
    stem = next(encoder.backbone.body.parameters())  # the 4-channel stem convolution
    assert stem.shape[1] == 4 and stem.grad.abs().sum() > 0


def test_shared_input_proj_is_not_duplicated_in_state_dict():
    input_proj, encoder = make_encoder(d_model=64, text_dim=32)
    parent = nn.Module()
    parent.input_proj = input_proj
    parent.template_encoder = encoder
    keys = list(parent.state_dict())
    assert not any("input_proj" in k for k in encoder.state_dict())
    assert sum(k.startswith("input_proj.") for k in keys) == 16
    assert {k.split(".")[1] for k in keys if k.startswith("template_encoder.")} == {"backbone", "sot_fuser",
                                                                                    "adjust_layer"}
    assert encoder.state_dict()["sot_fuser.refine.3.weight"].shape == (64, 64, 3, 3)
    assert encoder.state_dict()["adjust_layer.weight"].shape == (32, 64)


def test_padding_masks_p3_tokens_outside_the_image():
    _, encoder = make_encoder(d_model=64, text_dim=32)
    image = torch.randn(3, 256, 256)
    # box (0,0)-(32,32): side 64 from -16, so crop rows/cols 0..15 are outside; at size 128 the padding covers
    # rows/cols 0..32 (row 32 samples source 15.75, partly padding); P3 (16x16, nearest) samples rows 0, 8, .., 120.
    crop = crop_template_with_padding(image, box_xyxy=(0.0, 0.0, 32.0, 32.0), mask=None, size=128)
    assert crop.padding[32, 64] and not crop.padding[33, 64]
    with torch.no_grad():
        features = encoder.eval()(crop.crop[None], crop.padding[None])
    mask = features.mask.reshape(16, 16)
    assert not mask[:5, :].any() and not mask[:, :5].any()
    assert mask[5:, 5:].all()


def test_template_encoder_rejects_three_channel_backbone():
    backbone = build_backbone(tiny().backbone)
    input_proj = InputProjection(in_channels=backbone.out_channels, d_model=64)
    with pytest.raises(ValueError, match="4 input channels"):
        TemplateEncoder(backbone=backbone, input_proj=input_proj, d_model=64, text_dim=32)


def test_r50_template_branch_shapes_match_official():
    with torch.device("meta"):
        backbone = build_backbone(r50().backbone, in_channels=4)
        input_proj = InputProjection(in_channels=backbone.out_channels, d_model=256)
        encoder = TemplateEncoder(backbone=backbone, input_proj=input_proj, d_model=256, text_dim=768)
    shapes = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    assert shapes["adjust_layer.weight"] == (768, 256)
    assert all(shapes[f"sot_fuser.refine.{i}.weight"] == (256, 256, 3, 3) for i in range(4))
    assert shapes["backbone.body.conv1.weight"] == (64, 4, 7, 7)
