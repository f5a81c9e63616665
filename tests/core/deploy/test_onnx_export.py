"""uninext-export's library function on tiny: three parts written with a manifest that describes the real graphs
(names, static shapes, the bounded prompt axis, dtypes, SHA-256), onnx.checker passes; argument validation."""

from __future__ import annotations

import onnx
import pytest

from uninext_core.config import tiny
from uninext_core.deploy.export_manifest import ExportManifest, TensorSpec, file_sha256
from uninext_core.deploy.onnx_export import export_onnx
from uninext_core.model.build import build_model
from uninext_core.model.outputs import RawOutputs


@pytest.mark.slow
def test_manifest_describes_the_exported_graphs(tiny_export):
    directory, manifest, cfg = tiny_export.directory, tiny_export.manifest, tiny_export.cfg
    text_tokens, template_tokens, width = cfg.text.max_tokens, (cfg.template.size // 8) ** 2, cfg.text.hidden_dim
    assert ExportManifest.load(directory) == manifest
    assert sorted(p.name for p in directory.iterdir()) == ["main.onnx", "manifest.json", "template_encoder.onnx",
                                                           "text_encoder.onnx"]
    assert manifest.preset == "tiny" and manifest.image_size == (320, 384)
    assert manifest.prompt_buckets == tuple(sorted({text_tokens, template_tokens, 2 * template_tokens}))
    assert manifest.opset == 18 and manifest.exporter.startswith("torch.onnx dynamo")
    assert manifest.config.fusion.fp16_safe_mask and manifest.spec.num_queries == 100
    main = manifest.part("main")
    assert main.inputs == (TensorSpec("images", (1, 3, 320, 384), "float32"),
                           TensorSpec("pixel_mask", (1, 320, 384), "bool"),
                           TensorSpec("prompt_hidden", (1, "prompt_tokens", width), "float32"),
                           TensorSpec("prompt_mask", (1, "prompt_tokens"), "bool"))
    assert [o.name for o in main.outputs] == list(RawOutputs._fields)
    assert main.outputs[0].shape == (1, 100, "prompt_tokens")  # token logits follow the prompt axis
    assert main.outputs[6] == TensorSpec("mask_features", (1, cfg.heads.mask_feature_dim, 320 // 8, 384 // 8),
                                         "float32")
    text = manifest.part("text_encoder")
    assert [(s.name, s.shape, s.dtype) for s in text.inputs] == [("input_ids", (1, text_tokens), "int64"),
                                                                 ("attention_mask", (1, text_tokens), "int64")]
    assert text.outputs == (TensorSpec("hidden", (1, text_tokens, width), "float32"),)
    template = manifest.part("template_encoder")
    assert template.outputs == (TensorSpec("hidden", (1, template_tokens, width), "float32"),
                                TensorSpec("mask", (1, template_tokens), "bool"))
    for part in manifest.parts.values():
        assert part.sha256 == file_sha256(directory / part.file) and part.data_file is None
        onnx.checker.check_model(str(directory / part.file), full_check=True)
    manifest.verify_files(directory)


def test_export_argument_validation(tmp_path):
    model = build_model(tiny(video=False))
    with pytest.raises(ValueError, match=r"image_size must be multiples of 32 of at least 64, got \(320, 380\)"):
        export_onnx(model, tiny(video=False), tmp_path, image_size=(320, 380))
    with pytest.raises(ValueError, match=r"prompt_buckets must be strictly ascending positive ints, got \[512, 256\]"):
        export_onnx(model, tiny(video=False), tmp_path, image_size=(320, 384), prompt_buckets=[512, 256])
    with pytest.raises(ValueError, match=r"parts must be a non-empty subset of \['text_encoder', 'main'\]"):
        export_onnx(model, tiny(video=False), tmp_path, image_size=(320, 384), parts=["template_encoder"])
    assert not any(tmp_path.iterdir())
