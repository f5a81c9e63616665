"""Conversion of synthetic official checkpoints (exact keys, shapes and dtypes of the tables, random values) into our
models, and outputs of converted parts against the same official tensors used by hand."""

from __future__ import annotations

import contextlib
import ctypes
import re

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from uninext_core.checkpoint import (
    convert_official_checkpoint,
    convert_state_dict,
    expected_state_dict,
    from_official,
    official_config,
    read_official_checkpoint,
)
from uninext_core.checkpoint.convert import read_text_encoder_folder
from uninext_core.checkpoint.official_keys import MAIN_BACKBONE_PREFIX, TEMPLATE_BACKBONE_PREFIX
from uninext_core.model.backbone_convnext import CONVNEXT_LARGE_DIMS, ConvNeXtBody
from uninext_core.model.build import build_model

FUSION = "detr.detr.transformer.encoder.vl_layers.0.b_attn."


@pytest.fixture(scope="module")
def r50_video(r50_checkpoint):
    """(official tensors, our model converted from them by from_official) for the synthetic R50 video checkpoint."""
    torch.manual_seed(0)
    path = r50_checkpoint(True)
    return read_official_checkpoint(path), from_official(path, preset="r50", video=True)


def test_r50_video_checkpoint_loads_every_official_tensor(r50_checkpoint, r50_video):
    official, model = r50_video
    conversion = convert_official_checkpoint(r50_checkpoint(True), preset="r50")  # variant detected: video
    report = conversion.report
    assert conversion.config.video and report.ok
    assert (report.missing, report.unexpected, report.mismatches, report.alias_mismatches) == ([], [], [], [])
    assert (len(report.mapped), len(report.aliases), len(report.skipped)) == (1173, 74, 2)
    result = model.load_state_dict(conversion.state_dict, strict=True)
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    ours = model.state_dict()
    assert len(ours) == 1173
    for official_key, our_key in report.mapped.items():
        assert torch.equal(ours[our_key], official[official_key]), official_key
    assert not model.training


def test_r50_image_checkpoint_loads_with_no_missing_or_unexpected_keys(r50_checkpoint):
    path = r50_checkpoint(False)
    conversion = convert_official_checkpoint(path, preset="r50", video=False)
    report = conversion.report
    assert (report.missing, report.unexpected, report.mismatches) == ([], [], [])
    assert (len(report.mapped), len(report.aliases), len(report.skipped)) == (844, 74, 2)
    model = build_model(conversion.config, allow_random_text_init=True)
    result = model.load_state_dict(conversion.state_dict, strict=True)
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    official = read_official_checkpoint(path)
    ours = model.state_dict()
    for official_key, our_key in report.mapped.items():
        assert torch.equal(ours[our_key], official[official_key]), official_key


def torchvision_resnet50_by_hand(official: dict[str, torch.Tensor], prefix: str, in_channels: int) -> nn.Module:
    """torchvision ResNet-50 (FrozenBN) with the detectron2-named official tensors copied in one by one."""
    net = torchvision.models.resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    used = set()

    def copy(target: torch.Tensor, key: str) -> None:
        target.copy_(official[prefix + key])
        used.add(prefix + key)

    def copy_norm(norm: nn.Module, conv_key: str) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            copy(getattr(norm, name), f"{conv_key}.norm.{name}")

    with torch.no_grad():
        copy(net.conv1.weight, "stem.conv1.weight")
        copy_norm(net.bn1, "stem.conv1")
        for stage, layer in zip((2, 3, 4, 5), (net.layer1, net.layer2, net.layer3, net.layer4), strict=True):
            for index, block in enumerate(layer):
                name = f"res{stage}.{index}"
                for k, (conv, norm) in enumerate([(block.conv1, block.bn1), (block.conv2, block.bn2),
                                                  (block.conv3, block.bn3)], start=1):
                    copy(conv.weight, f"{name}.conv{k}.weight")
                    copy_norm(norm, f"{name}.conv{k}")
                if block.downsample is not None:
                    copy(block.downsample[0].weight, f"{name}.shortcut.weight")
                    copy_norm(block.downsample[1], f"{name}.shortcut")
    assert used == {k for k in official if k.startswith(prefix)}  # every official backbone tensor placed by hand
    return net.eval()


