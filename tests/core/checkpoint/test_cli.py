"""`uninext-convert` end to end: a synthetic official R50 checkpoint -> safetensors + report -> load_model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import torchvision

from uninext_core.checkpoint import load_model, read_official_checkpoint
from uninext_core.checkpoint.cli import main, report_path


def test_report_path_sits_next_to_the_output():
    assert report_path(Path("out/r50.safetensors")) == Path("out/r50.report.json")
    assert report_path(Path("weights.bin")) == Path("weights.bin.report.json")


def test_converts_a_video_checkpoint_to_an_image_model_and_the_result_loads(tmp_path, r50_checkpoint, capsys):
    source = r50_checkpoint(True)
    out = tmp_path / "r50_image.safetensors"
    assert main(["--checkpoint", str(source), "--preset", "r50", "--image", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "preset r50 (image): 844 tensors mapped (0 reshaped, 0 cast), 74 aliases checked (0 differ), " \
           "331 skipped, 0 missing, 0 unexpected, 0 shape/dtype mismatches; text encoder from checkpoint" in printed
    assert f"wrote {out} (844 tensors" in printed

    report = json.loads((tmp_path / "r50_image.report.json").read_text())
    assert report["ok"] and report["video"] is False and report["checkpoint_is_video"] is True
    assert report["counts"] == {"mapped": 844, "reshaped": 0, "cast": 0, "aliases": 74, "alias_mismatches": 0,
                                "skipped": 331, "missing": 0, "unexpected": 0, "mismatches": 0}
    assert report["skipped"]["criterion._iter"].startswith("loss state")
    assert report["mapped"]["detr.detr.transformer.encoder.layers.2.norm1.weight"] == \
        "transformer.encoder.layers.2.norm_self_attn.weight"

    model = load_model(out, preset="r50", video=False)
    official, ours = read_official_checkpoint(source), model.state_dict()
    for official_key, our_key in report["mapped"].items():
        assert torch.equal(ours[our_key], official[official_key]), official_key


def test_failure_exits_nonzero_names_the_first_keys_and_writes_only_the_report(tmp_path, capsys):
    torch.manual_seed(0)
    source = tmp_path / "resnet18.pth"
    torch.save({"model": torchvision.models.resnet18(weights=None).state_dict()}, source)
    out = tmp_path / "r50.safetensors"
    assert main(["--checkpoint", str(source), "--preset", "r50", "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert f"uninext-convert: {source}: cannot convert to preset 'r50' (image, backbone resnet50)" in error
    assert "unexpected keys (first: conv1.weight, bn1.weight, bn1.bias" in error
    assert not out.exists()
    report = json.loads((tmp_path / "r50.report.json").read_text())
    assert report["ok"] is False and report["unexpected"][0] == "conv1.weight"


def test_unreadable_checkpoint_exits_nonzero_without_writing(tmp_path, capsys):
    source = tmp_path / "pickled.pth"
    torch.save({"model": {"a": torch.ones(1)}, "cfg": argparse.Namespace()}, source)
    out = tmp_path / "x.safetensors"
    assert main(["--checkpoint", str(source), "--preset", "vit_h", "--video", "--out", str(out)]) == 1
    assert "the checkpoint contains pickled Python objects; only tensors are accepted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [source]


def test_bad_arguments_exit_with_status_2(tmp_path):
    with pytest.raises(SystemExit) as caught:
        main(["--checkpoint", "x.pth", "--preset", "tiny", "--out", str(tmp_path / "y.safetensors")])
    assert caught.value.code == 2
    with pytest.raises(SystemExit) as caught:
        main(["--checkpoint", "x.pth", "--preset", "r50", "--video", "--image", "--out", "y.safetensors"])
    assert caught.value.code == 2
