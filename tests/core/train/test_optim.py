"""AdamW parameter groups with the official LR multipliers, and the warm-up multi-step schedule by hand."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from uninext_core.train.optim import (
    OptimizerSettings,
    WarmupMultiStep,
    build_optimizer,
    build_scheduler,
    parameter_groups,
    parameter_lr,
    warmup_multistep_factor,
)

SETTINGS = OptimizerSettings(base_lr=2e-4, backbone_multiplier=0.1, linear_proj_multiplier=0.1, text_encoder_lr=1e-5,
                             fusion_lr=3e-4)


@pytest.mark.parametrize(("name", "expected"), [
    ("backbone.body.conv1.weight", 2e-5),
    ("template_encoder.backbone.body.layer1.0.conv1.weight", 2e-5),
    ("template_encoder.adjust_layer.weight", 2e-4),
    ("text_encoder.model.encoder.layer.0.attention.self.query.weight", 1e-5),
    ("transformer.fusion.attn.v_proj.weight", 3e-4),
    ("transformer.encoder.layers.0.self_attn.sampling_offsets.weight", 2e-5),
    ("transformer.decoder.layers.1.cross_attn.sampling_offsets.bias", 2e-5),
    ("transformer.decoder.layers.1.cross_attn.attention_weights.weight", 2e-4),
    ("class_embed.0.bias0", 2e-4),
    ("reid_head.layers.0.cross_attn.sampling_offsets.weight", 2e-5),
])
def test_parameter_lr_follows_the_official_rules(name: str, expected: float) -> None:
    assert parameter_lr(name, SETTINGS) == pytest.approx(expected)


def test_fusion_lr_defaults_to_the_base_lr() -> None:
    assert parameter_lr("transformer.fusion.gamma_v", OptimizerSettings(base_lr=1e-4)) == pytest.approx(1e-4)


class _Named(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.head = nn.Linear(2, 1)
        self.text_encoder = nn.Linear(2, 2)
        self.text_encoder.weight.requires_grad_(False)


def test_parameter_groups_split_by_lr_and_skip_frozen_parameters() -> None:
    model = _Named()
    groups = parameter_groups(model, SETTINGS)
    by_lr = {round(g["lr"], 12): g for g in groups}
    assert sorted(by_lr) == [1e-5, 2e-5, 2e-4]
    assert len(by_lr[2e-5]["params"]) == 2  # backbone weight and bias
    assert len(by_lr[1e-5]["params"]) == 1  # text bias only: the frozen weight is left out
    assert all(g["weight_decay"] == 0.05 for g in groups)
    optimizer = build_optimizer(model, SETTINGS)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 5


def test_warmup_multistep_factor_by_hand() -> None:
    schedule = {"steps": [10, 20], "gamma": 0.1, "warmup_iters": 4, "warmup_factor": 0.1}
    assert warmup_multistep_factor(0, **schedule) == pytest.approx(0.1)
    assert warmup_multistep_factor(2, **schedule) == pytest.approx(0.1 * 0.5 + 0.5)
    assert warmup_multistep_factor(4, **schedule) == pytest.approx(1.0)
    assert warmup_multistep_factor(9, **schedule) == pytest.approx(1.0)
    assert warmup_multistep_factor(10, **schedule) == pytest.approx(0.1)
    assert warmup_multistep_factor(25, **schedule) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="increasing"):
        warmup_multistep_factor(0, steps=[20, 10])


def test_scheduler_state_round_trips_through_a_weights_only_file() -> None:
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(model, OptimizerSettings(base_lr=1.0))
    scheduler = build_scheduler(optimizer, steps=[3], gamma=0.5, warmup_iters=0)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.5])
    buffer = io.BytesIO()
    torch.save({"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh_optimizer = build_optimizer(nn.Linear(2, 2), OptimizerSettings(base_lr=1.0))
    fresh = build_scheduler(fresh_optimizer, steps=[3], gamma=0.5)
    fresh.load_state_dict(state["scheduler"])
    assert fresh.last_epoch == 5 and isinstance(fresh.lr_lambdas[0], WarmupMultiStep)


def test_negative_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="base_lr"):
        OptimizerSettings(base_lr=-1.0)


def test_colour_skip_multiplier_scales_only_the_colour_skip() -> None:
    settings = OptimizerSettings(base_lr=1e-4, backbone_multiplier=0.5, colour_skip_multiplier=20.0)
    assert parameter_lr("colour_skip.proj.3.bias", settings) == pytest.approx(2e-3)
    assert parameter_lr("input_proj.levels.0.0.weight", settings) == pytest.approx(1e-4)
    assert parameter_lr("backbone.body.features.0.0.weight", settings) == pytest.approx(5e-5)
    with pytest.raises(ValueError, match="colour_skip_multiplier must be >= 0"):
        OptimizerSettings(colour_skip_multiplier=-1.0)
