"""Build TensorRT engines from the exported ONNX parts (TensorRT 10 Python API), with a timing cache.

`tensorrt` and `pycuda` are optional (requirements-tensorrt.txt) and imported only inside `require_tensorrt`; the
pure parts here — profile shapes, engine keys, which ONNX nodes stay float32 — need neither and are tested anywhere.

TensorRT 10 Python API calls relied on (docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/):
`trt.Logger`, `trt.Builder(logger)`, `builder.create_network(0)` (networks are always explicit-batch in 10.x;
Builder.html), `trt.OnnxParser(network, logger).parse_from_file(path)` with `parser.num_errors` /
`parser.get_error(i)` (parsers/Onnx/pyOnnx.html), `builder.create_builder_config()`,
`config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, bytes)`, `config.set_flag` / `clear_flag` with
`trt.BuilderFlag.FP16 / INT8 / TF32 / PREFER_PRECISION_CONSTRAINTS`, `layer.precision` and
`layer.set_output_type(i, trt.float32)` (Graph/Layers.html), `builder.create_optimization_profile()` +
`profile.set_shape(name, min, opt, max)` + `config.add_optimization_profile(profile)`,
`config.create_timing_cache(bytes)` / `config.set_timing_cache(cache, ignore_mismatch=False)` /
`config.get_timing_cache().serialize()` (Core/BuilderConfig.html, Core/TimingCache.html; performance/
builder-performance.html "Timing Cache"), `config.int8_calibrator` + `config.set_calibration_profile(profile)` with a
`trt.IInt8EntropyCalibrator2` subclass (get_batch_size / get_batch / read_calibration_cache /
write_calibration_cache; Int8/EntropyCalibrator2.html), `config.progress_monitor` with a `trt.IProgressMonitor`
subclass (phase_start / step_complete / phase_finish; Core/ProgressMonitor.html), `builder.build_serialized_network
(network, config)` (None on failure). pycuda: `pycuda.driver.init`, `Device(i).name()` / `compute_capability()`,
`mem_alloc`, `memcpy_htod`.

FP16 engines keep the Bi-XAtt fusion block and the retrieval (class_embed) logits in float32 (reference §11.1:
attention logits are clamped at ±50000, beyond float16's range), through per-layer precision constraints on the
ONNX nodes whose torch name scope lies in those modules.
"""

from __future__ import annotations

import ast
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import onnx

from uninext_core.deploy.engine_cache import EngineKey, InputShape
from uninext_core.deploy.export_manifest import PROMPT_AXIS, ExportManifest

logger = logging.getLogger(__name__)

REQUIREMENTS_FILE = "requirements-tensorrt.txt"
# Bump when a change below makes previously built engines different (part of every engine key).
BUILDER_REVISION = "1"
FP32_SCOPES = ("model.transformer.fusion", "model.class_embed")
DEFAULT_WORKSPACE_BYTES = 4 << 30

ProgressCallback = Callable[[str, int, int], None]  # (phase, steps done, steps in phase)


class TensorRTModules(NamedTuple):
    """The lazily imported optional modules: `tensorrt` and `pycuda.driver`."""

    trt: ModuleType
    cuda: ModuleType


def require_tensorrt() -> TensorRTModules:
    """Import tensorrt (10.x) and pycuda.driver, or raise ImportError saying what to install."""
    hint = (f"the TensorRT backend needs the optional packages in {REQUIREMENTS_FILE} (tensorrt>=10.3,<11 and pycuda): "
            f"run `.venv/bin/pip install -r {REQUIREMENTS_FILE}` on a machine with an NVIDIA driver and CUDA 12")
    try:
        import tensorrt as trt
    except ImportError as error:
        raise ImportError(f"{hint} (import tensorrt failed: {error})") from error
    try:
        import pycuda.driver as cuda
    except ImportError as error:
        raise ImportError(f"{hint} (import pycuda.driver failed: {error})") from error
    if not trt.__version__.startswith("10."):
        raise ImportError(f"{hint}; found tensorrt {trt.__version__}, this code follows the TensorRT 10 API")
    cuda.init()
    return TensorRTModules(trt, cuda)


