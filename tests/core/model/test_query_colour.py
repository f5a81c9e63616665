"""The query colour: box samples by hand (padding included), a no-op when untrained, gradients stop at the boxes,
config and weights files, the LR multiplier, ONNX export."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from uninext_core.config import r50, tiny
from uninext_core.model.build import build_model
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.query_colour import QueryColour
from uninext_core.train.optim import OptimizerSettings, parameter_lr


def tiny_with_query_colour(grid: int = 4):
    cfg = tiny(video=False)
    return cfg.replace(heads=dataclasses.replace(cfg.heads, query_colour_grid=grid))


def test_one_point_samples_the_pixel_at_the_box_centre_of_a_padded_image():
    images = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    valid_px = torch.tensor([[80.0, 64.0]])  # (w, h): the image is 80 x 64, padded to 128 x 96
    # centre (20.5, 30.5) px in the valid image = pixel (row 30, col 20), whatever the box size
    boxes = torch.tensor([[[20.5 / 80, 30.5 / 64, 0.3, 0.2]]])
    samples = QueryColour(d_model=8, grid=1).sample(images, valid_px, boxes)
    assert samples.shape == (1, 1, 3)
    assert torch.allclose(samples[0, 0], images[0, :, 30, 20], atol=1e-6)


def test_grid_covers_the_central_span_of_the_box():
    images = torch.zeros(1, 3, 64, 64)
    images[0, :, 16:48, 16:48] = torch.tensor([1.0, -2.0, 0.5])[:, None, None]  # a 32 px square
    valid_px = torch.tensor([[64.0, 64.0]])
    square = torch.tensor([[[0.5, 0.5, 0.5, 0.5]]])  # the square's own box
    beside = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.125, 0.125, 0.2, 0.2]]])
    module = QueryColour(d_model=8, grid=4, span=0.6)
    inside = module.sample(images, valid_px, square).reshape(3, 16)
    assert torch.allclose(inside, torch.tensor([1.0, -2.0, 0.5])[:, None].expand(3, 16))
    both = module.sample(images, valid_px, beside).reshape(2, 3, 16)
    assert torch.equal(both[1], torch.zeros(3, 16))  # a box in the empty corner sees no colour
    # points at offsets ±0.075, ±0.225 of the box size: span 1.0 would reach 0.375 and leave the square
    wide = QueryColour(d_model=8, grid=4, span=1.0).sample(images, valid_px, torch.tensor([[[0.5, 0.5, 0.9, 0.9]]]))
    assert (wide.reshape(3, 16) == 0).any() and (wide.reshape(3, 16) != 0).any()


def test_untrained_term_is_zero_gradients_reach_the_mlp_not_the_boxes():
    module = QueryColour(d_model=8, grid=2)
    images = torch.randn(2, 3, 32, 48)
    boxes = torch.rand(2, 5, 4).clamp(0.1, 0.9).requires_grad_(True)
    out = module(images, torch.tensor([[48.0, 32.0], [40.0, 32.0]]), boxes)
    assert out.shape == (2, 5, 8) and torch.equal(out, torch.zeros_like(out))
    (out * torch.randn_like(out)).sum().backward()
    assert module.mlp[2].weight.grad.abs().sum() > 0
    assert boxes.grad is None


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="must be positive"):
        QueryColour(d_model=8, grid=0)
    with pytest.raises(ValueError, match=r"span must be in \(0, 1\]"):
        QueryColour(d_model=8, span=1.5)


def test_official_presets_have_none_and_the_multiplier_scales_only_it():
    assert tiny().heads.query_colour_grid == 4 and r50().heads.query_colour_grid == 0
    assert build_model(r50(video=False), allow_random_text_init=True).query_colour is None
    settings = OptimizerSettings(base_lr=1e-4, backbone_multiplier=0.5, query_colour_multiplier=10.0)
    assert parameter_lr("query_colour.mlp.2.weight", settings) == pytest.approx(1e-3)
    assert parameter_lr("class_embed.0.bias0", settings) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="query_colour_multiplier must be >= 0"):
        OptimizerSettings(query_colour_multiplier=-1.0)


def test_model_with_an_untrained_term_equals_the_model_without_one_and_a_trained_one_changes_only_retrieval(
        check_retrieval_only_part):
    cfg = tiny_with_query_colour()
    check_retrieval_only_part(cfg, cfg.replace(heads=dataclasses.replace(cfg.heads, query_colour_grid=0)),
                              "query_colour", "mlp.2.weight", torch.ones(1, 8, dtype=torch.bool))


def test_training_outputs_carry_the_term_on_every_layer_and_denoising_query():
    torch.manual_seed(0)
    model = build_model(tiny_with_query_colour()).train()
    images = torch.randn(1, 3, 128, 160)
    pixel_mask = torch.ones(1, 128, 160, dtype=torch.bool)
    prompt = PromptFeatures(torch.randn(1, 8, 384), torch.ones(1, 8, dtype=torch.bool))
    targets = [torch.tensor([[0.5, 0.5, 0.2, 0.3]])]

    def run():  # the same draws each time (fusion attention dropout, denoising noise)
        torch.manual_seed(1)
        return model(images, pixel_mask, prompt, targets=targets, generator=torch.Generator().manual_seed(1))

    before = run()
    with torch.no_grad():
        model.query_colour.mlp[2].bias.fill_(1.0)
    after = run()
    assert not torch.allclose(before.layers.pooled_logits, after.layers.pooled_logits)
    assert not torch.allclose(before.denoising.heads.pooled_logits, after.denoising.heads.pooled_logits)
    assert torch.equal(before.layers.boxes_cxcywh, after.layers.boxes_cxcywh)


def test_weights_files_with_and_without_it_load(tmp_path, check_optional_part_files):
    # A file written before the term existed has no `query_colour_grid` in its config: it loads without one.
    cfg = tiny_with_query_colour()
    check_optional_part_files(tmp_path, cfg, cfg.replace(heads=dataclasses.replace(cfg.heads, query_colour_grid=0)),
                              "query_colour", "mlp.2.weight")


def test_onnx_export_matches_torch_on_other_inputs():
    import onnxruntime as ort

    torch.manual_seed(0)
    module = QueryColour(d_model=16, grid=3).eval()
    with torch.no_grad():
        module.mlp[2].weight.normal_()
    images, valid_px, boxes = torch.randn(1, 3, 64, 96), torch.tensor([[90.0, 60.0]]), torch.rand(1, 7, 4) * 0.5 + 0.2
    program = torch.onnx.export(module, (images, valid_px, boxes), None, dynamo=True, opset_version=18)
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    other = (torch.randn(1, 3, 64, 96), torch.tensor([[70.0, 50.0]]), torch.rand(1, 7, 4) * 0.5 + 0.2)
    names = [i.name for i in session.get_inputs()]
    (got,) = session.run(None, dict(zip(names, [t.numpy() for t in other], strict=True)))
    with torch.no_grad():
        expected = module(*other)
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-5)
