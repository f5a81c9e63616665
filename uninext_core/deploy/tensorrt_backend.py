"""`TensorRTBackend`: the Backend contract on TensorRT engines built from the exported ONNX parts.

Engines come from the on-disk cache (engine_cache.py): a start with an unchanged ONNX file, TensorRT version, GPU,
precision and shapes loads them in seconds; any change, or a corrupt / foreign engine file, rebuilds them (minutes,
with a log line saying why). Inference uses the TensorRT 10 name-based I/O API — `engine.num_io_tensors`,
`get_tensor_name`, `get_tensor_mode`, `get_tensor_dtype`, `context.set_input_shape`, `context.get_tensor_shape`,
`context.set_tensor_address`, `context.execute_async_v3(stream_handle)` (Core/Engine.html, Core/ExecutionContext.html)
— with pycuda device buffers, page-locked host buffers, `memcpy_htod_async` / `memcpy_dtoh_async` on one
`pycuda.driver.Stream`. The CUDA primary context is retained (the same one torch uses) and pushed around every call,
so the backend works from whichever thread the session runs on.

Outputs are copied to the host: `device` is the CPU and every tensor is float32 there, as the session's host-side
post-processing expects.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from uninext_core.deploy.engine_cache import PRECISIONS, EngineCache
from uninext_core.deploy.export_manifest import (
    ExportManifest,
)
from uninext_core.deploy.exported_backend import ExportedBackend
from uninext_core.deploy.tensorrt_build import (
    DEFAULT_WORKSPACE_BYTES,
    ProgressCallback,
    TensorRTModules,
    build_serialized_engine,
    calibration_sha256,
    engine_key,
    gpu_info,
    part_precision,
    profile_shapes,
    require_tensorrt,
)

logger = logging.getLogger(__name__)


class EngineRunner:
    """One deserialized engine with its execution context, stream and reusable buffers.

    Args:
        modules: `require_tensorrt()`.
        engine: trt.ICudaEngine.
        context: the pycuda context to push around calls (the device's retained primary context).
        name: part name for messages.
    """

    def __init__(self, modules: TensorRTModules, engine: Any, context: Any, name: str) -> None:
        trt, cuda = modules
        self._trt, self._cuda, self._gpu_context, self.name = trt, cuda, context, name
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for the {name} engine (GPU memory?)")
        self.stream = cuda.Stream()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self._device: dict[str, tuple[Any, int]] = {}
        self._host: dict[str, np.ndarray] = {}

    def _device_buffer(self, name: str, nbytes: int) -> Any:
        buffer, size = self._device.get(name, (None, 0))
        if buffer is None or size < nbytes:
            buffer = self._cuda.mem_alloc(max(nbytes, 1))
            self._device[name] = (buffer, nbytes)
        return buffer

    def _host_buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        host = self._host.get(name)
        if host is None or host.shape != shape:
            host = self._cuda.pagelocked_empty(shape, self.dtypes[name])
            self._host[name] = host
        return host

    def run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute once: named host arrays in, named host arrays out (copies).

        Raises:
            ValueError: a missing input or a shape outside the engine's optimisation profile.
            RuntimeError: TensorRT reports a failed enqueue.
        """
        missing = sorted(set(self.inputs) - set(feed))
        if missing:
            raise ValueError(f"{self.name} engine inputs {missing} missing from the feed")
        self._gpu_context.push()
        try:
            for name in self.inputs:
                array = np.ascontiguousarray(feed[name], dtype=self.dtypes[name])
                if not self.context.set_input_shape(name, array.shape):
                    raise ValueError(f"{self.name} engine: input {name} shape {array.shape} is outside the engine's "
                                     f"profile {self.engine.get_tensor_profile_shape(name, 0)}")
                host = self._host_buffer(name, array.shape)
                host[...] = array
                device = self._device_buffer(name, host.nbytes)
                self._cuda.memcpy_htod_async(device, host, self.stream)
                self.context.set_tensor_address(name, int(device))
            hosts = {}
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                hosts[name] = self._host_buffer(name, shape)
                self.context.set_tensor_address(name, int(self._device_buffer(name, hosts[name].nbytes)))
            if not self.context.execute_async_v3(stream_handle=self.stream.handle):
                raise RuntimeError(f"TensorRT execute_async_v3 failed for the {self.name} engine")
            for name in self.outputs:
                self._cuda.memcpy_dtoh_async(hosts[name], self._device[name][0], self.stream)
            self.stream.synchronize()
            return {name: host.copy() for name, host in hosts.items()}
        finally:
            self._gpu_context.pop()


class TensorRTBackend(ExportedBackend):
    """Runs the exported parts as TensorRT engines (Backend contract, backend.py).

    Args:
        export_dir: uninext-export output folder (manifest.json + ONNX files).
        cache_dir: engine cache folder (engines + timing cache).
        precision: "fp32", "fp16" (default) or "int8" (main network only; needs calibration_batches).
        device_index: CUDA device.
        workspace_bytes: builder workspace limit.
        calibration_batches: INT8 feeds of the main network (input name -> array at the profile's opt shape).
        progress: called as (part: phase, done, total) during engine builds.

    Raises:
        ImportError: tensorrt / pycuda missing (names requirements-tensorrt.txt).
        ValueError: bad manifest, corrupt ONNX file, unknown precision or device.
    """

    name = "tensorrt"

    def __init__(self, export_dir: str | Path, *, cache_dir: str | Path, precision: str = "fp16",
                 device_index: int = 0, workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
                 calibration_batches: Sequence[dict[str, np.ndarray]] | None = None,
                 progress: ProgressCallback | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.modules = require_tensorrt()
        trt, cuda = self.modules
        self.export_dir = Path(export_dir)
        self.manifest = ExportManifest.load(self.export_dir)
        self.manifest.verify_files(self.export_dir)
        if precision != "fp32" and not self.manifest.config.fusion.fp16_safe_mask:
            logger.warning("%s was exported with fusion.fp16_safe_mask false; the -9e15 prompt mask overflows "
                           "float16 — re-export (uninext-export does this by default)", self.export_dir)
        self.spec = self.manifest.spec
        self.device = torch.device("cpu")
        self.fixed_input_size: tuple[int, int] | None = self.manifest.image_size
        self.precision = precision
        self.gpu = gpu_info(cuda, device_index)
        self._gpu_context = cuda.Device(device_index).retain_primary_context()
        self._trt_logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._trt_logger)
        self.cache = EngineCache(cache_dir)
        self.built_parts: list[str] = []
        self._runners: dict[str, EngineRunner] = {}
        self._gpu_context.push()
        try:
            for part in self.manifest.parts:
                self._runners[part] = self._load_or_build(part, workspace_bytes, calibration_batches, progress)
        finally:
            self._gpu_context.pop()
        logger.info("tensorrt backend: %s on %s (sm %s), TensorRT %s, %s; rebuilt %s", self.manifest.preset,
                    self.gpu.name, self.gpu.compute_capability, trt.__version__, precision, self.built_parts or "none")

    def _deserialize(self, data: bytes) -> Any:
        try:
            return self._runtime.deserialize_cuda_engine(data)
        except Exception as error:  # some TensorRT versions raise instead of returning None on a bad plan
            logger.warning("TensorRT refused the engine bytes: %s", error)
            return None

    def _load_or_build(self, part: str, workspace_bytes: int,
                       calibration_batches: Sequence[dict[str, np.ndarray]] | None,
                       progress: ProgressCallback | None) -> EngineRunner:
        trt = self.modules.trt
        precision = part_precision(part, self.precision)
        calibration = calibration_batches if precision == "int8" else None
        calibration_hash = calibration_sha256(calibration) if calibration else None
        key = engine_key(self.manifest, part, precision=precision, tensorrt_version=trt.__version__, gpu=self.gpu,
                         calibration_sha256=calibration_hash)
        timing_path = self.cache.timing_cache_path(tensorrt_version=trt.__version__, gpu_name=self.gpu.name,
                                                   compute_capability=self.gpu.compute_capability)

        def build() -> bytes:
            logger.info("building the %s %s engine for %s (this takes minutes)", part, precision, self.gpu.name)
            calibration_file = None
            if calibration_hash is not None:
                calibration_file = self.cache.directory / f"{part}-int8-{calibration_hash[:16]}.calib"
                calibration_file.parent.mkdir(parents=True, exist_ok=True)
            built = build_serialized_engine(
                self.modules, self.export_dir / self.manifest.parts[part].file, profile_shapes(self.manifest, part),
                precision=precision, timing_cache=self.cache.read_timing_cache(timing_path),
                workspace_bytes=workspace_bytes, calibration_batches=calibration, calibration_cache=calibration_file,
                progress=None if progress is None else lambda phase, done, total: progress(f"{part}: {phase}", done,
                                                                                           total))
            self.cache.write_timing_cache(timing_path, built.timing_cache)
            self.built_parts.append(part)
            return built.engine

        engine, _ = self.cache.load_or_build(key, build=build, deserialize=self._deserialize)
        return EngineRunner(self.modules, engine, self._gpu_context, part)

    def _run(self, part: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        runner = self._runners.get(part)
        if runner is None:
            self.manifest.part(part)  # raises the "not exported" ValueError
        return runner.run(feed)

    def close(self) -> None:
        """Release engines, contexts and buffers, and the retained CUDA primary context."""
        self._gpu_context.push()
        try:
            self._runners.clear()
        finally:
            self._gpu_context.pop()
        self._gpu_context.detach()
