"""Checkpoints: safetensors round trip with the preset in the header, preset mismatch, stage-3 template init,
weights-only trainer state with RNG states, newest-checkpoint bookkeeping."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from uninext_core.config import r50, tiny
from uninext_core.train import checkpointing as ckpt
from uninext_core.train.optim import OptimizerSettings, build_optimizer, build_scheduler


class _Body(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 4, 3)
        self.bn1 = nn.BatchNorm2d(4)


class _Backbone(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.body = _Body(in_channels)


class _Template(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = _Backbone(4)


class _Model(nn.Module):
    """Key layout of Uninext in miniature: backbone, a head, a text encoder and (video) a template branch."""

    def __init__(self, *, video: bool) -> None:
        super().__init__()
        self.backbone = _Backbone(3)
        self.head = nn.Linear(4, 2)
        self.text_encoder = nn.Linear(2, 2)
        self.template_encoder = _Template() if video else None


def _seeded(video: bool, seed: int) -> _Model:
    torch.manual_seed(seed)
    return _Model(video=video)


def test_model_round_trip_keeps_every_tensor_and_the_preset(tmp_path) -> None:
    model = _seeded(False, 0)
    model.backbone.body.bn1.running_mean.fill_(0.25)
    path = ckpt.save_model(model, tmp_path / "m.safetensors", config=tiny(video=False), step=7)
    stored = ckpt.read_checkpoint(path, config=tiny(video=False))
    assert stored.metadata["uninext.preset"] == "tiny" and stored.metadata["training.step"] == "7"
    assert stored.config == tiny(video=False)
    fresh = _seeded(False, 1)
    assert ckpt.load_model(fresh, path, config=tiny(video=False)) == 7
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


def test_checkpoint_without_text_encoder_loads_and_half_precision_casts(tmp_path) -> None:
    model = _seeded(False, 0)
    path = ckpt.save_model(model, tmp_path / "m.safetensors", config=tiny(video=False), include_text_encoder=False,
                           dtype=torch.float16)
    tensors = ckpt.read_tensors(path)
    assert not any(k.startswith("text_encoder.") for k in tensors)
    assert tensors["head.weight"].dtype == torch.float16
    assert tensors["backbone.body.bn1.num_batches_tracked"].dtype == torch.int64
    fresh = _seeded(False, 1)
    text_before = fresh.text_encoder.weight.clone()
    ckpt.load_model(fresh, path, config=tiny(video=False))
    assert torch.equal(fresh.text_encoder.weight, text_before)  # left to the packaged encoder
    torch.testing.assert_close(fresh.head.weight, model.head.weight, atol=1e-3, rtol=1e-3)


def test_checkpoint_of_another_preset_is_a_clear_error(tmp_path) -> None:
    path = ckpt.save_model(_seeded(False, 0), tmp_path / "m.safetensors", config=tiny(video=False))
    with pytest.raises(ValueError, match=r"holds weights of preset 'tiny' \(image\), but preset 'r50' \(image\) was"):
        ckpt.load_model(_seeded(False, 0), path, config=r50(video=False))
    with pytest.raises(ValueError, match="holds weights of preset 'tiny'"):
        ckpt.init_from_checkpoint(_seeded(True, 0), path, config=r50())


def test_foreign_or_missing_files_are_rejected(tmp_path) -> None:
    save_file({"x": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a uninext-ros weights file"):
        ckpt.read_tensors(tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="does not exist"):
        ckpt.read_tensors(tmp_path / "absent.safetensors")
    path = ckpt.save_model(_seeded(True, 0), tmp_path / "video.safetensors", config=tiny())
    with pytest.raises(ValueError, match=r"\(video\), but preset 'tiny' \(image\) was requested"):
        ckpt.load_model(_seeded(False, 0), path, config=tiny(video=False))
    with pytest.raises(ValueError, match="unexpected"):
        ckpt.load_model(_seeded(False, 0), path, config=tiny())


def test_stage3_init_copies_the_backbone_into_the_template_branch(tmp_path) -> None:
    image_model = _seeded(False, 0)
    path = ckpt.save_model(image_model, tmp_path / "stage2.safetensors", config=tiny(video=False))
    video_model = _seeded(True, 1)
    fresh = ckpt.init_from_checkpoint(video_model, path, config=tiny())
    assert fresh == []  # every key came from the checkpoint (template branch from the backbone)
    template_conv = video_model.template_encoder.backbone.body.conv1.weight
    assert template_conv.shape == (4, 4, 3, 3)
    assert torch.equal(template_conv[:, :3], image_model.backbone.body.conv1.weight)
    assert torch.count_nonzero(template_conv[:, 3]) == 0  # zero-initialised 4th (target prior) channel
    assert torch.equal(video_model.template_encoder.backbone.body.conv1.bias, image_model.backbone.body.conv1.bias)
    assert torch.equal(video_model.head.weight, image_model.head.weight)


def test_trainer_state_round_trips_with_weights_only_and_restores_rng(tmp_path) -> None:
    model = nn.Linear(3, 2)
    optimizer = build_optimizer(model, OptimizerSettings(base_lr=0.1))
    scheduler = build_scheduler(optimizer, steps=[2])
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    state = {"step": 1, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "rng": ckpt.capture_rng_state()}
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.save_trainer_state(tmp_path / "t.pt", state)
    loaded = ckpt.load_trainer_state(tmp_path / "t.pt")  # torch.load(weights_only=True) inside
    ckpt.restore_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    fresh = build_optimizer(nn.Linear(3, 2), OptimizerSettings(base_lr=0.1))
    fresh.load_state_dict(loaded["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_mark_complete_keeps_the_two_newest_checkpoints(tmp_path) -> None:
    assert ckpt.last_complete_step(tmp_path) is None
    model = nn.Linear(1, 1)
    for step in (10, 20, 30):
        ckpt.save_model(model, ckpt.model_path(tmp_path, step), config=tiny(video=False), step=step)
        ckpt.save_trainer_state(ckpt.trainer_path(tmp_path, step, 0), {"step": step})
        ckpt.mark_complete(tmp_path, step)
    assert ckpt.last_complete_step(tmp_path) == 30
    names = sorted(p.name for p in ckpt.checkpoint_dir(tmp_path).iterdir())
    assert names == ["last_checkpoint", "model_0000020.safetensors", "model_0000030.safetensors",
                     "trainer_0000020_rank0.pt", "trainer_0000030_rank0.pt"]
