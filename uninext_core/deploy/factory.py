"""`make_backend`: one Backend by name — "torch", "onnxruntime" or "tensorrt" — for the session, node and benches.

The torch backend runs a model built from a preset / YAML (or one passed in); the two exported backends read an
uninext-export folder (manifest.json + ONNX files), so the same folder serves ONNX Runtime on a CPU and TensorRT on
a GPU. TensorRT and pycuda are imported only when "tensorrt" is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from uninext_core.config import UninextConfig, load_config
from uninext_core.deploy.backend import Backend, model_spec
from uninext_core.deploy.onnxruntime_backend import OnnxRuntimeBackend
from uninext_core.deploy.tensorrt_backend import TensorRTBackend
from uninext_core.deploy.torch_backend import TorchBackend
from uninext_core.deploy.torch_graphed_backend import CudaGraphTorchBackend
from uninext_core.model.build import build_model
from uninext_core.model.uninext import Uninext

BackendName = Literal["torch", "onnxruntime", "tensorrt"]
BACKEND_NAMES: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")


def make_backend(
    name: BackendName,
    *,
    config: str | UninextConfig | None = None,
    model: Uninext | None = None,
    export_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    fp16: bool = False,
    cuda_graphs: bool = False,
    input_size: tuple[int, int] | None = None,
    threads: int | None = None,
    engine_cache_dir: str | Path | None = None,
    precision: str = "fp16",
) -> Backend:
    """Build the backend called `name`.

    Args:
        name: "torch", "onnxruntime" or "tensorrt".
        config: torch only: preset name, YAML path or UninextConfig (required for torch).
        model: torch only: the network built from `config` (weights loaded); None builds one with random weights.
        export_dir: onnxruntime / tensorrt: the uninext-export folder (required for them).
        device: torch only: "cpu", "cuda", "cuda:1".
        fp16: torch only: float16 autocast (CUDA).
        cuda_graphs: torch only: replay the main network from CUDA graphs (CUDA; needs `input_size`).
        input_size: torch with cuda_graphs: (H, W) frames are letterboxed to.
        threads: onnxruntime: intra-op threads (None: ONNX Runtime's default).
        engine_cache_dir: tensorrt: engine cache folder (default: <export_dir>/engines).
        precision: tensorrt: "fp32", "fp16" or "int8".

    Raises:
        ValueError: unknown name or a missing argument for the chosen backend.
        ImportError: "tensorrt" without the optional packages (the message names requirements-tensorrt.txt).
    """
    if name == "torch":
        if config is None:
            raise ValueError("the torch backend needs config= (a preset name, YAML path or UninextConfig)")
        cfg = config if isinstance(config, UninextConfig) else load_config(config)
        network = build_model(cfg) if model is None else model
        if cuda_graphs:
            if input_size is None:
                raise ValueError("cuda_graphs=True needs input_size=(H, W), the fixed size frames are letterboxed to")
            return CudaGraphTorchBackend(network, spec=model_spec(cfg), input_size=input_size, device=device,
                                         fp16=fp16)
        return TorchBackend(network, spec=model_spec(cfg), device=device, fp16=fp16)
    if name in ("onnxruntime", "tensorrt"):
        if export_dir is None:
            raise ValueError(f"the {name} backend needs export_dir= (a folder written by uninext-export)")
        if name == "onnxruntime":
            return OnnxRuntimeBackend(export_dir, intra_op_threads=threads)
        cache = Path(export_dir) / "engines" if engine_cache_dir is None else engine_cache_dir
        return TensorRTBackend(export_dir, cache_dir=cache, precision=precision)
    raise ValueError(f"unknown backend {name!r}; expected one of {list(BACKEND_NAMES)}")
