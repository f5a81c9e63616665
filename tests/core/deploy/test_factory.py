"""make_backend: each name gives its backend; missing arguments, unknown names and a missing TensorRT are clear
errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from uninext_core.deploy.backend import Backend
from uninext_core.deploy.factory import make_backend
from uninext_core.deploy.onnxruntime_backend import OnnxRuntimeBackend
from uninext_core.deploy.torch_backend import TorchBackend
from uninext_core.model.build import build_model


def test_torch_backend_from_a_preset_or_a_given_model():
    backend = make_backend("torch", config="tiny")
    assert isinstance(backend, TorchBackend) and isinstance(backend, Backend) and backend.spec.name == "tiny"
    model = build_model("tiny")
    assert make_backend("torch", config="tiny", model=model).model is model


def test_argument_errors():
    with pytest.raises(ValueError, match="the torch backend needs config="):
        make_backend("torch")
    with pytest.raises(ValueError, match="the onnxruntime backend needs export_dir="):
        make_backend("onnxruntime")
    with pytest.raises(ValueError, match=r"unknown backend 'openvino'; expected one of \['torch', 'onnxruntime', "):
        make_backend("openvino", export_dir="x")
    with pytest.raises(ValueError, match=r"cuda_graphs=True needs input_size=\(H, W\)"):
        make_backend("torch", config="tiny", cuda_graphs=True)
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        make_backend("torch", config="tiny", cuda_graphs=True, input_size=(320, 384))


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_tensorrt_without_the_optional_packages_names_them(tmp_path):
    with pytest.raises(ImportError, match=r"requirements-tensorrt\.txt"):
        make_backend("tensorrt", export_dir=tmp_path)


@pytest.mark.slow
def test_onnxruntime_backend_from_an_export(tiny_export):
    backend = make_backend("onnxruntime", export_dir=tiny_export.directory, threads=1)
    assert isinstance(backend, OnnxRuntimeBackend) and backend.fixed_input_size == (320, 384)
    assert backend.device == torch.device("cpu")
