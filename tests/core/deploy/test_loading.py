"""load_backend: the one way the node, uninext-eval and the rosbag tools load a model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from uninext_core.checkpoint.safetensors_io import save_weights
from uninext_core.config import r50, tiny, to_yaml
from uninext_core.deploy.export_manifest import ExportManifest
from uninext_core.deploy.loading import LoadedBackend, graph_input_size, load_backend, shipped_weights
from uninext_core.deploy.onnxruntime_backend import OnnxRuntimeBackend
from uninext_core.deploy.torch_backend import TorchBackend
from uninext_core.model.build import build_model
from uninext_core.prompts import CategoryPrompt
from uninext_core.tasks.session import Session
from uninext_core.tasks.session_config import SessionConfig


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    config = tiny()
    model = build_model(config)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(path, model.state_dict(), config=config)
    return path, {k: v.clone() for k, v in model.state_dict().items()}


def test_torch_backend_from_safetensors_carries_the_file_weights(tiny_weights) -> None:
    path, state = tiny_weights
    loaded = load_backend(preset="tiny", checkpoint=str(path))
    assert isinstance(loaded, LoadedBackend)
    assert isinstance(loaded.backend, TorchBackend)
    assert loaded.config.name == "tiny" and loaded.weights == str(path)
    assert loaded.description == f"tiny on torch (cpu), weights {path}"
    assert loaded.tokenizer.is_fast
    loaded_state = loaded.backend.model.state_dict()
    assert all(torch.equal(loaded_state[k], v) for k, v in state.items())
    # The bundle serves a real session.
    torch.set_num_threads(1)
    session = Session(loaded.backend, tokenizer=loaded.tokenizer,
                      config=SessionConfig(input_short_side=96, input_max_size=128))
    session.set_prompt(CategoryPrompt(("circle", "square")))
    frame = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    instances = session.process(frame, stamp_ns=1)
    assert instances.task == "instance_segmentation" and instances.image_size == (96, 128)


def test_checkpoint_of_another_preset_is_refused_naming_both(tiny_weights) -> None:
    path, _ = tiny_weights
    with pytest.raises(ValueError, match=r"tiny.*r50|r50.*tiny"):
        load_backend(preset="r50", checkpoint=str(path))


def test_missing_checkpoint_and_missing_shipped_weights(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"nowhere\.safetensors does not exist"):
        load_backend(preset="tiny", checkpoint=str(tmp_path / "nowhere.safetensors"))
    assert not shipped_weights("r50").exists()
    with pytest.raises(ValueError, match=r"no weights shipped for preset 'r50'"):
        load_backend(preset="r50", checkpoint="")


def test_backend_names_and_engine_path_are_checked(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"unknown backend 'tflite'"):
        load_backend(preset="tiny", checkpoint="x", backend="tflite")
    with pytest.raises(ValueError, match=r"'onnxruntime' needs engine_path"):
        load_backend(preset="tiny", backend="onnxruntime")
    with pytest.raises(ValueError, match=r"not a folder written by uninext-export"):
        load_backend(preset="tiny", backend="onnxruntime", engine_path=str(tmp_path / "missing"))


def test_export_of_another_preset_is_refused(tmp_path) -> None:
    manifest = ExportManifest(preset="r50", config_yaml=to_yaml(r50()), image_size=(800, 1344),
                              prompt_buckets=(16, 256), opset=18, exporter="test", parts={})
    manifest.save(tmp_path)
    with pytest.raises(ValueError, match=r"exported from preset 'r50', but preset 'tiny'"):
        load_backend(preset="tiny", backend="onnxruntime", engine_path=str(tmp_path))


def test_onnxruntime_backend_from_an_export_folder(tiny_export) -> None:
    loaded = load_backend(preset="tiny", backend="onnxruntime", engine_path=str(tiny_export.directory))
    assert isinstance(loaded.backend, OnnxRuntimeBackend)
    assert loaded.config == tiny_export.cfg or dataclasses.asdict(loaded.config) == dataclasses.asdict(tiny_export.cfg)
    assert loaded.description.startswith("tiny on onnxruntime (exported)")
    assert loaded.tokenizer.is_fast


@pytest.mark.parametrize("option", ["fp16", "cuda_graphs"])
def test_gpu_options_are_refused_off_torch_cuda(option: str) -> None:
    with pytest.raises(ValueError, match=rf"{option} needs the torch backend on a CUDA device \(got backend 'torch', "
                                         r"device 'cpu'\)"):
        load_backend(preset="tiny", **{option: True})
    with pytest.raises(ValueError, match=rf"{option} needs the torch backend on a CUDA device \(got backend "
                                         r"'onnxruntime'"):
        load_backend(preset="tiny", backend="onnxruntime", device="cuda", **{option: True})


def test_graph_input_size_is_the_landscape_frame_the_session_makes() -> None:
    # tiny resizes to short side 320, long side at most 384; r50 to 800 / 1333, padded to multiples of 32
    assert graph_input_size(tiny()) == (320, 384)
    assert graph_input_size(r50()) == (800, 1344)
    assert graph_input_size(tiny(), short_side=480, max_size=640) == (480, 640)
    assert graph_input_size(tiny(), short_side=300, max_size=250) == (320, 320)  # max_size below short_side


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_cuda_graphs_and_fp16_sessions_on_the_shipped_weights() -> None:
    """The node's cuda_graphs / torch_fp16 path: the same detections as the eager CUDA session (frames at the graph
    size, so both see the same pixels), and fp16 close to them."""
    from uninext_core.data.synthetic.scene import KINDS
    from uninext_core.data.synthetic.world import synth_video
    from uninext_core.deploy.torch_graphed_backend import CudaGraphTorchBackend

    video = synth_video(seed=0, index=0, height=320, width=384, num_frames=4, difficulty="medium")
    results = {}
    for name, options in {"eager": {}, "graphs": {"cuda_graphs": True},
                          "graphs_fp16": {"cuda_graphs": True, "fp16": True}}.items():
        loaded = load_backend(preset="tiny", device="cuda", **options)
        if "cuda_graphs" in options:
            assert isinstance(loaded.backend, CudaGraphTorchBackend)
            assert loaded.backend.fixed_input_size == (320, 384)
            assert "CUDA graphs at 320x384" in loaded.description
        session = Session(loaded.backend, tokenizer=loaded.tokenizer)
        session.set_prompt(CategoryPrompt(KINDS), task="detection")
        results[name] = [session.process(frame, index) for index, frame in enumerate(video.frames)]
    for eager, graphs, half in zip(results["eager"], results["graphs"], results["graphs_fp16"], strict=True):
        assert len(eager) > 0 and len(graphs) == len(eager)
        np.testing.assert_allclose(graphs.boxes_xyxy, eager.boxes_xyxy, atol=1e-2)
        np.testing.assert_allclose(graphs.scores, eager.scores, atol=1e-4)
        best = eager.scores.argmax()  # fp16: the most confident detection stays where it is
        assert np.abs(half.boxes_xyxy - eager.boxes_xyxy[best]).max(axis=1).min() < 2.0
