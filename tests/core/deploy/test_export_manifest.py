"""The export manifest and the static I/O rules shared by the ONNX Runtime and TensorRT backends, on a hand-written
manifest (no export needed): buckets, padding a prompt to its bucket, cutting token logits back, the errors for
prompts longer than the last bucket, wrong image sizes and text lengths, and manifest / file validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from uninext_core.config import r50, tiny, to_yaml
from uninext_core.deploy.backend import model_spec
from uninext_core.deploy.export_manifest import (
    ExportedPart,
    ExportManifest,
    TensorSpec,
    bucket_for,
    default_prompt_buckets,
    file_sha256,
    host_mask_logits,
    main_feed,
    raw_outputs,
    template_feeds,
    text_feeds,
)
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures


def tiny_manifest(tmp_path=None, *, with_embeddings=True) -> ExportManifest:
    main_inputs = (TensorSpec("images", (1, 3, 64, 96), "float32"), TensorSpec("pixel_mask", (1, 64, 96), "bool"),
                   TensorSpec("prompt_hidden", (1, "prompt_tokens", 384), "float32"),
                   TensorSpec("prompt_mask", (1, "prompt_tokens"), "bool"))
    parts = {"main": ExportedPart(file="main.onnx", sha256="0" * 64, inputs=main_inputs, outputs=()),
             "text_encoder": ExportedPart(file="text_encoder.onnx", sha256="0" * 64,
                                          inputs=(TensorSpec("input_ids", (1, 64), "int64"),
                                                  TensorSpec("attention_mask", (1, 64), "int64")), outputs=())}
    cfg = tiny() if with_embeddings else tiny(video=False)
    return ExportManifest(preset="tiny", config_yaml=to_yaml(cfg), image_size=(64, 96),
                          prompt_buckets=default_prompt_buckets(model_spec(cfg)), opset=18, exporter="test",
                          parts=parts)


def prompt(tokens: int, valid: int) -> PromptFeatures:
    hidden = torch.arange(tokens * 384, dtype=torch.float32).reshape(1, tokens, 384)
    mask = torch.zeros(1, tokens, dtype=torch.bool)
    mask[:, :valid] = True
    return PromptFeatures(hidden, mask)


def frame():
    return torch.zeros(1, 3, 64, 96), torch.ones(1, 64, 96, dtype=torch.bool)


def test_default_buckets_are_text_template_and_two_templates():
    assert default_prompt_buckets(model_spec("tiny")) == (64, 256, 512)  # 64 text tokens; 128 px templates: 16² = 256
    assert default_prompt_buckets(model_spec("r50")) == (256, 1024, 2048)
    assert default_prompt_buckets(model_spec(r50(video=False))) == (256,)


def test_bucket_choice_and_the_too_long_prompt_error():
    manifest = tiny_manifest()
    assert [bucket_for(manifest, t) for t in (1, 64, 65, 256, 257, 512)] == [64, 64, 256, 256, 512, 512]
    with pytest.raises(ValueError, match=r"prompt has 513 tokens, longer than the largest exported prompt bucket 512"):
        bucket_for(manifest, 513)


def test_main_feed_pads_the_prompt_with_masked_zero_tokens():
    manifest = tiny_manifest()
    images, pixel_mask = frame()
    feed, tokens = main_feed(manifest, images, pixel_mask, prompt(300, 7))
    assert tokens == 300
    assert feed["prompt_hidden"].shape == (1, 512, 384) and feed["prompt_hidden"].dtype == np.float32
    assert np.array_equal(feed["prompt_hidden"][:, :300], prompt(300, 7).hidden.numpy())
    assert not feed["prompt_hidden"][:, 300:].any()
    assert feed["prompt_mask"].dtype == bool and feed["prompt_mask"].sum() == 7
    assert feed["pixel_mask"].dtype == bool and feed["images"].shape == (1, 3, 64, 96)


def test_main_feed_rejections():
    manifest = tiny_manifest()
    images, pixel_mask = frame()
    with pytest.raises(ValueError, match=r"images must be \(1, 3, 64, 96\) \(the exported size\), got \(1, 3, 64, 6"):
        main_feed(manifest, images[..., :64], pixel_mask, prompt(256, 3))
    with pytest.raises(ValueError, match=r"pixel_mask must be \(1, 64, 96\)"):
        main_feed(manifest, images, pixel_mask[:, :32], prompt(256, 3))
    with pytest.raises(ValueError, match=r"prompt must be hidden \(1, T, 384\)"):
        main_feed(manifest, images, pixel_mask, PromptFeatures(torch.zeros(2, 256, 384), torch.ones(2, 256).bool()))
    with pytest.raises(ValueError, match="longer than the largest exported prompt bucket 512"):
        main_feed(manifest, images, pixel_mask, prompt(1024, 3))


def test_raw_outputs_cut_token_columns_and_fill_missing_embeddings():
    manifest = tiny_manifest(with_embeddings=False)
    q = 100
    outputs = {"token_logits": np.ones((1, q, 256), np.float32), "pooled_logits": np.zeros((1, q, 1), np.float32),
               "iou_logits": np.zeros((1, q, 1), np.float32), "boxes_cxcywh": np.zeros((1, q, 4), np.float32),
               "mask_params": np.zeros((1, q, 169), np.float32), "mask_features": np.zeros((1, 8, 8, 12), np.float32),
               "mask_reference_px": np.zeros((1, q, 2), np.float32)}
    raw = raw_outputs(manifest, outputs, tokens=10)
    assert isinstance(raw, RawOutputs) and raw.token_logits.shape == (1, q, 10)
    assert raw.embeddings.shape == (1, q, 0) and all(t.dtype == torch.float32 for t in raw)


def test_text_and_template_feeds():
    manifest = tiny_manifest()
    ids = torch.arange(128).reshape(2, 64)
    feeds = text_feeds(manifest, ids, torch.ones(2, 64, dtype=torch.int64))
    assert len(feeds) == 2 and feeds[1]["input_ids"].shape == (1, 64) and feeds[1]["input_ids"][0, 0] == 64
    with pytest.raises(ValueError, match="text prompt has 32 tokens, the exported text encoder takes exactly 64"):
        text_feeds(manifest, ids[:, :32], torch.ones(2, 32, dtype=torch.int64))
    (feed,) = template_feeds(manifest, torch.zeros(1, 4, 128, 128), None)
    assert feed["padding"].dtype == bool and not feed["padding"].any()
    with pytest.raises(ValueError, match=r"crops must be \(B, 4, 128, 128\)"):
        template_feeds(manifest, torch.zeros(1, 3, 128, 128), None)
    with pytest.raises(ValueError, match="has no template encoder"):
        template_feeds(tiny_manifest(with_embeddings=False), torch.zeros(1, 4, 128, 128), None)


def test_host_mask_logits_shapes():
    spec = model_spec("r50")  # official dynamic head: 8 channels, 3 layers, 169 parameters, stride 4
    q = 5
    raw = RawOutputs(torch.zeros(1, q, 3), torch.zeros(1, q, 1), torch.zeros(1, q, 1), torch.zeros(1, q, 4),
                     torch.zeros(1, q, 0), torch.randn(1, q, 169), torch.randn(1, 8, 6, 10), torch.zeros(1, q, 2))
    assert host_mask_logits(spec, raw, torch.tensor([4, 0])).shape == (2, 12, 20)
    assert host_mask_logits(spec, raw, torch.zeros(0, dtype=torch.int64)).shape == (0, 12, 20)


def test_manifest_round_trip_and_file_checks(tmp_path):
    (tmp_path / "main.onnx").write_bytes(b"graph bytes")
    (tmp_path / "text_encoder.onnx").write_bytes(b"bert bytes")
    manifest = tiny_manifest()
    parts = {name: ExportedPart(file=p.file, sha256=file_sha256(tmp_path / p.file), inputs=p.inputs,
                                outputs=p.outputs) for name, p in manifest.parts.items()}
    manifest = ExportManifest(**{**manifest.__dict__, "parts": parts})
    manifest.save(tmp_path)
    loaded = ExportManifest.load(tmp_path)
    assert loaded == manifest and loaded.spec == model_spec("tiny")
    loaded.verify_files(tmp_path)
    (tmp_path / "main.onnx").write_bytes(b"graph by")  # truncated copy
    with pytest.raises(ValueError, match=r"exported part 'main': .*main.onnx has SHA-256 .* truncated, corrupt"):
        loaded.verify_files(tmp_path)
    (tmp_path / "main.onnx").unlink()
    with pytest.raises(ValueError, match=r"main\.onnx is missing"):
        loaded.verify_files(tmp_path)
    with pytest.raises(ValueError, match="this export has no 'template_encoder' part"):
        loaded.part("template_encoder")


def test_manifest_load_errors(tmp_path):
    with pytest.raises(ValueError, match=r"manifest\.json does not exist"):
        ExportManifest.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(ValueError, match="is not a valid uninext-export manifest"):
        ExportManifest.load(tmp_path)
    data = json.loads(json.dumps({"version": 99}))
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="manifest version 99, expected 1"):
        ExportManifest.load(tmp_path)
