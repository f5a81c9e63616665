"""On-disk cache of TensorRT engines, keyed by everything that makes an engine valid.

A serialized TensorRT engine only runs on the TensorRT version and GPU model it was built for, and it is only the
right engine for one ONNX file, precision and set of input shapes. The key is therefore
(ONNX SHA-256, TensorRT version, GPU name, compute capability, precision, input shapes (min/opt/max), build
options); it names the file (`<part>-<precision>-<digest>.engine`) and is stored beside it (`.json`, with the
engine's own SHA-256 and size). A later start loads the engine only when the stored key equals the wanted key and
the bytes are intact; anything else — missing file, another GPU or TensorRT version in the metadata, a truncated or
corrupt file, bytes TensorRT refuses to deserialize — logs one line saying why and rebuilds. Nothing here imports
TensorRT: the builder and the deserializer are passed in, so the logic is tested with fakes.

Writes are atomic (temporary file + rename), so an interrupted build never leaves a half engine under a valid name.
One timing cache per (TensorRT version, GPU, compute capability) lives in the same folder and is shared by builds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, TypeVar

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
ENGINE_META_VERSION = 1
Engine = TypeVar("Engine")


@dataclass(frozen=True)
class InputShape:
    """Optimisation-profile shapes of one engine input (all three equal for a static input)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on.

    Attributes:
        part: exported part name ("text_encoder", "template_encoder", "main").
        onnx_sha256: SHA-256 of the ONNX file (manifest value).
        tensorrt_version: `tensorrt.__version__` of the builder.
        gpu_name: CUDA device name (e.g. "NVIDIA H100 80GB HBM3").
        compute_capability: "major.minor" (e.g. "9.0").
        precision: "fp32", "fp16" or "int8".
        shapes: profile shapes of every input, in graph order.
        options: other build settings that change the engine (builder revision, INT8 calibration data hash, ...),
            as sorted (name, value) pairs.
    """

    part: str
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    shapes: tuple[InputShape, ...]
    options: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if not re.fullmatch(r"\d+\.\d+", self.compute_capability):
            raise ValueError(f"compute_capability must look like '8.6', got {self.compute_capability!r}")

    def to_json(self) -> dict:
        """Plain JSON object (lists for tuples)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: dict) -> EngineKey:
        """Inverse of `to_json` (ValueError on a malformed object)."""
        try:
            shapes = tuple(InputShape(name=s["name"], min=tuple(s["min"]), opt=tuple(s["opt"]), max=tuple(s["max"]))
                           for s in data["shapes"])
            return cls(part=data["part"], onnx_sha256=data["onnx_sha256"], tensorrt_version=data["tensorrt_version"],
                       gpu_name=data["gpu_name"], compute_capability=data["compute_capability"],
                       precision=data["precision"], shapes=shapes,
                       options=tuple((str(k), str(v)) for k, v in data.get("options", ())))
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed engine key {data!r}: {error}") from error

    def digest(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON of the key."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]

    def differences(self, other: EngineKey) -> list[str]:
        """Human-readable 'field: stored -> wanted' lines for the fields that differ."""
        mine, theirs = self.to_json(), other.to_json()
        return [f"{field}: {mine[field]!r} -> {theirs[field]!r}" for field in mine if mine[field] != theirs[field]]


class EngineCache:
    """Folder of engines and timing caches (see the module docstring).

    Args:
        directory: cache folder (created on first write).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory).expanduser()

    def engine_path(self, key: EngineKey) -> Path:
        """Where the engine for `key` lives."""
        return self.directory / f"{key.part}-{key.precision}-{key.digest()}.engine"

    def timing_cache_path(self, *, tensorrt_version: str, gpu_name: str, compute_capability: str) -> Path:
        """The timing cache shared by builds on one TensorRT version and GPU model."""
        gpu = re.sub(r"[^A-Za-z0-9]+", "_", gpu_name).strip("_")
        return self.directory / f"timing-trt{tensorrt_version}-{gpu}-sm{compute_capability.replace('.', '')}.cache"

    def read_timing_cache(self, path: Path) -> bytes:
        """Serialized timing cache at `path`, or b"" (TensorRT then starts an empty one)."""
        return path.read_bytes() if path.is_file() else b""

    def write_timing_cache(self, path: Path, data: bytes) -> None:
        """Store a serialized timing cache atomically."""
        _atomic_write(path, bytes(data))

    def load(self, key: EngineKey) -> bytes | None:
        """The engine bytes for `key`, or None (with one log line saying why) when it must be (re)built."""
        path = self.engine_path(key)
        meta_path = path.with_suffix(".json")
        if not path.is_file():
            logger.info("no cached %s engine at %s; building", key.part, path)
            return None
        try:
            meta = json.loads(meta_path.read_text())
            stored = EngineKey.from_json(meta["key"])
            expected_sha, expected_size = str(meta["engine_sha256"]), int(meta["engine_bytes"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("engine metadata %s is missing or unreadable (%s); rebuilding %s", meta_path, error, path)
            return None
        if stored != key:
            logger.warning("cached engine %s was built for a different setup (%s); rebuilding", path,
                           "; ".join(stored.differences(key)))
            return None
        data = path.read_bytes()
        if len(data) != expected_size or hashlib.sha256(data).hexdigest() != expected_sha:
            logger.warning("cached engine %s is truncated or corrupt (%d bytes, expected %d); rebuilding", path,
                           len(data), expected_size)
            return None
        return data

    def store(self, key: EngineKey, engine: bytes) -> Path:
        """Write `engine` and its metadata atomically; returns the engine path."""
        path = self.engine_path(key)
        meta = {"version": ENGINE_META_VERSION, "key": key.to_json(), "engine_bytes": len(engine),
                "engine_sha256": hashlib.sha256(engine).hexdigest()}
        _atomic_write(path, engine)
        _atomic_write(path.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())
        return path

    def load_or_build(self, key: EngineKey, *, build: Callable[[], bytes],
                      deserialize: Callable[[bytes], Engine | None]) -> tuple[Engine, bool]:
        """A deserialized engine for `key`, from the cache when valid, else freshly built and stored.

        Args:
            key: the wanted engine.
            build: makes the serialized engine (minutes for TensorRT).
            deserialize: bytes -> engine object, or None when the bytes are not a usable engine (TensorRT's
                `deserialize_cuda_engine` returns None for corrupt or incompatible plans).

        Returns:
            (engine, built): built is True when the engine was (re)built in this call.

        Raises:
            RuntimeError: a freshly built engine cannot be deserialized.
        """
        cached = self.load(key)
        if cached is not None:
            engine = deserialize(cached)
            if engine is not None:
                logger.info("loaded cached %s engine %s", key.part, self.engine_path(key))
                return engine, False
            logger.warning("TensorRT could not deserialize cached engine %s; rebuilding", self.engine_path(key))
        data = build()
        engine = deserialize(data)
        if engine is None:
            raise RuntimeError(f"the freshly built {key.part} engine could not be deserialized; not caching it")
        path = self.store(key, data)
        logger.info("built and cached %s engine %s (%.1f MB)", key.part, path, len(data) / 1e6)
        return engine, True


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
