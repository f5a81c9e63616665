"""The query resample: a no-op when untrained, it reads the valid memory through each query's detached box, the
retrieval inputs with its term give the forward's logits, config, LR multiplier and bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from uninext_core.config import tiny
from uninext_core.model.build import build_model
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.query_resample import MemoryView, QueryResample
from uninext_core.train.optim import OptimizerSettings, parameter_lr

SHAPES = [(8, 10), (4, 5), (2, 3), (1, 2)]


def tiny_with_query_resample(layers: int = 1):
    """tiny (image model) with `layers` resample layers (0: without one)."""
    cfg = tiny(video=False)
    return cfg.replace(heads=dataclasses.replace(cfg.heads, query_resample_layers=layers))


def memory_view(batch: int = 2, width: int = 16, seed: int = 0) -> MemoryView:
    """Random memory over SHAPES; the second image's right half is padding on every level."""
    g = torch.Generator().manual_seed(seed)
    masks = []
    for h, w in SHAPES:
        m = torch.zeros(batch, h, w, dtype=torch.bool)
        m[1, :, (w + 1) // 2:] = True
        masks.append(m.flatten(1))
    padding = torch.cat(masks, 1)
    ratios = torch.ones(batch, len(SHAPES), 2)
    ratios[1, :, 0] = torch.tensor([((w + 1) // 2) / w for _, w in SHAPES])
    return MemoryView(torch.randn(batch, padding.shape[1], width, generator=g), SHAPES, ratios, padding)


def trained_module(seed: int = 0) -> QueryResample:
    torch.manual_seed(seed)
    module = QueryResample(d_model=16, num_layers=1, num_heads=4, num_levels=4, num_points=4,
                           dim_feedforward=32).eval()
    with torch.no_grad():
        module.out_proj.weight.normal_()
    return module


def test_untrained_term_is_zero_and_gradients_reach_the_layers_not_the_boxes():
    module = QueryResample(d_model=16, num_layers=1, num_heads=4, num_levels=4, num_points=4, dim_feedforward=32)
    queries = torch.randn(2, 5, 16)
    boxes = torch.full((2, 5, 4), 0.3).requires_grad_(True)
    out = module(queries, boxes, memory_view())
    assert out.shape == (2, 5, 16) and torch.equal(out, torch.zeros_like(out))
    (out * torch.randn_like(out)).sum().backward()
    assert module.out_proj.weight.grad.abs().sum() > 0
    assert boxes.grad is None


def test_the_term_reads_the_valid_memory_at_the_box_and_ignores_padding():
    module = trained_module()
    view = memory_view()
    queries = torch.randn(2, 3, 16)
    boxes = torch.tensor([[0.25, 0.5, 0.3, 0.4], [0.7, 0.3, 0.2, 0.2], [0.4, 0.6, 0.5, 0.5]]).expand(2, -1, -1)
    with torch.no_grad():
        base = module(queries, boxes, view)
        changed = view.memory.clone()
        changed[view.padding_mask] += 5.0  # padding only
        assert torch.allclose(module(queries, boxes, view._replace(memory=changed)), base, atol=1e-6)
        changed = view.memory.clone()
        changed[~view.padding_mask] += 1.0  # valid cells
        assert not torch.allclose(module(queries, boxes, view._replace(memory=changed)), base, atol=1e-3)
        moved = boxes.clone()
        moved[:, 0, :2] = torch.tensor([0.8, 0.8])  # one query's box
        out = module(queries, moved, view)
        assert not torch.allclose(out[:, 0], base[:, 0], atol=1e-3)
        torch.testing.assert_close(out[:, 1:], base[:, 1:])  # no attention among the queries


def test_forward_logits_equal_the_retrieval_inputs_with_the_resample_term():
    torch.manual_seed(0)
    model = build_model(tiny_with_query_resample()).eval()
    without = build_model(tiny_with_query_resample(0)).eval()
    without.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("query_resample.")})
    images = torch.randn(2, 3, 96, 128)
    pixel_mask = torch.ones(2, 96, 128, dtype=torch.bool)
    pixel_mask[1, :, 96:] = False
    tokens = model.text_encoder.tokenizer(["the second red circle", "the star"], padding=True, return_tensors="pt")
    with torch.no_grad():
        prompt = model.encode_text(tokens["input_ids"], tokens["attention_mask"].bool())
        untrained = model(images, pixel_mask, prompt)
        torch.testing.assert_close(untrained.pooled_logits, without(images, pixel_mask, prompt).pooled_logits)
        model.query_resample.out_proj.weight.normal_(0.0, 0.1)
        raw = model(images, pixel_mask, prompt)
        assert not torch.allclose(raw.pooled_logits, untrained.pooled_logits, atol=1e-3)
        inputs = model.retrieval_inputs(images, pixel_mask, prompt)
        assert inputs.memory is not None and inputs.memory.memory.shape[0] == 2
        term = model.resample_term(inputs.hidden, inputs.boxes_cxcywh, inputs.memory)
        token, pooled = model.retrieval_logits(1, inputs.hidden, inputs.boxes_cxcywh, inputs.colour_samples,
                                               inputs.prompt, inputs.pooled_prompt, inputs.prompt_mask,
                                               resampled=term)
        torch.testing.assert_close(pooled, raw.pooled_logits)
        torch.testing.assert_close(token, raw.token_logits)
        with pytest.raises(ValueError, match="resample_term"):
            model.retrieval_logits(1, inputs.hidden, inputs.boxes_cxcywh, inputs.colour_samples, inputs.prompt,
                                   inputs.pooled_prompt, inputs.prompt_mask)
    assert without.retrieval_inputs(images, pixel_mask, prompt).memory is None


def test_training_outputs_carry_the_term_on_every_layer_and_train_it():
    torch.manual_seed(0)
    model = build_model(tiny_with_query_resample())
    with torch.no_grad():
        model.query_resample.out_proj.weight.normal_(0.0, 0.1)
    images = torch.randn(1, 3, 96, 96)
    pixel_mask = torch.ones(1, 96, 96, dtype=torch.bool)
    prompt = PromptFeatures(torch.randn(1, 3, 384), torch.ones(1, 3, dtype=torch.bool))
    out = model(images, pixel_mask, prompt, targets=[torch.tensor([[0.5, 0.5, 0.2, 0.2]])])
    out.layers.pooled_logits.sum().backward()
    grads = [p.grad for p in model.query_resample.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_config_and_learning_rate_multiplier():
    model = build_model(tiny_with_query_resample(layers=2))
    assert len(model.query_resample.layers) == 2
    assert model.query_resample.layers[0].cross_attn.n_points == 8
    assert build_model(tiny_with_query_resample(0)).query_resample is None
    assert build_model(tiny(video=False)).query_resample is not None  # the preset's
    settings = OptimizerSettings(base_lr=1e-4, query_resample_multiplier=10.0)
    assert parameter_lr("query_resample.out_proj.weight", settings) == pytest.approx(1e-3)
    assert parameter_lr("query_resample.layers.0.cross_attn.sampling_offsets.weight",
                        settings) == pytest.approx(1e-3 * 0.1)
    with pytest.raises(ValueError, match="query_resample_multiplier must be >= 0"):
        OptimizerSettings(query_resample_multiplier=-1.0)
    with pytest.raises(ValueError, match="num_layers"):
        QueryResample(d_model=16, num_layers=0)
