"""The TensorRT-free parts of the engine builder: the optional-import message, GPU identity, profile shapes and
engine keys from a manifest, INT8 rules, and which ONNX nodes stay float32 in FP16 engines."""

from __future__ import annotations

import sys
import types

import numpy as np
import onnx
import pytest

from uninext_core.config import tiny, to_yaml
from uninext_core.deploy.export_manifest import ExportedPart, ExportManifest, TensorSpec
from uninext_core.deploy.tensorrt_build import (
    BUILDER_REVISION,
    GpuInfo,
    calibration_sha256,
    engine_key,
    fp32_node_names,
    gpu_info,
    part_precision,
    profile_shapes,
    require_tensorrt,
)

GPU = GpuInfo(index=0, name="NVIDIA H100 80GB HBM3", compute_capability="9.0")


def manifest() -> ExportManifest:
    main_inputs = (TensorSpec("images", (1, 3, 320, 384), "float32"), TensorSpec("pixel_mask", (1, 320, 384), "bool"),
                   TensorSpec("prompt_hidden", (1, "prompt_tokens", 384), "float32"),
                   TensorSpec("prompt_mask", (1, "prompt_tokens"), "bool"))
    text_inputs = (TensorSpec("input_ids", (1, 64), "int64"), TensorSpec("attention_mask", (1, 64), "int64"))
    parts = {"main": ExportedPart("main.onnx", "a" * 64, main_inputs, ()),
             "text_encoder": ExportedPart("text_encoder.onnx", "b" * 64, text_inputs, ())}
    return ExportManifest(preset="tiny", config_yaml=to_yaml(tiny()), image_size=(320, 384),
                          prompt_buckets=(64, 256, 512), opset=18, exporter="test", parts=parts)


def test_missing_tensorrt_names_the_requirements_file(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    with pytest.raises(ImportError, match=r"requirements-tensorrt\.txt .* \(import tensorrt failed"):
        require_tensorrt()


def test_missing_pycuda_or_old_tensorrt_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(ImportError, match=r"requirements-tensorrt\.txt .* \(import pycuda\.driver failed"):
        require_tensorrt()
    fake_pycuda = types.ModuleType("pycuda")
    fake_pycuda.driver = types.SimpleNamespace(init=lambda: None)
    monkeypatch.setitem(sys.modules, "pycuda", fake_pycuda)
    monkeypatch.setitem(sys.modules, "pycuda.driver", fake_pycuda.driver)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(ImportError, match=r"found tensorrt 8\.6\.1, this code follows the TensorRT 10 API"):
        require_tensorrt()


def test_gpu_info_reads_name_and_compute_capability():
    class Device:
        @staticmethod
        def count() -> int:
            return 1

        def __init__(self, index: int) -> None:
            self.index = index

        def name(self) -> str:
            return "NVIDIA GeForce RTX 3090"

        def compute_capability(self) -> tuple[int, int]:
            return (8, 6)

    cuda = types.SimpleNamespace(Device=Device)
    assert gpu_info(cuda, 0) == GpuInfo(index=0, name="NVIDIA GeForce RTX 3090", compute_capability="8.6")
    with pytest.raises(ValueError, match="CUDA device 1 requested, 1 visible"):
        gpu_info(cuda, 1)


def test_profile_shapes_bound_the_prompt_axis_by_the_buckets():
    shapes = {s.name: s for s in profile_shapes(manifest(), "main")}
    assert shapes["images"].min == shapes["images"].opt == shapes["images"].max == (1, 3, 320, 384)
    # min = first bucket, opt = the text length (tiny: 64 tokens), max = last bucket (two 16×16 templates).
    assert (shapes["prompt_hidden"].min, shapes["prompt_hidden"].opt, shapes["prompt_hidden"].max) == (
        (1, 64, 384), (1, 64, 384), (1, 512, 384))
    assert shapes["prompt_mask"].max == (1, 512)
    text = profile_shapes(manifest(), "text_encoder")
    assert [(s.name, s.min, s.max) for s in text] == [("input_ids", (1, 64), (1, 64)),
                                                       ("attention_mask", (1, 64), (1, 64))]


def test_engine_keys_follow_onnx_precision_gpu_and_calibration():
    m = manifest()
    key = engine_key(m, "main", precision="fp16", tensorrt_version="10.3.0", gpu=GPU)
    assert key.onnx_sha256 == "a" * 64 and key.options == (("builder_revision", BUILDER_REVISION),)
    assert key.shapes == profile_shapes(m, "main")
    assert engine_key(m, "text_encoder", precision="fp16", tensorrt_version="10.3.0", gpu=GPU).onnx_sha256 == "b" * 64
    with pytest.raises(ValueError, match="int8 engines need calibration data"):
        engine_key(m, "main", precision="int8", tensorrt_version="10.3.0", gpu=GPU)
    batches = [{"images": np.zeros((1, 3, 4, 4), np.float32)}]
    int8 = engine_key(m, "main", precision="int8", tensorrt_version="10.3.0", gpu=GPU,
                      calibration_sha256=calibration_sha256(batches))
    other = engine_key(m, "main", precision="int8", tensorrt_version="10.3.0", gpu=GPU,
                       calibration_sha256=calibration_sha256([{"images": np.ones((1, 3, 4, 4), np.float32)}]))
    assert int8.digest() != other.digest() != key.digest()
    assert part_precision("main", "int8") == "int8" and part_precision("text_encoder", "int8") == "fp16"
    assert part_precision("template_encoder", "fp32") == "fp32"


@pytest.mark.slow
def test_fp32_nodes_are_the_fusion_block_and_the_retrieval_head(tiny_export):
    path = tiny_export.directory / "main.onnx"
    names = fp32_node_names(path)
    graph = onnx.load(str(path), load_external_data=False).graph
    pinned = [node for node in graph.node if node.name in names]
    kinds = {node.op_type for node in pinned}
    assert {"MatMul", "Softmax", "Clip"} <= kinds  # the ±50000-clamped attention logits are among them
    assert "GridSample" not in kinds and "Conv" not in kinds  # deformable attention and backbone stay fp16
    for node in pinned:
        scopes = next(p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes")
        assert "model.transformer.fusion" in scopes or "model.class_embed" in scopes
    assert 0 < len(pinned) < len(graph.node) // 5
    assert not fp32_node_names(tiny_export.directory / "text_encoder.onnx")


def test_profile_opt_falls_back_to_the_first_bucket_without_a_text_bucket():
    m = manifest()
    shapes = {s.name: s for s in profile_shapes(ExportManifest(**{**m.__dict__, "prompt_buckets": (256, 512)}),
                                                "main")}
    assert shapes["prompt_hidden"].opt == (1, 256, 384)