@dataclass(frozen=True)
class GpuInfo:
    """The CUDA device engines are built for."""

    index: int
    name: str
    compute_capability: str


def gpu_info(cuda: ModuleType, index: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device `index` (ValueError when it does not exist)."""
    count = cuda.Device.count()
    if not 0 <= index < count:
        raise ValueError(f"CUDA device {index} requested, {count} visible")
    device = cuda.Device(index)
    major, minor = device.compute_capability()
    return GpuInfo(index=index, name=str(device.name()), compute_capability=f"{major}.{minor}")


def profile_shapes(manifest: ExportManifest, part: str) -> tuple[InputShape, ...]:
    """Optimisation-profile shapes of a part's inputs: static dims as exported; the prompt axis min = first bucket,
    opt = the text bucket (the common case; else the first), max = last bucket."""
    buckets = manifest.prompt_buckets
    opt_tokens = manifest.spec.max_text_tokens if manifest.spec.max_text_tokens in buckets else buckets[0]
    shapes = []
    for spec in manifest.part(part).inputs:
        def resolve(tokens: int, dims: tuple = spec.shape) -> tuple[int, ...]:
            return tuple(tokens if d == PROMPT_AXIS else int(d) for d in dims)
        shapes.append(InputShape(name=spec.name, min=resolve(buckets[0]), opt=resolve(opt_tokens),
                                 max=resolve(buckets[-1])))
    return tuple(shapes)


def part_precision(part: str, precision: str) -> str:
    """INT8 calibration applies to the main network only; the prompt encoders are built in FP16 then."""
    return "fp16" if precision == "int8" and part != "main" else precision


def engine_key(manifest: ExportManifest, part: str, *, precision: str, tensorrt_version: str, gpu: GpuInfo,
               calibration_sha256: str | None = None) -> EngineKey:
    """The cache key of one part's engine (see engine_cache.py)."""
    options = [("builder_revision", BUILDER_REVISION)]
    if precision == "int8":
        if calibration_sha256 is None:
            raise ValueError("int8 engines need calibration data (its hash is part of the engine key)")
        options.append(("int8_calibration_sha256", calibration_sha256))
    return EngineKey(part=part, onnx_sha256=manifest.part(part).sha256, tensorrt_version=tensorrt_version,
                     gpu_name=gpu.name, compute_capability=gpu.compute_capability, precision=precision,
                     shapes=profile_shapes(manifest, part), options=tuple(sorted(options)))


def fp32_node_names(onnx_path: str | Path, scopes: Sequence[str] = FP32_SCOPES) -> frozenset[str]:
    """Names of the ONNX nodes exported from modules under `scopes` (torch name scopes in the node metadata)."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    names = set()
    for node in model.graph.node:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.name_scopes":
                node_scopes = ast.literal_eval(prop.value)
                if any(s == scope or s.startswith(scope + ".") for s in node_scopes for scope in scopes):
                    names.add(node.name)
    return frozenset(names)


def calibration_sha256(batches: Sequence[dict[str, np.ndarray]]) -> str:
    """Hash of INT8 calibration feeds (names, shapes, dtypes and bytes), for the engine key."""
    digest = hashlib.sha256()
    for batch in batches:
        for name in sorted(batch):
            array = np.ascontiguousarray(batch[name])
            digest.update(f"{name}:{array.shape}:{array.dtype}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


class BuiltEngine(NamedTuple):
    """A serialized engine, the updated timing cache and how many layers were pinned to float32."""

    engine: bytes
    timing_cache: bytes
    fp32_layers: int


def build_serialized_engine(modules: TensorRTModules, onnx_path: str | Path, shapes: Sequence[InputShape], *,
                            precision: str, timing_cache: bytes = b"", workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
                            calibration_batches: Sequence[dict[str, np.ndarray]] | None = None,
                            calibration_cache: Path | None = None,
                            progress: ProgressCallback | None = None) -> BuiltEngine:
    """Parse `onnx_path` and build a serialized engine (takes minutes for r50).

    Args:
        modules: from `require_tensorrt()`.
        onnx_path: exported part.
        shapes: profile shapes of every input (`profile_shapes`).
        precision: "fp32" (TF32 off, for parity), "fp16", or "int8" (entropy calibration on `calibration_batches`,
            FP16 fallback).
        timing_cache: serialized timing cache from an earlier build on this GPU and TensorRT version (b"": new).
        workspace_bytes: builder workspace pool limit.
        calibration_batches: INT8 only: feeds (input name -> array at the profile's opt shape).
        calibration_cache: INT8 only: file for TensorRT's calibration table (reused when present; name it after
            `calibration_sha256` of the batches so other data never reuses it).
        progress: called as (phase, done, total) while the builder works.

    Raises:
        ValueError: the ONNX cannot be parsed (parser errors listed) or INT8 without calibration data.
        RuntimeError: the builder fails.
    """
    trt = modules.trt
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse {onnx_path} (corrupt, truncated or unsupported):\n  {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    cache = config.create_timing_cache(bytes(timing_cache))
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        logger.warning("timing cache does not match this TensorRT version / GPU; starting an empty one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    for shape in shapes:
        profile.set_shape(shape.name, shape.min, shape.opt, shape.max)
    config.add_optimization_profile(profile)
    pinned = 0
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    elif precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = _pin_fp32_layers(trt, network, fp32_node_names(onnx_path))
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    else:
        raise ValueError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    calibrator = None
    if precision == "int8":
        if not calibration_batches or calibration_cache is None:
            raise ValueError("int8 precision needs calibration_batches (feeds at the profile's opt shape) and a "
                             "calibration_cache path")
        calibrator = make_entropy_calibrator(modules, calibration_batches, calibration_cache)
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        config.set_calibration_profile(profile)
    monitor = make_progress_monitor(trt, progress) if progress is not None else None
    if monitor is not None:
        config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    return BuiltEngine(engine=bytes(serialized), timing_cache=bytes(config.get_timing_cache().serialize()),
                       fp32_layers=pinned)


def _pin_fp32_layers(trt: ModuleType, network: Any, node_names: frozenset[str]) -> int:
    floating = (trt.float32, trt.float16)
    pinned = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        base = layer.name.split(" ")[0]
        if base not in node_names and not any(layer.name.startswith(name + "_") for name in node_names):
            continue
        if layer.num_outputs == 0 or any(layer.get_output(i).dtype not in floating for i in range(layer.num_outputs)):
            continue
        layer.precision = trt.float32
        for i in range(layer.num_outputs):
            layer.set_output_type(i, trt.float32)
        pinned += 1
    logger.info("pinned %d TensorRT layers (Bi-XAtt fusion, retrieval logits) to float32", pinned)
    return pinned


def make_progress_monitor(trt: ModuleType, callback: ProgressCallback) -> Any:
    """A trt.IProgressMonitor forwarding (phase, done, total) to `callback`; never cancels the build."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._totals: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self._totals[phase_name] = num_steps
            callback(phase_name, 0, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            callback(phase_name, step + 1, self._totals.get(phase_name, step + 1))
            return True

        def phase_finish(self, phase_name: str) -> None:
            total = self._totals.pop(phase_name, 0)
            callback(phase_name, total, total)

    return _Monitor()


def make_entropy_calibrator(modules: TensorRTModules, batches: Sequence[dict[str, np.ndarray]], cache_path: Path
                            ) -> Any:
    """A trt.IInt8EntropyCalibrator2 feeding `batches` (batch size 1) through pycuda device buffers."""
    trt, cuda = modules

    class _Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = list(batches)
            self._next = 0
            self._buffers: dict[str, Any] = {}

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self._next >= len(self._batches):
                return None
            batch = self._batches[self._next]
            self._next += 1
            pointers = []
            for name in names:
                array = np.ascontiguousarray(batch[name])
                if name not in self._buffers:
                    self._buffers[name] = cuda.mem_alloc(array.nbytes)
                cuda.memcpy_htod(self._buffers[name], array)
                pointers.append(int(self._buffers[name]))
            return pointers

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: bytes) -> None:
            cache_path.write_bytes(bytes(cache))

    return _Calibrator()
