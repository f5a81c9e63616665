"""Our safetensors files: round trip with the preset in the header, preset checks, and bad files."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from safetensors.torch import save_file

from uninext_core.checkpoint import CheckpointError, load_model, read_weights, save_weights
from uninext_core.checkpoint.safetensors_io import read_config
from uninext_core.config import from_yaml, tiny
from uninext_core.model.build import build_model


@pytest.fixture(scope="module")
def tiny_image():
    torch.manual_seed(0)
    config = tiny(video=False)
    return config, build_model(config)


def test_round_trip_keeps_tensors_and_configuration(tmp_path, tiny_image):
    config, model = tiny_image
    path = save_weights(tmp_path / "tiny.safetensors", model.state_dict(), config=config,
                        extra_metadata={"source_checkpoint": "none"})
    stored = read_weights(path, preset="tiny", video=False)
    assert stored.config == config
    assert stored.metadata["uninext.preset"] == "tiny" and stored.metadata["uninext.video"] == "false"
    assert stored.metadata["source_checkpoint"] == "none"
    assert from_yaml(stored.metadata["uninext.config"]) == config
    expected = model.state_dict()
    assert list(stored.state_dict) == sorted(expected)  # safetensors stores keys sorted
    for key, tensor in expected.items():
        assert torch.equal(stored.state_dict[key], tensor), key

    loaded = load_model(path)
    assert not loaded.training
    for key, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[key]), key


def test_folder_paths_are_not_stored(tmp_path, tiny_image):
    config, model = tiny_image
    local = config.replace(text=dataclasses.replace(config.text, path="/somewhere/on/this/machine"))
    path = save_weights(tmp_path / "w.safetensors", model.state_dict(), config=local)
    assert read_weights(path).config.text.path is None


def test_another_preset_or_variant_is_refused(tmp_path, tiny_image):
    config, model = tiny_image
    path = save_weights(tmp_path / "tiny.safetensors", model.state_dict(), config=config)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))} holds weights of preset 'tiny' \(image\), "
                                              r"but preset 'r50' \(image\) was requested$"):
        read_weights(path, preset="r50")
    with pytest.raises(CheckpointError, match=r"preset 'tiny' \(image\), but preset 'tiny' \(video\) was requested"):
        load_model(path, preset="tiny", video=True)


def test_weights_that_do_not_fit_the_stored_preset_name_the_keys(tmp_path, tiny_image):
    config, model = tiny_image
    state = dict(model.state_dict())
    del state["transformer.level_embed"]
    state["mask_head.lay1.weight"] = torch.zeros(3, 3)
    path = save_weights(tmp_path / "broken.safetensors", state, config=config)
    with pytest.raises(CheckpointError) as caught:
        load_model(path)
    assert str(caught.value) == (
        f"{path}: the weights do not fit preset 'tiny' (image): 1 tensors of the wrong shape (first: "
        f"mask_head.lay1.weight: got (3, 3), expected (32, 128, 3, 3)); "
        f"1 missing keys (first: transformer.level_embed)")


def test_foreign_and_truncated_files(tmp_path, tiny_image):
    plain = tmp_path / "plain.safetensors"
    save_file({"a": torch.ones(2)}, str(plain))
    with pytest.raises(CheckpointError, match=r"not a uninext-ros weights file .*convert official \.pth checkpoints "
                                              r"with uninext-convert"):
        read_weights(plain)
    config, model = tiny_image
    path = save_weights(tmp_path / "tiny.safetensors", model.state_dict(), config=config)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: truncated or corrupted safetensors file"):
        read_weights(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_weights(tmp_path / "absent.safetensors")


def test_reserved_metadata_keys_are_refused(tmp_path, tiny_image):
    config = tiny_image[0]
    with pytest.raises(ValueError, match=r"must not start with 'uninext\.', got \['uninext\.preset'\]"):
        save_weights(tmp_path / "x.safetensors", {}, config=config, extra_metadata={"uninext.preset": "r50"})


def test_read_config_checks_the_header_without_reading_tensors(tmp_path, tiny_image):
    config, model = tiny_image
    path = save_weights(tmp_path / "tiny.safetensors", model.state_dict(), config=config)
    assert read_config(path, preset="tiny", video=False) == config
    with pytest.raises(CheckpointError, match=r"holds weights of preset 'tiny' \(image\), but preset 'vit_h'"):
        read_config(path, preset="vit_h")


def test_weights_without_the_frozen_packaged_text_encoder_load_it_from_the_package(tmp_path, tiny_image):
    config, model = tiny_image
    assert config.text.frozen and config.text.path is None  # tiny: the packaged MiniLM, frozen
    without_text = {k: v.half() for k, v in model.state_dict().items() if not k.startswith("text_encoder.")}
    path = save_weights(tmp_path / "shipped.safetensors", without_text, config=config)
    loaded = load_model(path)
    for key, tensor in loaded.state_dict().items():
        if key.startswith("text_encoder."):  # from the package, the same files `model` was built from
            assert torch.equal(tensor, model.state_dict()[key]), key
        elif tensor.is_floating_point():
            assert tensor.dtype == torch.float32, key
            torch.testing.assert_close(tensor, model.state_dict()[key].half().float(), rtol=0, atol=0)


def test_a_trained_text_encoder_may_not_be_left_out(tmp_path, tiny_image):
    config, model = tiny_image
    trained_text = config.replace(text=dataclasses.replace(config.text, frozen=False))
    without_text = {k: v for k, v in model.state_dict().items() if not k.startswith("text_encoder.")}
    path = save_weights(tmp_path / "no_text.safetensors", without_text, config=trained_text)
    with pytest.raises(CheckpointError, match=r"missing keys \(first: text_encoder\."):
        load_model(path)
