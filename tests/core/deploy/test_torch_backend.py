"""TorchBackend on the tiny model: the Backend contract (float32 outputs, eval mode, no autograd), parity with the
eager model, mask logits of chosen queries, and the rejections (fp16 on CPU, spec mismatch, missing template branch,
unpadded input)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from uninext_core.config import tiny
from uninext_core.deploy.backend import Backend, model_spec
from uninext_core.deploy.torch_backend import TorchBackend, build_torch_backend
from uninext_core.model.build import build_model
from uninext_core.model.mask_head import masks_for_queries
from uninext_core.model.outputs import RawOutputs


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    torch.manual_seed(0)
    return build_torch_backend("tiny", model=build_model("tiny"))


def inputs(height: int = 64, width: int = 96, valid: tuple[int, int] = (60, 90)):
    g = torch.Generator().manual_seed(1)
    images = torch.randn(1, 3, height, width, generator=g)
    pixel_mask = torch.zeros(1, height, width, dtype=torch.bool)
    pixel_mask[0, : valid[0], : valid[1]] = True
    images[~pixel_mask[:, None].expand_as(images)] = 0.0
    return images, pixel_mask


def test_model_spec_of_tiny_reads_the_preset():
    spec = model_spec("tiny")
    assert (spec.test_short_side, spec.test_max_size, spec.template_size) == (320, 384, 128)
    assert (spec.num_queries, spec.embedding_dim, spec.max_text_tokens) == (100, 128, 64)
    assert spec.has_template_encoder and spec.has_embeddings
    image_only = model_spec(tiny(video=False))
    assert image_only.template_size is None and image_only.embedding_dim == 0
    assert not image_only.has_template_encoder and not image_only.has_embeddings


def test_backend_satisfies_the_protocol_and_is_in_eval_mode(backend):
    assert isinstance(backend, Backend)
    assert backend.name == "torch" and backend.fixed_input_size is None
    assert backend.device == torch.device("cpu")
    assert not backend.model.training


def test_outputs_match_the_eager_model_and_carry_no_graph(backend):
    tokens = backend.model.text_encoder.tokenize(["red circle. blue square"])
    prompt = backend.encode_text(tokens)
    assert prompt.hidden.shape == (1, 64, 384) and prompt.hidden.dtype == torch.float32
    assert prompt.mask.dtype == torch.bool and int(prompt.mask.sum()) == int(tokens.attention_mask.sum())
    images, pixel_mask = inputs()
    raw = backend.infer(images, pixel_mask, prompt)
    assert isinstance(raw, RawOutputs)
    with torch.no_grad():
        expected = backend.model(images, pixel_mask, backend.model.encode_text(*tokens))
    for name, got, want in zip(RawOutputs._fields, raw, expected, strict=True):
        assert got.dtype == torch.float32, name
        assert not got.requires_grad, name
        torch.testing.assert_close(got, want, msg=name)
    assert raw.embeddings.shape == (1, 100, 128)


def test_mask_logits_are_the_dynamic_head_of_the_chosen_queries(backend):
    images, pixel_mask = inputs()
    raw = backend.infer(images, pixel_mask, backend.encode_text(backend.model.text_encoder.tokenize(["shape"])))
    idx = torch.tensor([3, 0, 42])
    logits = backend.mask_logits(raw, idx)
    assert logits.shape == (3, 64 // 4, 96 // 4) and logits.dtype == torch.float32
    torch.testing.assert_close(logits, masks_for_queries(raw, idx[None])[0])
    # Row order follows query_idx: the first row is query 3.
    torch.testing.assert_close(logits[0], backend.mask_logits(raw, torch.tensor([3]))[0])
    assert backend.mask_logits(raw, torch.zeros(0, dtype=torch.int64)).shape == (0, 16, 24)


def test_template_encoding_shapes_and_padding(backend):
    crops = torch.randn(2, 4, 128, 128, generator=torch.Generator().manual_seed(2))
    padding = torch.zeros(2, 128, 128, dtype=torch.bool)
    padding[1, :, 64:] = True
    features = backend.encode_template(crops, padding)
    assert features.hidden.shape == (2, (128 // 8) ** 2, 384)
    assert features.mask[0].all() and not features.mask[1].all()
    with pytest.raises(ValueError, match=r"crops must be \(B, 4, 128, 128\)"):
        backend.encode_template(torch.zeros(1, 3, 128, 128))


def test_rejections():
    model = build_model(tiny(video=False))
    image_backend = TorchBackend(model, spec=model_spec(tiny(video=False)))
    with pytest.raises(ValueError, match="has no template encoder"):
        image_backend.encode_template(torch.zeros(1, 4, 128, 128))
    with pytest.raises(ValueError, match="fp16 autocast needs a CUDA device"):
        TorchBackend(model, spec=model_spec(tiny(video=False)), fp16=True)
    with pytest.raises(ValueError, match="template encoder absent vs spec template_size 128"):
        TorchBackend(model, spec=model_spec("tiny"))
    with pytest.raises(ValueError, match="num_queries 100 vs spec 7"):
        TorchBackend(model, spec=dataclasses.replace(model_spec(tiny(video=False)), num_queries=7))
    images, pixel_mask = inputs(height=60, width=90, valid=(60, 90))
    prompt = image_backend.encode_text(model.text_encoder.tokenize(["x"]))
    with pytest.raises(ValueError, match=r"not padded to a multiple of 32"):
        image_backend.infer(images, pixel_mask, prompt)
