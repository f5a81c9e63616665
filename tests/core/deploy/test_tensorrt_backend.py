"""TensorRT backend on the tiny export: engines build, match ONNX Runtime, are reused from the cache on the next
start, and are rebuilt when the cached file is damaged. Runs only where `tensorrt` and `pycuda` import and a CUDA GPU
exists; skipped elsewhere with the reason shown (pytest -ra).

Tolerances vs ONNX Runtime (fp32 engines, TF32 off): logits / embeddings / mask parameters abs 1e-3, boxes abs 1e-4,
mask reference 1e-2 px — GPU reductions and TensorRT's GridSample kernel reorder float sums (reference §11.2 warns of
GridSample miscompilation in some TensorRT versions: this is the test that would catch it). FP16 engines: the same
top queries must be selected for at least 90 % of the 100 and boxes agree within 1e-2 on those.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from uninext_core.deploy.backend import Backend
from uninext_core.deploy.engine_cache import EngineCache
from uninext_core.deploy.onnxruntime_backend import OnnxRuntimeBackend
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures


def _skip_reason() -> str | None:
    for module in ("tensorrt", "pycuda"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (optional: requirements-tensorrt.txt)"
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    return None


pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]

FP32_ATOL = {"token_logits": 1e-3, "pooled_logits": 1e-3, "iou_logits": 1e-3, "boxes_cxcywh": 1e-4,
             "embeddings": 1e-3, "mask_params": 1e-3, "mask_features": 1e-3, "mask_reference_px": 1e-2}


def frame():
    generator = torch.Generator().manual_seed(3)
    pixel_mask = torch.zeros(1, 320, 384, dtype=torch.bool)
    pixel_mask[:, :288, :370] = True
    return torch.randn(1, 3, 320, 384, generator=generator) * pixel_mask[:, None], pixel_mask


@pytest.fixture(scope="module")
def engines(tiny_export, tmp_path_factory):
    from uninext_core.deploy.tensorrt_backend import TensorRTBackend

    cache_dir = tmp_path_factory.mktemp("engines")
    backend = TensorRTBackend(tiny_export.directory, cache_dir=cache_dir, precision="fp32")
    yield backend, cache_dir
    backend.close()


def test_fp32_engines_match_onnxruntime_for_text_and_template_prompts(engines, tiny_export):
    backend, _ = engines
    assert isinstance(backend, Backend) and backend.name == "tensorrt" and backend.fixed_input_size == (320, 384)
    assert sorted(backend.built_parts) == ["main", "template_encoder", "text_encoder"]
    reference = OnnxRuntimeBackend(tiny_export.directory)
    tokens = tiny_export.model.text_encoder.tokenize(["person. red circle. blue square"])
    expected_text, text = reference.encode_text(tokens), backend.encode_text(tokens)
    assert torch.equal(text.mask, expected_text.mask) and (text.hidden - expected_text.hidden).abs().max() <= 1e-3
    crops = torch.randn(1, 4, 128, 128, generator=torch.Generator().manual_seed(1))
    expected_template, template = reference.encode_template(crops), backend.encode_template(crops)
    assert (template.hidden - expected_template.hidden).abs().max() <= 1e-3
    images, pixel_mask = frame()
    two = expected_template.concat(expected_template)
    for prompt in (expected_text, PromptFeatures(expected_text.hidden[:, :40], expected_text.mask[:, :40]), two):
        expected, got = reference.infer(images, pixel_mask, prompt), backend.infer(images, pixel_mask, prompt)
        for name in RawOutputs._fields:
            error = (getattr(expected, name) - getattr(got, name)).abs().max().item()
            assert error <= FP32_ATOL[name], f"{name} (T={prompt.hidden.shape[1]}): {error:.2e}"


def test_second_start_loads_engines_from_the_cache(engines, tiny_export):
    from uninext_core.deploy.tensorrt_backend import TensorRTBackend

    _, cache_dir = engines
    again = TensorRTBackend(tiny_export.directory, cache_dir=cache_dir, precision="fp32")
    assert again.built_parts == []
    timing = EngineCache(cache_dir).timing_cache_path(tensorrt_version=again.modules.trt.__version__,
                                                      gpu_name=again.gpu.name,
                                                      compute_capability=again.gpu.compute_capability)
    assert timing.stat().st_size > 0
    again.close()


def test_damaged_cached_engine_is_rebuilt(engines, tiny_export):
    from uninext_core.deploy.tensorrt_backend import TensorRTBackend

    _, cache_dir = engines
    (engine_file,) = sorted(cache_dir.glob("main-fp32-*.engine"))
    engine_file.write_bytes(engine_file.read_bytes()[:1000])
    rebuilt = TensorRTBackend(tiny_export.directory, cache_dir=cache_dir, precision="fp32")
    assert rebuilt.built_parts == ["main"]
    images, pixel_mask = frame()
    largest = rebuilt.manifest.prompt_buckets[-1]
    prompt = PromptFeatures(torch.randn(1, largest + 1, 384), torch.ones(1, largest + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match=f"longer than the largest exported prompt bucket {largest}"):
        rebuilt.infer(images, pixel_mask, prompt)
    rebuilt.close()


def test_fp16_engine_selects_the_same_queries(tiny_export, tmp_path):
    from uninext_core.deploy.tensorrt_backend import TensorRTBackend

    backend = TensorRTBackend(tiny_export.directory, cache_dir=tmp_path, precision="fp16")
    reference = OnnxRuntimeBackend(tiny_export.directory)
    prompt = reference.encode_text(tiny_export.model.text_encoder.tokenize(["red circle"]))
    images, pixel_mask = frame()
    expected, got = reference.infer(images, pixel_mask, prompt), backend.infer(images, pixel_mask, prompt)
    same = (expected.mask_reference_px - got.mask_reference_px).abs().amax(-1)[0] <= 0.5
    assert same.float().mean() >= 0.9
    assert (expected.boxes_cxcywh[0, same] - got.boxes_cxcywh[0, same]).abs().max() <= 1e-2
    backend.close()
