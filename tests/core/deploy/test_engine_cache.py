"""Engine-cache logic with fake engines and keys (no TensorRT): a valid cached engine is reused; another GPU,
TensorRT version, ONNX file or shape, a truncated or corrupt file, missing metadata or bytes TensorRT refuses all
rebuild with a log line; a build that cannot be deserialized is an error and is not cached."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest

from uninext_core.deploy.engine_cache import EngineCache, EngineKey, InputShape

FAKE_ENGINE = b"FAKE-ENGINE-" + bytes(range(256)) * 4


def key(**changes) -> EngineKey:
    base = EngineKey(part="main", onnx_sha256="ab" * 32, tensorrt_version="10.3.0", gpu_name="NVIDIA H100 80GB HBM3",
                     compute_capability="9.0", precision="fp16",
                     shapes=(InputShape("images", (1, 3, 640, 640), (1, 3, 640, 640), (1, 3, 640, 640)),
                             InputShape("prompt_hidden", (1, 256, 768), (1, 256, 768), (1, 2048, 768))),
                     options=(("builder_revision", "1"),))
    return dataclasses.replace(base, **changes)


class FakeTensorRT:
    """Counts builds; 'deserializes' only bytes that start with the fake engine header."""

    def __init__(self, payload: bytes = FAKE_ENGINE) -> None:
        self.builds = 0
        self.payload = payload

    def build(self) -> bytes:
        self.builds += 1
        return self.payload

    @staticmethod
    def deserialize(data: bytes):
        return ("engine", len(data)) if data.startswith(b"FAKE-ENGINE-") else None


def test_key_digest_is_stable_and_differs_per_field():
    assert key().digest() == key().digest() and len(key().digest()) == 16
    variants = [key(gpu_name="NVIDIA A100-SXM4-40GB"), key(tensorrt_version="10.8.0"), key(onnx_sha256="cd" * 32),
                key(precision="fp32"), key(compute_capability="8.0"), key(options=(("builder_revision", "2"),)),
                key(shapes=(InputShape("images", (1, 3, 800, 1344), (1, 3, 800, 1344), (1, 3, 800, 1344)),))]
    assert len({v.digest() for v in variants} | {key().digest()}) == len(variants) + 1
    assert EngineKey.from_json(json.loads(json.dumps(key().to_json()))) == key()
    assert key().differences(key(tensorrt_version="10.8.0")) == ["tensorrt_version: '10.3.0' -> '10.8.0'"]


def test_key_validation():
    with pytest.raises(ValueError, match="precision must be one of"):
        key(precision="bf16")
    with pytest.raises(ValueError, match="compute_capability must look like"):
        key(compute_capability="sm90")


def test_first_start_builds_second_start_loads(tmp_path):
    cache, trt = EngineCache(tmp_path / "engines"), FakeTensorRT()
    engine, built = cache.load_or_build(key(), build=trt.build, deserialize=trt.deserialize)
    assert built and trt.builds == 1 and engine == ("engine", len(FAKE_ENGINE))
    path = cache.engine_path(key())
    assert path.name == f"main-fp16-{key().digest()}.engine" and path.read_bytes() == FAKE_ENGINE
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["engine_bytes"] == len(FAKE_ENGINE) and EngineKey.from_json(meta["key"]) == key()
    engine, built = EngineCache(tmp_path / "engines").load_or_build(key(), build=trt.build,
                                                                    deserialize=trt.deserialize)
    assert not built and trt.builds == 1
    assert sorted(p.name for p in (tmp_path / "engines").iterdir()) == sorted([path.name, path.with_suffix(
        ".json").name])  # no temporary files left behind


def test_another_gpu_or_tensorrt_version_builds_its_own_engine(tmp_path):
    cache, trt = EngineCache(tmp_path), FakeTensorRT()
    cache.load_or_build(key(), build=trt.build, deserialize=trt.deserialize)
    for other in (key(gpu_name="NVIDIA A100-SXM4-40GB", compute_capability="8.0"), key(tensorrt_version="10.8.0")):
        _, built = cache.load_or_build(other, build=trt.build, deserialize=trt.deserialize)
        assert built and cache.engine_path(other) != cache.engine_path(key())
    assert trt.builds == 3


def test_engine_whose_metadata_names_another_setup_is_rebuilt(tmp_path, caplog):
    cache, trt = EngineCache(tmp_path), FakeTensorRT()
    foreign = key(tensorrt_version="10.0.1", gpu_name="NVIDIA GeForce RTX 3090", compute_capability="8.6")
    cache.store(foreign, FAKE_ENGINE)
    # A foreign engine copied in under the wanted name (e.g. a cache folder shared between machines).
    cache.engine_path(foreign).rename(cache.engine_path(key()))
    cache.engine_path(foreign).with_suffix(".json").rename(cache.engine_path(key()).with_suffix(".json"))
    with caplog.at_level(logging.WARNING):
        _, built = cache.load_or_build(key(), build=trt.build, deserialize=trt.deserialize)
    assert built and trt.builds == 1
    assert "was built for a different setup" in caplog.text and "tensorrt_version: '10.0.1' -> '10.3.0'" in caplog.text
    assert cache.load(key()) == FAKE_ENGINE  # replaced by the rebuilt one


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_meta", "bad_meta"])
def test_damaged_engine_files_are_rebuilt(tmp_path, caplog, damage):
    cache, trt = EngineCache(tmp_path), FakeTensorRT()
    cache.store(key(), FAKE_ENGINE)
    path = cache.engine_path(key())
    if damage == "truncate":
        path.write_bytes(FAKE_ENGINE[:100])
    elif damage == "flip":
        path.write_bytes(FAKE_ENGINE[:-1] + b"\x00")
    elif damage == "no_meta":
        path.with_suffix(".json").unlink()
    else:
        path.with_suffix(".json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        engine, built = cache.load_or_build(key(), build=trt.build, deserialize=trt.deserialize)
    assert built and trt.builds == 1 and engine is not None
    expected = {"truncate": "truncated or corrupt", "flip": "truncated or corrupt",
                "no_meta": "missing or unreadable", "bad_meta": "missing or unreadable"}[damage]
    assert expected in caplog.text


def test_bytes_tensorrt_refuses_are_rebuilt(tmp_path, caplog):
    cache = EngineCache(tmp_path)
    cache.store(key(), b"NOT-AN-ENGINE")  # intact file and metadata, but not a plan this runtime accepts
    trt = FakeTensorRT()
    with caplog.at_level(logging.WARNING):
        _, built = cache.load_or_build(key(), build=trt.build, deserialize=trt.deserialize)
    assert built and "could not deserialize cached engine" in caplog.text
    assert cache.load(key()) == FAKE_ENGINE


def test_a_fresh_build_that_cannot_be_deserialized_is_an_error_and_not_cached(tmp_path):
    cache, trt = EngineCache(tmp_path), FakeTensorRT(payload=b"BROKEN")
    with pytest.raises(RuntimeError, match="could not be deserialized; not caching it"):
        cache.load_or_build(key(), build=trt.build, deserialize=trt.deserialize)
    assert not cache.engine_path(key()).exists()


def test_timing_cache_path_and_round_trip(tmp_path):
    cache = EngineCache(tmp_path)
    path = cache.timing_cache_path(tensorrt_version="10.3.0", gpu_name="NVIDIA H100 80GB HBM3",
                                   compute_capability="9.0")
    assert path.name == "timing-trt10.3.0-NVIDIA_H100_80GB_HBM3-sm90.cache"
    assert cache.read_timing_cache(path) == b""
    cache.write_timing_cache(path, b"\x01\x02")
    assert cache.read_timing_cache(path) == b"\x01\x02"
