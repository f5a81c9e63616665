"""uninext-export and uninext-build-engine from the command line: a run with progress and a summary, weights read
from a uninext-ros safetensors file, and exit code 2 with a one-line reason for bad input or a missing TensorRT."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from uninext_core.checkpoint.safetensors_io import save_weights
from uninext_core.config import r50, tiny
from uninext_core.deploy.backend import model_spec
from uninext_core.deploy.cli import build_engine_main, default_image_size, export_main, load_network
from uninext_core.deploy.export_manifest import ExportManifest, default_prompt_buckets
from uninext_core.model.build import build_model


def test_default_image_size_is_the_padded_test_size():
    assert default_image_size(r50()) == (800, 1344)  # reference §11.1: 800 x 1344 engines
    assert default_image_size(tiny()) == (320, 384)


@pytest.mark.filterwarnings("ignore")
def test_export_cli_writes_a_part_with_progress_and_summary(tmp_path, capsys, one_thread):
    out = tmp_path / "export"
    code = export_main(["--config", "tiny", "--parts", "text_encoder", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "uninext-export" in captured.err and "exporting text_encoder" in captured.err  # tqdm progress line
    assert "no --weights given" in captured.err
    buckets = list(default_prompt_buckets(model_spec("tiny")))
    assert "text_encoder: " in captured.out and f"prompt buckets {buckets}" in captured.out
    manifest = ExportManifest.load(out)
    assert list(manifest.parts) == ["text_encoder"] and manifest.image_size == (320, 384)
    assert manifest.config.fusion.fp16_safe_mask  # exported for fp16 engines by default


def test_export_cli_bad_input_exits_2_with_the_reason(tmp_path, capsys):
    assert export_main(["--config", "tiny", "--image-size", "300", "400", "--out", str(tmp_path)]) == 2
    assert "image_size must be multiples of 32" in capsys.readouterr().err
    assert export_main(["--config", "no-such-preset", "--out", str(tmp_path)]) == 2
    assert "is neither a preset" in capsys.readouterr().err
    assert export_main(["--weights", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_weights_come_from_a_safetensors_file_with_its_config(tmp_path):
    torch.manual_seed(1)
    model = build_model(tiny(video=False))
    path = save_weights(tmp_path / "tiny.safetensors", model.state_dict(), config=tiny(video=False))
    cfg, loaded = load_network(None, str(path), allow_random_text_init=False, fp16_safe_mask=True)
    assert cfg.name == "tiny" and not cfg.video and cfg.fusion.fp16_safe_mask
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(ValueError, match="holds weights of preset 'tiny'"):
        load_network("r50", str(path), allow_random_text_init=False, fp16_safe_mask=True)


def test_weights_without_the_packaged_text_encoder_get_it_from_its_package(tmp_path):
    """The shipped `tiny` file leaves the frozen MiniLM out; exporting it must refill it, as `load_model` does."""
    torch.manual_seed(2)
    model = build_model(tiny(video=False))
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("text_encoder.")}
    path = save_weights(tmp_path / "shipped_like.safetensors", state, config=tiny(video=False))
    for fp16_safe_mask in (False, True):
        cfg, loaded = load_network(None, str(path), allow_random_text_init=False, fp16_safe_mask=fp16_safe_mask)
        assert cfg.fusion.fp16_safe_mask is fp16_safe_mask
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_build_engine_cli_without_tensorrt_names_the_requirements(tmp_path, capsys):
    assert build_engine_main(["--export-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("uninext-build-engine: ") and "requirements-tensorrt.txt" in err


def test_build_engine_cli_int8_needs_calibration(tmp_path, capsys):
    assert build_engine_main(["--export-dir", str(tmp_path), "--precision", "int8"]) == 2
    assert "--precision int8 needs --calibration files" in capsys.readouterr().err
