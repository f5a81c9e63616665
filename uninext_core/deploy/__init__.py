"""Running the network: the `Backend` contract and its implementations (torch here; ONNX Runtime / TensorRT later)."""

from __future__ import annotations

from uninext_core.deploy.backend import Backend, ModelSpec, model_spec
from uninext_core.deploy.torch_backend import TorchBackend, build_torch_backend

__all__ = ["Backend", "ModelSpec", "TorchBackend", "build_torch_backend", "model_spec"]
