"""ONNX Runtime backend vs the torch backend on tiny at its input size (320×384), for the three prompt kinds, with
stated fp32 tolerances; the padding-to-bucket rule; and the clear errors for bad input and damaged files.

Tolerances (fp32, CPU): prompt features abs 1e-3 (BERT, values O(1); measured 1.3e-4), template features 1e-4;
RawOutputs: logits / embeddings / mask parameters / mask features abs 1e-4 (measured <= 3e-6), boxes abs 1e-5,
mask reference 1e-3 px (pixel-scale values; measured 6e-5). Query selection (encoder top-K) must match exactly on
tiny; r50's near-ties are handled in test_parity_r50.py.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from uninext_core.deploy.backend import Backend
from uninext_core.deploy.export_manifest import MANIFEST_NAME
from uninext_core.deploy.onnxruntime_backend import OnnxRuntimeBackend
from uninext_core.deploy.torch_backend import TorchBackend
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures

pytestmark = pytest.mark.slow  # every test needs the session's tiny export (≈ 1 min once)

RAW_ATOL = {"token_logits": 1e-4, "pooled_logits": 1e-4, "iou_logits": 1e-4, "boxes_cxcywh": 1e-5,
            "embeddings": 1e-4, "mask_params": 1e-4, "mask_features": 1e-4, "mask_reference_px": 1e-3}


@pytest.fixture(scope="module")
def backends(tiny_export):
    torch_backend = TorchBackend(tiny_export.model, spec=tiny_export.manifest.spec)
    return torch_backend, OnnxRuntimeBackend(tiny_export.directory, intra_op_threads=1)


def frame(seed: int = 3):
    generator = torch.Generator().manual_seed(seed)
    pixel_mask = torch.zeros(1, 320, 384, dtype=torch.bool)
    pixel_mask[:, :288, :370] = True  # a 288×370 frame letterboxed into the export size
    images = torch.randn(1, 3, 320, 384, generator=generator) * pixel_mask[:, None]
    return images, pixel_mask


def assert_raw_close(expected: RawOutputs, got: RawOutputs) -> None:
    for name in RawOutputs._fields:
        a, b = getattr(expected, name), getattr(got, name)
        assert a.shape == b.shape and b.dtype == torch.float32, name
        error = (a - b).abs().max().item() if a.numel() else 0.0
        assert error <= RAW_ATOL[name], f"{name}: max abs error {error:.2e} > {RAW_ATOL[name]}"


def test_contract(backends, tiny_export):
    _, onnx_backend = backends
    assert isinstance(onnx_backend, Backend)
    assert onnx_backend.name == "onnxruntime" and onnx_backend.device == torch.device("cpu")
    assert onnx_backend.fixed_input_size == (320, 384) and onnx_backend.spec == tiny_export.manifest.spec
    assert onnx_backend.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("kind", ["category", "expression"])
def test_text_prompts_match_torch(backends, one_thread, kind):
    torch_backend, onnx_backend = backends
    text = {"category": ["person. red circle. blue square. car"], "expression": ["the man on the left in a red coat"]}
    tokens = torch_backend.model.text_encoder.tokenize(text[kind])
    expected_prompt, prompt = torch_backend.encode_text(tokens), onnx_backend.encode_text(tokens)
    assert torch.equal(prompt.mask, expected_prompt.mask) and prompt.hidden.dtype == torch.float32
    assert (prompt.hidden - expected_prompt.hidden).abs().max() <= 1e-3
    images, pixel_mask = frame()
    # Same prompt features into both main networks: the main-network comparison is not blurred by BERT's error.
    expected, got = torch_backend.infer(images, pixel_mask, expected_prompt), onnx_backend.infer(images, pixel_mask,
                                                                                                expected_prompt)
    assert_raw_close(expected, got)
    assert got.token_logits.shape == (1, 100, onnx_backend.spec.max_text_tokens)
    idx = torch.tensor([7, 0, 99])
    torch.testing.assert_close(onnx_backend.mask_logits(got, idx), torch_backend.mask_logits(expected, idx),
                               atol=1e-3, rtol=0)


def test_template_prompts_match_torch_for_one_and_two_templates(backends, one_thread):
    torch_backend, onnx_backend = backends
    generator = torch.Generator().manual_seed(5)
    crops = torch.randn(2, 4, 128, 128, generator=generator)
    padding = torch.zeros(2, 128, 128, dtype=torch.bool)
    padding[1, :, 96:] = True  # second crop runs off the frame's right edge
    expected_prompt, prompt = torch_backend.encode_template(crops, padding), onnx_backend.encode_template(crops,
                                                                                                         padding)
    assert torch.equal(prompt.mask, expected_prompt.mask) and not prompt.mask[1].all()
    assert (prompt.hidden - expected_prompt.hidden).abs().max() <= 1e-4
    images, pixel_mask = frame(seed=4)
    first = PromptFeatures(expected_prompt.hidden[:1], expected_prompt.mask[:1])
    both = first.concat(PromptFeatures(expected_prompt.hidden[1:], expected_prompt.mask[1:]))  # SOT update: T = 512
    for template_prompt in (first, both):
        assert_raw_close(torch_backend.infer(images, pixel_mask, template_prompt),
                         onnx_backend.infer(images, pixel_mask, template_prompt))


def test_padding_a_prompt_to_its_bucket_leaves_valid_outputs_unchanged(backends, one_thread):
    torch_backend, onnx_backend = backends
    tokens = torch_backend.model.text_encoder.tokenize(["red circle"])
    prompt = torch_backend.encode_text(tokens)
    short = PromptFeatures(prompt.hidden[:, :40], prompt.mask[:, :40])  # 40 tokens -> padded to the first bucket
    images, pixel_mask = frame(seed=6)
    eager_short = torch_backend.infer(images, pixel_mask, short)
    got = onnx_backend.infer(images, pixel_mask, short)
    assert got.token_logits.shape == (1, 100, 40)
    assert_raw_close(eager_short, got)


def test_bad_input_is_a_clear_error(backends):
    torch_backend, onnx_backend = backends
    images, pixel_mask = frame()
    largest = onnx_backend.manifest.prompt_buckets[-1]
    long_prompt = PromptFeatures(torch.zeros(1, largest + 1, 384), torch.ones(1, largest + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match=f"prompt has {largest + 1} tokens, longer than the largest exported prompt "
                                         f"bucket {largest}"):
        onnx_backend.infer(images, pixel_mask, long_prompt)
    with pytest.raises(ValueError, match=r"images must be \(1, 3, 320, 384\) \(the exported size\)"):
        onnx_backend.infer(images[:, :, :256], pixel_mask[:, :256], long_prompt)
    tokens = torch_backend.model.text_encoder.tokenize(["x"])
    text_tokens = onnx_backend.spec.max_text_tokens
    with pytest.raises(ValueError, match=f"the exported text encoder takes exactly {text_tokens}"):
        half = text_tokens // 2
        onnx_backend.encode_text(type(tokens)(tokens.input_ids[:, :half], tokens.attention_mask[:, :half]))


def test_truncated_or_corrupt_onnx_files_are_clear_errors(tiny_export, tmp_path):
    damaged = tmp_path / "export"
    shutil.copytree(tiny_export.directory, damaged)
    main = damaged / "main.onnx"
    main.write_bytes(main.read_bytes()[: main.stat().st_size // 3])
    with pytest.raises(ValueError, match=r"main\.onnx has SHA-256 .* truncated, corrupt or from another export"):
        OnnxRuntimeBackend(damaged)
    with pytest.raises(ValueError, match=r"onnxruntime cannot load .*main\.onnx .* corrupt or truncated"):
        OnnxRuntimeBackend(damaged, verify_files=False)
    (damaged / MANIFEST_NAME).write_text('{"version": 1, "parts": ')
    with pytest.raises(ValueError, match="is not a valid uninext-export manifest"):
        OnnxRuntimeBackend(damaged)


def test_unknown_provider_is_rejected(tiny_export):
    with pytest.raises(ValueError, match=r"providers \['TensorrtExecutionProvider'\] not available"):
        OnnxRuntimeBackend(tiny_export.directory, providers=["TensorrtExecutionProvider"], verify_files=False)
