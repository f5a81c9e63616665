"""Fixtures shared by the core tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from uninext_core.checkpoint.safetensors_io import load_model, save_weights
from uninext_core.config import UninextConfig
from uninext_core.model.build import build_model
from uninext_core.model.deform_attn import MSDeformAttn
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.uninext import Uninext


@pytest.fixture
def one_thread():
    """One torch thread for the test (tiny models run faster so on 2 shared cores), restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _unblock_zero_inits(model: Uninext) -> Uninext:
    """Give small values to the official zero inits that block some gradients at step 0: the box MLPs' last layers
    (-> their hidden layers), the MSDA query projections (-> everything that only feeds queries, e.g.
    level_embed), the text adapter's output projections (-> the rest of each adapter layer), the colour skip's
    projections (-> the image reaching the levels through it), the query colour's output layer (-> its first
    layer), the query relation's and query resample's output projections (-> their layers) and the prompt subject's
    token-score output layer (-> its first layer), so a gradient test sees every connection.
    Returns `model`, changed in place."""
    with torch.no_grad():
        if model.text_adapter is not None:
            for layer in model.text_adapter.layers:
                layer.out_proj.weight.normal_(0.0, 1e-3)
                layer.ffn_out.weight.normal_(0.0, 1e-3)
        if model.colour_skip is not None:
            for conv in model.colour_skip.proj:
                conv.weight.normal_(0.0, 1e-3)
        if model.query_colour is not None:
            model.query_colour.mlp[2].weight.normal_(0.0, 1e-3)
        if model.query_relation is not None:
            model.query_relation.out_proj.weight.normal_(0.0, 1e-3)
        if model.query_resample is not None:
            model.query_resample.out_proj.weight.normal_(0.0, 1e-3)
        if model.prompt_subject is not None:
            model.prompt_subject.score[2].weight.normal_(0.0, 1e-3)
        for head in model.bbox_embed:
            head.layers[-1].weight.normal_(0.0, 1e-3)
        for module in model.modules():
            if isinstance(module, MSDeformAttn):
                module.sampling_offsets.weight.normal_(0.0, 1e-3)
                module.attention_weights.weight.normal_(0.0, 1e-3)
    return model


@pytest.fixture
def unblock_zero_inits() -> Callable[[Uninext], Uninext]:
    """See `_unblock_zero_inits`."""
    return _unblock_zero_inits


def _check_optional_part_files(directory: Path, cfg: UninextConfig, off_cfg: UninextConfig, part: str,
                               tensor: str) -> None:
    """A weights file of `cfg` keeps the optional module `part` (its `tensor` randomised, so loading must copy it),
    and a file written before the part existed (`off_cfg`, no `part.*` keys) loads without it."""
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        model.get_parameter(f"{part}.{tensor}").normal_()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("text_encoder.")}
    loaded = load_model(save_weights(directory / "with.safetensors", state, config=cfg))
    assert torch.equal(loaded.get_parameter(f"{part}.{tensor}"), model.get_parameter(f"{part}.{tensor}"))
    old_state = {k: v for k, v in state.items() if not k.startswith(f"{part}.")}
    assert getattr(load_model(save_weights(directory / "without.safetensors", old_state, config=off_cfg)), part) is None


@pytest.fixture
def check_optional_part_files() -> Callable[..., None]:
    """See `_check_optional_part_files`."""
    return _check_optional_part_files


def _check_retrieval_only_part(cfg: UninextConfig, off_cfg: UninextConfig, part: str, tensor: str,
                               prompt_mask: torch.Tensor) -> None:
    """A model with the optional retrieval-side module `part` untrained computes exactly what the model without it
    (`off_cfg`) computes; with `part.tensor` randomised, the retrieval logits move and nothing else does."""
    torch.manual_seed(0)
    with_part = build_model(cfg).eval()
    without = build_model(off_cfg).eval()
    without.load_state_dict({k: v for k, v in with_part.state_dict().items() if not k.startswith(f"{part}.")})
    images = torch.randn(1, 3, 128, 160)
    pixel_mask = torch.ones(1, 128, 160, dtype=torch.bool)
    pixel_mask[:, 100:] = False
    prompt = PromptFeatures(torch.randn(1, prompt_mask.shape[-1], 384), prompt_mask)
    with torch.no_grad():
        expected = without(images, pixel_mask, prompt)
        got = with_part(images, pixel_mask, prompt)
        for name, a, b in zip(expected._fields, expected, got, strict=True):
            assert torch.equal(a, b), name
        with_part.get_parameter(f"{part}.{tensor}").normal_(0.0, 0.5)
        moved = with_part(images, pixel_mask, prompt)
    assert not torch.allclose(moved.pooled_logits, expected.pooled_logits)
    assert not torch.allclose(moved.token_logits, expected.token_logits)
    for name in ("boxes_cxcywh", "iou_logits", "mask_params", "embeddings"):
        assert torch.equal(getattr(moved, name), getattr(expected, name)), name


@pytest.fixture
def check_retrieval_only_part() -> Callable[..., None]:
    """See `_check_retrieval_only_part`."""
    return _check_retrieval_only_part
