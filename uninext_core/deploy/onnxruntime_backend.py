"""`OnnxRuntimeBackend`: the Backend contract on the ONNX parts written by `uninext-export` (onnx_export.py).

CPU execution provider everywhere; the CUDA provider first when onnxruntime-gpu is installed and `providers` is left
to the default. Sessions use full graph optimisation (`ORT_ENABLE_ALL`) and a configurable number of intra-op threads.
Outputs are float32 CPU tensors (`device` is the CPU whatever the provider: results are copied to the host), so the
session's host-side post-processing is shared with every other backend.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from uninext_core.deploy.export_manifest import (
    ExportManifest,
)
from uninext_core.deploy.exported_backend import ExportedBackend

logger = logging.getLogger(__name__)


def default_providers() -> list[str]:
    """CUDA provider first when this onnxruntime build has it, then the CPU provider."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OnnxRuntimeBackend(ExportedBackend):
    """Runs the exported parts with ONNX Runtime (Backend contract, backend.py).

    Args:
        export_dir: folder with manifest.json and the .onnx files (uninext-export output).
        providers: ONNX Runtime execution providers in priority order; None: `default_providers()`.
        intra_op_threads: threads per operator; None lets ONNX Runtime choose (one per physical core).
        verify_files: check every file's SHA-256 against the manifest first (catches truncated copies early).
        spin_wait: let idle worker threads busy-wait between operators (ONNX Runtime's own default). Off here: on
            a robot's shared CPU the spinning takes cores from the other nodes and, under load, from our own next
            operator (bench/results/session.txt: main network 369 -> 287 ms at 2 threads under load with it off).

    Raises:
        ValueError: missing or invalid manifest, missing/corrupt/truncated ONNX file, unknown provider.

    Example:
        >>> backend = OnnxRuntimeBackend("exports/tiny_320x384", intra_op_threads=2)
        >>> raw = backend.infer(images, pixel_mask, backend.encode_text(tokens))
    """

    name = "onnxruntime"

    def __init__(self, export_dir: str | Path, *, providers: Sequence[str] | None = None,
                 intra_op_threads: int | None = None, verify_files: bool = True, spin_wait: bool = False) -> None:
        self.export_dir = Path(export_dir)
        self.manifest = ExportManifest.load(self.export_dir)
        if verify_files:
            self.manifest.verify_files(self.export_dir)
        self.spec = self.manifest.spec
        self.device = torch.device("cpu")
        self.fixed_input_size: tuple[int, int] | None = self.manifest.image_size
        self.providers = list(default_providers() if providers is None else providers)
        unknown = sorted(set(self.providers) - set(ort.get_available_providers()))
        if unknown or not self.providers:
            raise ValueError(f"providers {self.providers} not available in this onnxruntime build; available: "
                             f"{ort.get_available_providers()}")
        if intra_op_threads is not None and (isinstance(intra_op_threads, bool) or intra_op_threads < 1):
            raise ValueError(f"intra_op_threads must be None or >= 1, got {intra_op_threads!r}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = intra_op_threads or 0
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
        self._options = options
        self._sessions = {name: self._open(name) for name in self.manifest.parts}
        logger.info("onnxruntime backend on %s (%s, image %s, prompt buckets %s, providers %s)", self.export_dir,
                    self.manifest.preset, self.manifest.image_size, self.manifest.prompt_buckets, self.providers)

    def _open(self, part: str) -> ort.InferenceSession:
        path = self.export_dir / self.manifest.parts[part].file
        try:
            return ort.InferenceSession(str(path), self._options, providers=self.providers)
        except Exception as error:  # onnxruntime raises its own Fail/InvalidProtobuf/InvalidGraph types
            raise ValueError(f"onnxruntime cannot load {path} ({type(error).__name__}: {error}); the file is corrupt "
                             f"or truncated — re-run uninext-export") from error

    def _run(self, part: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._sessions.get(part)
        if session is None:
            self.manifest.part(part)  # raises the "not exported" ValueError
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feed), strict=True))

