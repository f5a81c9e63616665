"""Bad input to the converter: each case raises CheckpointError naming the file and the first offending keys."""

from __future__ import annotations

import argparse
import pickle
import re

import numpy as np
import pytest
import torch
import torchvision

from uninext_core.checkpoint import (
    CheckpointError,
    convert_official_checkpoint,
    convert_state_dict,
    expected_state_dict,
    from_official,
    official_config,
    read_official_checkpoint,
)


@pytest.fixture
def small_official(tables) -> dict[str, torch.Tensor]:
    """Rows 3-40 of the R50 image table (BERT embedding norms and layers 0-2, no word embeddings), real values."""
    return tables.synthetic_state_dict(tables.official_rows("r50", video=False)[3:40], seed=9)


@pytest.mark.parametrize("nested", [True, False])
def test_checkpoint_of_another_model_names_its_first_keys(tmp_path, nested: bool):
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save({"model": state} if nested else state, path)
    with pytest.raises(CheckpointError) as caught:
        convert_official_checkpoint(path, preset="r50", video=True)
    message = str(caught.value)
    assert str(path) in message
    assert f"{len(state)} unexpected keys (first: conv1.weight, bn1.weight, bn1.bias, bn1.running_mean, " \
           f"bn1.running_var)" in message
    assert "missing keys of our model (first: backbone.body.conv1.weight" in message
    assert f"None of its {len(state)} keys is an official UNINEXT key: this is a checkpoint of another model" in message


@pytest.mark.parametrize("legacy", [False, True])
def test_truncated_file_is_refused(tmp_path, small_official, legacy: bool):
    path = tmp_path / "model_final.pth"
    torch.save({"model": small_official}, path, _use_new_zipfile_serialization=not legacy)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: truncated or corrupted checkpoint"):
        read_official_checkpoint(path)


def test_pickled_python_objects_are_refused(tmp_path, small_official):
    path = tmp_path / "with_args.pth"
    torch.save({"model": small_official, "args": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(CheckpointError) as caught:
        read_official_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: the checkpoint contains pickled Python objects; only tensors are accepted")
    assert "argparse.Namespace" in message


def test_plain_pickle_with_numpy_arrays_is_refused(tmp_path):
    path = tmp_path / "R-50.pkl"  # detectron2's ImageNet weights are a pickle of numpy arrays
    with path.open("wb") as handle:
        pickle.dump({"model": {"stem.conv1.weight": np.ones((64, 3, 7, 7), dtype=np.float32)}}, handle, protocol=2)
    with pytest.raises(CheckpointError, match="contains pickled Python objects; only tensors are accepted"):
        read_official_checkpoint(path)


def test_shape_mismatch_names_the_key_both_shapes_and_the_file(tmp_path, r50_checkpoint):
    official = read_official_checkpoint(r50_checkpoint(False))
    official["detr.detr.input_proj.1.0.weight"] = torch.zeros(256, 768, 1, 1)  # a ConvNeXt-L C4 width
    path = tmp_path / "edited.pth"
    torch.save({"model": official}, path)
    with pytest.raises(CheckpointError) as caught:
        convert_official_checkpoint(path, preset="r50", video=False)
    assert str(caught.value) == (
        f"{path}: cannot convert to preset 'r50' (image, backbone resnet50): 1 tensors of the wrong shape or dtype "
        f"(first: detr.detr.input_proj.1.0.weight -> input_proj.levels.1.0.weight: got (256, 768, 1, 1) float32, "
        f"expected (256, 1024, 1, 1) float32)")


def test_convnext_checkpoint_for_the_r50_preset_says_which_backbone_it_holds(tables):
    official = tables.synthetic_state_dict(tables.official_rows("convnext_l", video=True), meta=True)
    config = official_config("r50", video=True)
    report = convert_state_dict(official, expected=expected_state_dict(config), config=config, source="cl.pth").report
    message = report.error_message()
    assert not report.ok and len(report.unexpected) == 2 * 346
    assert message.startswith("cl.pth: cannot convert to preset 'r50' (video, backbone resnet50): ")
    assert "unexpected keys (first: detr.detr.backbone.0.backbone.downsample_layers.0.0.weight" in message
    assert "shape or dtype (first: detr.detr.input_proj.0.0.weight -> input_proj.levels.0.0.weight: got " \
           "(256, 384, 1, 1) float32, expected (256, 512, 1, 1) float32" in message
    assert message.endswith("The checkpoint holds a convnext_large backbone; choose the matching preset "
                            "(r50, convnext_l, vit_h)")


def test_image_checkpoint_for_a_video_model_names_the_missing_template_keys(tables):
    official = tables.synthetic_state_dict(tables.official_rows("r50", video=False), meta=True)
    config = official_config("r50", video=True)
    report = convert_state_dict(official, expected=expected_state_dict(config), config=config, source="img.pth").report
    assert len(report.missing) == 265 + 54 + 8 + 2 and report.unexpected == []
    assert "missing keys of our model (first: template_encoder.backbone.body.conv1.weight" in report.error_message()
    assert report.error_message().endswith("The checkpoint is an image-stage model (no template branch or re-ID "
                                           "head); convert it as an image model")


@pytest.mark.parametrize(("content", "expected"), [
    ({"state": {"a": torch.ones(1)}, "iteration": 3}, r"no 'model' state dict; expected a detectron2 checkpoint"),
    ({"model": {"a": torch.ones(1), "b": 3, "c": "x"}},
     r"2 'model' entries are not name -> tensor \(first: 'b' \(int\)"),
    ({"model": {}}, r"'model' must be a non-empty mapping"),
    ({"model": {"a": torch.empty(3, device="meta")}}, r"1 tensors hold no data \(meta device; first: a\)"),
])
def test_checkpoint_structure_errors(tmp_path, content, expected: str):
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: {expected}"):
        read_official_checkpoint(path)


def test_missing_file_and_foreign_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_official_checkpoint(tmp_path / "absent.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint \(starts with b'not '"):
        from_official(text, preset="r50", video=True)