@pytest.mark.parametrize(("prefix", "in_channels"), [(MAIN_BACKBONE_PREFIX, 3), (TEMPLATE_BACKBONE_PREFIX, 4)])
def test_converted_r50_backbones_equal_torchvision_resnet50_loaded_by_hand(r50_video, prefix: str,
                                                                          in_channels: int):
    official, model = r50_video
    reference = torchvision_resnet50_by_hand(official, prefix, in_channels)
    ours = model.backbone if in_channels == 3 else model.template_encoder.backbone
    images = torch.randn(1, in_channels, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(images))))
        c2 = reference.layer1(x)
        expected = [reference.layer2(c2)]
        expected.append(reference.layer3(expected[0]))
        expected.append(reference.layer4(expected[1]))
        got = ours(images)
    for level, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.shape == b.shape == (1, (512, 1024, 2048)[level], 64 // 2 ** (level + 3), 96 // 2 ** (level + 3))
        assert b.abs().max() > 1e-3  # a meaningful, non-degenerate comparison
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def bi_xatt_by_hand(official: dict[str, torch.Tensor], visual: torch.Tensor, prompt: torch.Tensor,
                    valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GLIP BiAttentionBlock (reference §3) written out with the official tensors: 8 heads of 256 in 2048."""

    def w(name: str) -> torch.Tensor:
        return official[FUSION + name]

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return x @ w(f"attn.{name}.weight").T + w(f"attn.{name}.bias")

    def heads(x: torch.Tensor) -> torch.Tensor:  # (B, N, 2048) -> (B, 8, N, 256)
        return x.reshape(x.shape[0], x.shape[1], 8, 256).transpose(1, 2)

    v = F.layer_norm(visual, (256,), w("layer_norm_v.weight"), w("layer_norm_v.bias"), eps=1e-5)
    l = F.layer_norm(prompt, (768,), w("layer_norm_l.weight"), w("layer_norm_l.bias"), eps=1e-5)  # noqa: E741
    query = heads(linear(v, "v_proj") * 256**-0.5)
    key, value_v, value_l = heads(linear(l, "l_proj")), heads(linear(v, "values_v_proj")), heads(linear(l,
                                                                                                  "values_l_proj"))
    scores = (query @ key.transpose(-1, -2)).clamp(-50000, 50000)  # (B, 8, S, T)
    scores_l = scores.transpose(-1, -2)
    scores_l = (scores_l - scores_l.max(dim=-1, keepdim=True).values).clamp(-50000, 50000)
    glip_mask = torch.where(valid, 1.0, -9e15)[:, None, None, :]  # GLIP adds +1 on valid, -9e15 on padded tokens
    attended_v = (scores + glip_mask).softmax(-1) @ value_l  # (B, 8, S, 256)
    attended_l = scores_l.softmax(-1) @ value_v  # (B, 8, T, 256)
    delta_v = linear(attended_v.transpose(1, 2).reshape(v.shape[0], -1, 2048), "out_v_proj")
    delta_l = linear(attended_l.transpose(1, 2).reshape(l.shape[0], -1, 2048), "out_l_proj")
    return v + w("gamma_v") * delta_v, l + w("gamma_l") * delta_l


def test_converted_fusion_block_equals_the_direct_formula(r50_video):
    official, model = r50_video
    generator = torch.Generator().manual_seed(4)
    visual, prompt = torch.randn(2, 40, 256, generator=generator), torch.randn(2, 12, 768, generator=generator)
    valid = torch.arange(12)[None] < torch.tensor([[12], [7]])
    with torch.no_grad():
        got = model.transformer.fusion(visual, prompt, valid)
        expected_v, expected_l = bi_xatt_by_hand(official, visual, prompt, valid)
    assert expected_v.abs().max() > 1e-2 and expected_l.abs().max() > 1e-2
    torch.testing.assert_close(got.visual, expected_v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.prompt, expected_l, rtol=1e-5, atol=1e-5)


def convnext_by_hand(official: dict[str, torch.Tensor], images: torch.Tensor) -> list[torch.Tensor]:
    """ConvNeXt with one block per stage, written with the official names and (1, C) Embedding-shaped tensors."""

    def g(name: str) -> torch.Tensor:
        return official[MAIN_BACKBONE_PREFIX + name]

    def norm_channels_first(x: torch.Tensor, name: str) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), g(f"{name}.weight.weight")[0],
                         g(f"{name}.bias.weight")[0], eps=1e-6)
        return y.permute(0, 3, 1, 2)

    x = norm_channels_first(F.conv2d(images, g("downsample_layers.0.0.weight"), g("downsample_layers.0.0.bias"),
                                     stride=4), "downsample_layers.0.1")
    outputs = []
    for stage, dim in enumerate(CONVNEXT_LARGE_DIMS):
        if stage > 0:
            x = F.conv2d(norm_channels_first(x, f"downsample_layers.{stage}.0"),
                         g(f"downsample_layers.{stage}.1.weight"), g(f"downsample_layers.{stage}.1.bias"), stride=2)
        block = f"stages.{stage}.0."
        y = F.conv2d(x, g(block + "dwconv.weight"), g(block + "dwconv.bias"), padding=3, groups=dim)
        y = F.layer_norm(y.permute(0, 2, 3, 1), (dim,), g(block + "norm.weight.weight")[0],
                         g(block + "norm.bias.weight")[0], eps=1e-6)
        y = F.linear(F.gelu(F.linear(y, g(block + "pwconv1.weight"), g(block + "pwconv1.bias"))),
                     g(block + "pwconv2.weight"), g(block + "pwconv2.bias"))
        x = x + (g(block + "gamma.weight")[0] * y).permute(0, 3, 1, 2)
        if stage > 0:
            outputs.append(norm_channels_first(x, f"norm{stage}"))
    return outputs


def test_converted_convnext_equals_hand_computation_with_embedding_shaped_norms(tables):
    """The ConvNeXt-L table's main-backbone rows for the first block of each stage (the other 34 blocks left out
    to stay small), converted onto a one-block-per-stage ConvNeXtBody of the ConvNeXt-L widths."""
    first_blocks = [row for row in tables.read_table("sd_video_joint_convnext_large.tsv")
                    if row.key.startswith(MAIN_BACKBONE_PREFIX)
                    and not re.search(r"\.stages\.\d\.[1-9]\d*\.", row.key)]
    official = tables.synthetic_state_dict(first_blocks, seed=5)
    body = ConvNeXtBody(depths=(1, 1, 1, 1), dims=CONVNEXT_LARGE_DIMS).eval()
    expected = {"backbone.body." + k: v for k, v in body.state_dict().items()}
    conversion = convert_state_dict(official, expected=expected, config=official_config("convnext_l", video=False),
                                    source="convnext rows")
    assert conversion.report.ok, conversion.report.error_message()
    assert len(conversion.report.reshaped) == 8 + 4 * 3 + 3 * 2  # stem/downsample norms, block norm+gamma, outputs
    body.load_state_dict({k.removeprefix("backbone.body."): v for k, v in conversion.state_dict.items()}, strict=True)
    images = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        got, expected_maps = body(images), convnext_by_hand(official, images)
    for a, b in zip(got, expected_maps, strict=True):
        assert b.abs().max() > 1e-2
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_text_encoder_weights_come_from_a_local_bert_folder_when_the_checkpoint_has_none(tables, tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(7)
    folder = tmp_path / "bert-base-uncased"
    BertModel(BertConfig(), add_pooling_layer=False).save_pretrained(folder)
    rows = [r for r in tables.official_rows("r50", video=False) if not r.key.startswith("text_encoder.")]
    official = tables.synthetic_state_dict(rows, meta=True)
    config = official_config("r50", video=False)
    expected = expected_state_dict(config)

    without = convert_state_dict(official, expected=expected, config=config, source="no-bert.pth").report
    assert len(without.missing) == 197 and all(k.startswith("text_encoder.model.") for k in without.missing)
    assert "text_encoder.model.embeddings.word_embeddings.weight" in without.error_message()

    bert = read_text_encoder_folder(folder)
    conversion = convert_state_dict(official, expected=expected, config=config, source="no-bert.pth",
                                    text_encoder_weights=bert, text_encoder_source=f"folder {folder}")
    assert conversion.report.ok and conversion.report.text_encoder == f"folder {folder}"
    key = "text_encoder.model.encoder.layer.11.output.dense.weight"
    assert torch.equal(conversion.state_dict[key], bert[key])


def test_alias_copies_that_differ_are_reported_and_the_top_level_copy_is_used(tables):
    official = tables.synthetic_state_dict(tables.official_rows("r50", video=False), meta=True)
    canonical = torch.randn(256, 256)
    official["detr.detr.bbox_embed.2.layers.0.weight"] = canonical
    official["detr.detr.transformer.decoder.bbox_embed.2.layers.0.weight"] = canonical + 1.0
    half = torch.zeros(1, dtype=torch.float16)  # fp16 tensors are cast to our float32
    for prefix in ("detr.detr.", "detr.detr.transformer.decoder."):
        official[prefix + "class_embed.6.body.bias"] = half
    official["text_encoder.body.model.embeddings.position_ids"] = torch.arange(512)[None].flip(-1)
    config = official_config("r50", video=False)
    conversion = convert_state_dict(official, expected=expected_state_dict(config), config=config, source="x.pth")
    report = conversion.report
    assert report.ok  # aliases, casts and a non-standard position_ids are warnings, not errors
    assert report.alias_mismatches == ["detr.detr.transformer.decoder.bbox_embed.2.layers.0.weight"]
    assert conversion.state_dict["bbox_embed.2.layers.0.weight"] is canonical
    assert [c.official for c in report.cast] == ["detr.detr.class_embed.6.body.bias"]
    assert conversion.state_dict["class_embed.6.body.bias"].dtype == torch.float32
    assert len(report.warnings) == 2 and "position_ids" in report.warnings[0]


def test_only_official_presets_convert():
    with pytest.raises(ValueError, match=r"preset 'tiny' has no official checkpoint.*'r50', 'convnext_l', 'vit_h'"):
        official_config("tiny", video=True)


def release_freed_heap_memory() -> None:
    """Give freed heap pages back to the OS (glibc malloc_trim; tensors of a few MB come from the heap)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@pytest.mark.slow
def test_convnext_l_video_checkpoint_with_real_values_loads_and_matches(tables, tmp_path):
    """ConvNeXt-L video: 540 M parameters, 2.2 GB per copy. The synthetic checkpoint is written and freed, read
    memory-mapped into a model built on the CPU, and the expected values are regenerated one tensor at a time, so the
    peak is about two copies."""
    rows = tables.official_rows("convnext_l", video=True)
    path = tables.save_checkpoint(tmp_path / "video_joint_convnext_large.pth",
                                  tables.synthetic_state_dict(rows, seed=8))
    release_freed_heap_memory()
    conversion = convert_official_checkpoint(path, preset="convnext_l", video=True)
    report = conversion.report
    assert (report.missing, report.unexpected, report.mismatches) == ([], [], [])
    assert (len(report.mapped), len(report.reshaped)) == (1335, 244)
    model = build_model(conversion.config, allow_random_text_init=True)
    result = model.load_state_dict(conversion.state_dict, strict=True)
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    del conversion
    ours, compared = model.state_dict(), 0
    for official_key, tensor in tables.synthetic_tensors(rows, seed=8):
        if official_key in report.mapped:
            embedding_shaped = official_key.endswith((".weight.weight", ".bias.weight", "gamma.weight"))
            assert torch.equal(ours[report.mapped[official_key]], tensor[0] if embedding_shaped else tensor)
            compared += 1
    assert compared == 1335


@pytest.mark.slow
def test_vit_h_video_checkpoint_with_real_values_loads_into_a_meta_built_model(tables, tmp_path):
    """ViT-H video: 1.42 G parameters, a 5.7 GB file (a zip64 archive, as the released checkpoint must be). To stay
    near one copy in memory on a shared machine, the model is built on the meta device and takes the converted
    (memory-mapped) tensors by assignment, and the expected values are regenerated one tensor at a time."""
    rows = tables.official_rows("vit_h", video=True)
    path = tables.save_checkpoint(tmp_path / "video_joint_vit_huge.pth", tables.synthetic_state_dict(rows, seed=10))
    release_freed_heap_memory()  # the generated 5.7 GB, freed, would otherwise stay in this process
    conversion = convert_official_checkpoint(path, preset="vit_h", video=True)
    report = conversion.report
    assert (report.missing, report.unexpected, report.mismatches) == ([], [], [])
    assert (len(report.mapped), len(report.aliases), len(report.skipped)) == (1549, 74, 2)
    with torch.device("meta"):
        model = build_model(conversion.config, allow_random_text_init=True)
    result = model.load_state_dict(conversion.state_dict, strict=True, assign=True)
    assert (result.missing_keys, result.unexpected_keys) == ([], [])
    ours = model.state_dict()
    assert sum(t.numel() for k, t in ours.items() if not k.startswith("text_encoder.")) > 1.3e9
    compared = 0
    for official_key, expected in tables.synthetic_tensors(rows, seed=10):
        if official_key in report.mapped:
            assert torch.equal(ours[report.mapped[official_key]], expected), official_key
            compared += 1
    assert compared == 1549
