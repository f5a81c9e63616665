"""The colour skip: cell means by hand, a no-op when untrained, gradients, config, weights files, ONNX export."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from uninext_core.config import r50, tiny
from uninext_core.model.build import build_model
from uninext_core.model.colour_skip import ColourSkip
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.train.optim import OptimizerSettings, parameter_lr


def levels_for(height: int, width: int, channels: int = 3) -> list[torch.Tensor]:
    """Zero maps at strides 8, 16, 32 and the stride-64 size of a stride-2, padding-1 convolution (ceil)."""
    sizes = [(height // 8, width // 8), (height // 16, width // 16), (height // 32, width // 32)]
    sizes.append((-(-sizes[-1][0] // 2), -(-sizes[-1][1] // 2)))
    return [torch.zeros(1, channels, h, w) for h, w in sizes]


def identity_skip() -> ColourSkip:
    """A skip whose projection copies the three colour channels."""
    skip = ColourSkip(d_model=3, num_levels=4)
    with torch.no_grad():
        for conv in skip.proj:
            conv.weight.copy_(torch.eye(3)[:, :, None, None])
    return skip


def test_each_level_gets_the_mean_colour_of_its_cells():
    images = torch.randn(1, 3, 96, 160, generator=torch.Generator().manual_seed(0))
    out = identity_skip()(images, levels_for(96, 160))
    # stride 8: the cell (row 2, col 5) is pixels 16..23 x 40..47
    assert torch.allclose(out[0][0, :, 2, 5], images[0, :, 16:24, 40:48].mean(dim=(1, 2)), atol=1e-6)
    # stride 32: 96 x 160 -> 3 x 5 cells of 32 x 32
    assert torch.allclose(out[2][0, :, 1, 4], images[0, :, 32:64, 128:160].mean(dim=(1, 2)), atol=1e-6)
    # stride 64 from a 3 x 5 grid: ceil -> 2 x 3; the last row and column average the cells that exist
    assert out[3].shape[-2:] == (2, 3)
    assert torch.allclose(out[3][0, :, 1, 2], images[0, :, 64:96, 128:160].mean(dim=(1, 2)), atol=1e-6)
    assert torch.allclose(out[3][0, :, 0, 0], images[0, :, 0:64, 0:64].mean(dim=(1, 2)), atol=1e-6)


def test_untrained_skip_adds_nothing_and_still_passes_gradients():
    skip = ColourSkip(d_model=8, num_levels=4)
    levels = [level.normal_() for level in levels_for(64, 96, channels=8)]
    images = torch.randn(1, 3, 64, 96)
    out = skip(images, levels)
    assert all(torch.equal(a, b) for a, b in zip(out, levels, strict=True))
    sum(o.square().sum() for o in out).backward()
    assert all(conv.weight.grad.abs().sum() > 0 and conv.bias.grad.abs().sum() > 0 for conv in skip.proj)


def test_wrong_levels_are_refused():
    skip = ColourSkip(d_model=3, num_levels=4)
    with pytest.raises(ValueError, match="expected 4 levels, got 3"):
        skip(torch.zeros(1, 3, 64, 64), levels_for(64, 64)[:3])
    levels = levels_for(64, 64)
    levels[1] = torch.zeros(1, 3, 5, 4)
    with pytest.raises(ValueError, match=r"level 1 is \(5, 4\), but the image pools to \(4, 4\) at stride 16"):
        skip(torch.zeros(1, 3, 64, 64), levels)
    with pytest.raises(ValueError, match="must be positive"):
        ColourSkip(d_model=0, num_levels=4)


def tiny_with_skip(video: bool = False):
    cfg = tiny(video=video)
    return cfg.replace(backbone=dataclasses.replace(cfg.backbone, colour_skip=True))


def test_no_preset_turns_it_on_and_it_trains_at_the_base_rate():
    # tiny had it on until the query-colour run: runs with it did not move REC (MODEL.md).
    assert not tiny().backbone.colour_skip and not r50().backbone.colour_skip
    assert build_model(r50(video=False), allow_random_text_init=True).colour_skip is None
    assert parameter_lr("colour_skip.proj.0.weight", OptimizerSettings(base_lr=1e-4, backbone_multiplier=0.1)) == 1e-4


def test_model_with_an_untrained_skip_equals_the_model_without_one():
    torch.manual_seed(0)
    cfg = tiny_with_skip()
    with_skip = build_model(cfg).eval()
    without = build_model(cfg.replace(backbone=dataclasses.replace(cfg.backbone, colour_skip=False))).eval()
    without.load_state_dict({k: v for k, v in with_skip.state_dict().items() if not k.startswith("colour_skip.")})
    images = torch.randn(1, 3, 128, 160)
    pixel_mask = torch.ones(1, 128, 160, dtype=torch.bool)
    prompt = PromptFeatures(torch.randn(1, 8, 384), torch.ones(1, 8, dtype=torch.bool))
    with torch.no_grad():
        expected = without(images, pixel_mask, prompt)
        got = with_skip(images, pixel_mask, prompt)
        for name, a, b in zip(expected._fields, expected, got, strict=True):
            assert torch.equal(a, b), name
        for conv in with_skip.colour_skip.proj:
            conv.weight.normal_(0.0, 0.5)
        moved = with_skip(images, pixel_mask, prompt)
    assert not torch.allclose(moved.boxes_cxcywh, expected.boxes_cxcywh)


def test_weights_files_with_and_without_the_skip_load(tmp_path, check_optional_part_files):
    # A file written before the skip existed has no `colour_skip` in its config: it loads without one.
    cfg = tiny_with_skip()
    check_optional_part_files(tmp_path, cfg, cfg.replace(backbone=dataclasses.replace(cfg.backbone, colour_skip=False)),
                              "colour_skip", "proj.2.weight")


def test_onnx_export_matches_torch_at_another_grid():
    import onnxruntime as ort

    skip = identity_skip().eval()
    with torch.no_grad():
        for conv in skip.proj:
            conv.bias.normal_()

    class Graph(torch.nn.Module):
        def forward(self, images: torch.Tensor, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor,
                    c6: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return tuple(skip(images, [c3, c4, c5, c6]))

    images = torch.randn(1, 3, 96, 160)
    levels = [level.normal_() for level in levels_for(96, 160)]
    program = torch.onnx.export(Graph().eval(), (images, *levels), None, dynamo=True, opset_version=18)
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    other = torch.randn(1, 3, 96, 160)
    names = [i.name for i in session.get_inputs()]
    outputs = session.run(None, dict(zip(names, [t.numpy() for t in (other, *levels)], strict=True)))
    with torch.no_grad():
        expected = skip(other, levels)
    for got, want in zip(outputs, expected, strict=True):
        assert torch.allclose(torch.from_numpy(got), want, atol=1e-5)
