"""The text adapter: identity when untrained, standard masked attention when trained, and how it loads and trains."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from uninext_core.checkpoint.safetensors_io import load_model, save_weights
from uninext_core.config import TextEncoderConfig, r50, tiny
from uninext_core.model.build import build_model
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.text_adapter import TextAdapter, TextAdapterLayer
from uninext_core.train.optim import OptimizerSettings, parameter_lr


def randomized(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """`module` with every parameter moved off its initial value (an untrained adapter is the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.2 * torch.randn(parameter.shape, generator=g))
    return module


def prompt(batch: int = 2, tokens: int = 6, width: int = 8, valid: tuple[int, ...] = (4, 6)) -> PromptFeatures:
    hidden = torch.randn(batch, tokens, width, generator=torch.Generator().manual_seed(1))
    mask = torch.arange(tokens)[None, :] < torch.tensor(valid)[:, None]
    return PromptFeatures(hidden, mask)


def test_untrained_adapter_is_the_identity():
    features = prompt()
    out = TextAdapter(width=8, num_layers=2, num_heads=2, ffn_dim=16)(features)
    assert torch.equal(out.hidden, features.hidden) and torch.equal(out.mask, features.mask)


def test_layer_equals_a_pre_norm_encoder_layer_written_out():
    layer = randomized(TextAdapterLayer(width=8, num_heads=2, ffn_dim=16), seed=0).eval()
    features = prompt()
    x, mask = features.hidden, features.mask
    # The same layer with torch's reference attention (boolean mask: True = attend).
    q, k, v = layer.qkv(F.layer_norm(x, (8,), layer.norm_attn.weight, layer.norm_attn.bias)).chunk(3, dim=-1)
    heads = [t.reshape(2, 6, 2, 4).transpose(1, 2) for t in (q, k, v)]
    attended = F.scaled_dot_product_attention(*heads, attn_mask=mask[:, None, None, :])
    x = x + layer.out_proj(attended.transpose(1, 2).reshape(2, 6, 8))
    h = F.layer_norm(x, (8,), layer.norm_ffn.weight, layer.norm_ffn.bias)
    expected = x + layer.ffn_out(0.5 * layer.ffn_in(h) * (1 + torch.erf(layer.ffn_in(h) / math.sqrt(2))))
    with torch.no_grad():
        assert torch.allclose(layer(features.hidden, mask), expected, atol=1e-5)


def test_padded_tokens_do_not_change_the_valid_ones():
    adapter = randomized(TextAdapter(width=8, num_layers=2, num_heads=2, ffn_dim=16), seed=2).eval()
    features = prompt()
    other = features.hidden.clone()
    other[~features.mask] = 1e3 * torch.randn(int((~features.mask).sum()), 8)
    with torch.no_grad():
        a, b = adapter(features).hidden, adapter(PromptFeatures(other, features.mask)).hidden
    assert torch.allclose(a[features.mask], b[features.mask], atol=1e-5)
    assert torch.isfinite(b).all()


def test_identity_start_still_passes_gradients_to_every_parameter():
    adapter = TextAdapter(width=8, num_layers=2, num_heads=2, ffn_dim=16)
    features = prompt()
    hidden = features.hidden.requires_grad_(True)
    (adapter(PromptFeatures(hidden, features.mask)).hidden * torch.randn(2, 6, 8)).sum().backward()
    # The zero-initialised output projections get gradients at once; the rest once those move (next step).
    layer = adapter.layers[0]
    assert layer.out_proj.weight.grad.abs().sum() > 0 and layer.ffn_out.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs", [{"adapter_layers": -1}, {"adapter_layers": 2, "adapter_heads": 5},
                                    {"adapter_layers": 1, "adapter_ffn_dim": 0}])
def test_bad_adapter_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="adapter"):
        TextEncoderConfig(hidden_dim=384, **kwargs)


def test_no_preset_turns_the_adapter_on():
    # tiny had it on until the query-colour run: runs with it did not move REC (MODEL.md), so the shipped file and
    # the preset leave it off; recipes that trained it pin it on.
    assert tiny().text.adapter_layers == 0
    assert r50().text.adapter_layers == 0


def test_adapter_trains_at_the_base_learning_rate_not_the_text_encoder_rate():
    settings = OptimizerSettings(base_lr=1e-4, text_encoder_lr=1e-5)
    assert parameter_lr("text_adapter.layers.0.qkv.weight", settings) == 1e-4
    assert parameter_lr("text_encoder.body.encoder.layer.0.output.dense.weight", settings) == 1e-5


def test_weights_file_round_trip_keeps_the_adapter_and_files_without_one_still_load(tmp_path):
    torch.manual_seed(0)
    cfg = tiny(video=False)
    cfg = cfg.replace(text=dataclasses.replace(cfg.text, adapter_layers=2))
    model = build_model(cfg).eval()
    randomized(model.text_adapter, seed=3)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("text_encoder.")}
    loaded = load_model(save_weights(tmp_path / "with.safetensors", state, config=cfg))
    tokens = model.text_encoder.tokenize(["the second red circle from the left"])
    with torch.no_grad():
        assert torch.equal(loaded.encode_text(*tokens).hidden, model.encode_text(*tokens).hidden)
        assert not torch.allclose(model.encode_text(*tokens).hidden, model.text_encoder(*tokens).hidden)

    # A file written before the adapter existed records adapter_layers 0 and loads as it was trained.
    old_cfg = cfg.replace(text=dataclasses.replace(cfg.text, adapter_layers=0))
    old_state = {k: v for k, v in state.items() if not k.startswith("text_adapter.")}
    old = load_model(save_weights(tmp_path / "without.safetensors", old_state, config=old_cfg))
    assert old.text_adapter is None
    with torch.no_grad():
        assert torch.equal(old.encode_text(*tokens).hidden, model.text_encoder(*tokens).hidden)


def test_onnx_export_of_a_trained_adapter_matches_torch():
    import onnxruntime as ort

    adapter = randomized(TextAdapter(width=8, num_layers=2, num_heads=2, ffn_dim=16), seed=4).eval()

    class Graph(torch.nn.Module):
        def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return adapter(PromptFeatures(hidden, mask)).hidden

    features = prompt(batch=1, valid=(3,))
    program = torch.onnx.export(Graph().eval(), (features.hidden, features.mask), None, dynamo=True, opset_version=18,
                                input_names=["hidden", "mask"], output_names=["out"])
    session = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    other = prompt(batch=1, valid=(5,))
    (out,) = session.run(None, {"hidden": other.hidden.numpy(), "mask": other.mask.numpy()})
    with torch.no_grad():
        expected = adapter(other).hidden
    assert torch.allclose(torch.from_numpy(out), expected, atol=1e-5)
