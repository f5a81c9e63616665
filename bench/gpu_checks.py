"""Prepared GPU checks for issue 7, one run on a lent CUDA machine; writes one JSON file under bench/results/.

1. Latency of the r50 main network (random bert-base prompt features, T = 256) with the torch backend at 640×640
   and 800×1333 (padded to 800×1344): fp32 eager (TF32 off), fp16 autocast eager, CUDA graphs fp32, CUDA graphs
   fp16. Warm-up excluded, CUDA synchronised around every timed forward; median and p90 ms, peak CUDA memory.
2. torch (CUDA, fp32, TF32 off) vs onnxruntime (the main network exported at each size; CUDA provider when
   installed, else CPU) parity: max abs error per RawOutputs field on queries whose top-K selection matches, and
   how many of the 900 queries were selected differently (near-tied encoder scores).
3. If `tensorrt` and `pycuda` import: fp32 and fp16 engines of the 640×640 export (build time, cached-load time,
   latency, parity vs onnxruntime as in 2).
4. The shipped `tiny` weights in the perception session, as the node runs them (bench/session_cases.py `task_cases`:
   detection, instance segmentation, REC, RES, SOT, MOT on the synthetic 320×320 video): per-frame wall time and the
   session's own stage split with the torch backend on CUDA (fp32, eager and CUDA graphs at 320×320) and, in the
   same run, on this machine's CPU.

Every step records its own error instead of stopping the run. Without CUDA the script does nothing and exits 2.

    .venv/bin/python bench/gpu_checks.py [--sizes 640x640 800x1333] [--iterations 20]
        [--out bench/results/gpu_checks.json] [--skip-onnx] [--skip-tensorrt] [--skip-tiny-session]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import json
import math
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

PROMPT_TOKENS = 256
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gpu_checks.json"


def _padded(size: tuple[int, int], divisor: int = 32) -> tuple[int, int]:
    return (math.ceil(size[0] / divisor) * divisor, math.ceil(size[1] / divisor) * divisor)


def _inputs(text_dim: int, size: tuple[int, int], padded: tuple[int, int]):
    from uninext_core.model.prompt_features import PromptFeatures

    generator = torch.Generator().manual_seed(1)
    pixel_mask = torch.zeros(1, *padded, dtype=torch.bool)
    pixel_mask[:, : size[0], : size[1]] = True
    images = torch.randn(1, 3, *padded, generator=generator) * pixel_mask[:, None]
    hidden = torch.randn(1, PROMPT_TOKENS, text_dim, generator=generator)
    mask = torch.zeros(1, PROMPT_TOKENS, dtype=torch.bool)
    mask[:, :24] = True
    return images, pixel_mask, PromptFeatures(hidden, mask)


def _time(call: Callable[[], object], iterations: int, cuda: bool) -> dict:
    for _ in range(3):
        call()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iterations):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    result = {"median_ms": round(statistics.median(times), 2),
              "p90_ms": round(times[min(len(times) - 1, int(0.9 * len(times)))], 2), "iterations": iterations}
    if cuda:
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def _step(record: dict, name: str, action: Callable[[], dict]) -> None:
    start = time.perf_counter()
    try:
        record[name] = action()
    except Exception as error:  # a prepared script must report every failure and go on
        record[name] = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc(limit=4)}
    record[name]["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps({name: record[name]})[:400], flush=True)


def _parity(expected, got) -> dict:
    """Max errors per RawOutputs field on the queries both runs selected alike (either may live on the GPU)."""
    expected = type(expected)(*(t.float().cpu() for t in expected))
    got = type(got)(*(t.float().cpu() for t in got))
    same = (((expected.mask_reference_px - got.mask_reference_px).abs().amax(-1) <= 1e-2)
            & ((expected.boxes_cxcywh - got.boxes_cxcywh).abs().amax(-1) <= 1e-3))[0]
    errors = {}
    for name in expected._fields:
        a, b = getattr(expected, name), getattr(got, name)
        if name != "mask_features":
            a, b = a[0, same], b[0, same]
        errors[name] = float((a - b).abs().max()) if a.numel() else 0.0
    return {"max_abs_error_on_matched_queries": errors, "queries_selected_differently": int((~same).sum()),
            "queries": int(same.numel())}


def _tiny_session(frames: int) -> dict:
    """Per-frame cost of each task with the shipped tiny weights, torch backend on CUDA and on the CPU."""
    from session_cases import make_scene, task_cases

    from uninext_core.deploy.backend import model_spec
    from uninext_core.deploy.loading import load_backend
    from uninext_core.deploy.torch_graphed_backend import CudaGraphTorchBackend

    scene = make_scene(warmup=3, count=frames)
    result: dict = {"cpu_threads": torch.get_num_threads(), "timed_frames": frames}
    for device in ("cuda", "cuda_graphs", "cpu"):
        loaded = load_backend(preset="tiny", device="cpu" if device == "cpu" else "cuda")
        backend = loaded.backend
        if device == "cuda_graphs":  # frames are letterboxed to 320×320, the scene's size
            backend = CudaGraphTorchBackend(backend.model, spec=model_spec(loaded.config), input_size=(320, 320))
        try:
            result[device] = {case.name: case.run(backend, loaded.tokenizer) for case in task_cases(scene)}
        except Exception as error:  # keep the other devices' figures
            result[device] = {"error": f"{type(error).__name__}: {error}"}
    result["median_ms_ratio_vs_cuda_eager"] = {
        device: {name: round(result[device][name]["median_ms"] / result["cuda"][name]["median_ms"], 2)
                 for name in result["cuda"]}
        for device in ("cuda_graphs", "cpu") if "error" not in result[device] and "error" not in result["cuda"]}
    return result


def run(sizes: list[tuple[int, int]], iterations: int, out: Path, skip_onnx: bool, skip_tensorrt: bool,
        tiny_session: bool = True) -> dict:
    from uninext_core.config import r50
    from uninext_core.deploy.backend import model_spec
    from uninext_core.model.build import build_model

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    cfg = r50().replace(fusion=dataclasses.replace(r50().fusion, fp16_safe_mask=True))
    model = build_model(cfg, allow_random_text_init=True).eval()
    cpu_model = copy.deepcopy(model)  # exported on the CPU, like uninext-export
    model.cuda()
    report: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
                    "python": platform.python_version(), "preset": "r50 (random weights)",
                    "prompt_tokens": PROMPT_TOKENS, "sizes": {}}
    export_root = Path(tempfile.mkdtemp(prefix="uninext-gpu-checks-"))
    for index, size in enumerate(sizes):
        key = f"{size[0]}x{size[1]}"
        report["sizes"][key] = _check_size(model, cpu_model, cfg, model_spec(cfg), size, iterations,
                                           export_dir=None if skip_onnx else export_root / key,
                                           tensorrt=not skip_tensorrt and index == 0)
        out.write_text(json.dumps(report, indent=2) + "\n")  # keep partial results if a later step dies
    if tiny_session:
        _step(report, "tiny_shipped_session", lambda: _tiny_session(max(10, iterations)))
    return report


def _check_size(model, cpu_model, cfg, spec, size: tuple[int, int], iterations: int, *, export_dir: Path | None,
                tensorrt: bool) -> dict:
    from uninext_core.deploy.onnx_export import export_onnx
    from uninext_core.deploy.onnxruntime_backend import OnnxRuntimeBackend, default_providers
    from uninext_core.deploy.torch_backend import TorchBackend
    from uninext_core.deploy.torch_graphed_backend import CudaGraphTorchBackend

    padded = _padded(size)
    record: dict = {"padded_input": list(padded)}
    images, pixel_mask, prompt = _inputs(model.text_encoder.hidden_dim, size, padded)
    eager = TorchBackend(model, spec=spec, device="cuda")
    half = TorchBackend(model, spec=spec, device="cuda", fp16=True)

    def infer_with(backend) -> Callable[[], object]:
        return lambda: backend.infer(images, pixel_mask, prompt)

    _step(record, "torch_fp32", lambda: _time(infer_with(eager), iterations, True))
    _step(record, "torch_fp16_autocast", lambda: _time(infer_with(half), iterations, True))

    def graphed(fp16: bool) -> dict:
        backend = CudaGraphTorchBackend(model, spec=spec, input_size=padded, device="cuda", fp16=fp16)
        timing = _time(infer_with(backend), iterations, True)
        timing["vs_eager"] = _parity(infer_with(half if fp16 else eager)(), infer_with(backend)())
        return timing

    _step(record, "torch_cuda_graphs_fp32", lambda: graphed(False))
    _step(record, "torch_cuda_graphs_fp16", lambda: graphed(True))
    if export_dir is None:
        return record

    def export_and_compare() -> dict:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(cpu_model, cfg, export_dir, image_size=padded, parts=["main"])
        export_s = time.perf_counter() - start
        onnx_backend = OnnxRuntimeBackend(export_dir)
        return {"export_s": round(export_s, 1), "providers": onnx_backend.providers,
                "available_providers": default_providers(),
                "latency": _time(infer_with(onnx_backend), max(3, iterations // 4), False),
                "parity_vs_torch_cuda_fp32": _parity(infer_with(eager)(), infer_with(onnx_backend)())}

    _step(record, "onnxruntime", export_and_compare)
    if tensorrt and "error" not in record["onnxruntime"]:
        _step(record, "tensorrt", lambda: _tensorrt(export_dir, images, pixel_mask, prompt, iterations))
    return record


def _tensorrt(export_dir: Path, images, pixel_mask, prompt, iterations: int) -> dict:
    if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("pycuda") is None:
        return {"skipped": "tensorrt / pycuda not installed (requirements-tensorrt.txt)"}
    from uninext_core.deploy.onnxruntime_backend import OnnxRuntimeBackend
    from uninext_core.deploy.tensorrt_backend import TensorRTBackend

    reference = OnnxRuntimeBackend(export_dir).infer(images, pixel_mask, prompt)
    result = {}
    for precision in ("fp32", "fp16"):
        cache = export_dir / f"engines-{precision}"
        start = time.perf_counter()
        backend = TensorRTBackend(export_dir, cache_dir=cache, precision=precision)
        build_s = time.perf_counter() - start
        backend.close()
        start = time.perf_counter()
        backend = TensorRTBackend(export_dir, cache_dir=cache, precision=precision)
        result[precision] = {"build_s": round(build_s, 1), "cached_load_s": round(time.perf_counter() - start, 1),
                             "rebuilt_on_second_start": backend.built_parts,
                             "latency_incl_host_copies": _time(lambda b=backend: b.infer(images, pixel_mask, prompt),
                                                               iterations, False),
                             "parity_vs_onnxruntime": _parity(reference, backend.infer(images, pixel_mask, prompt))}
        backend.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["640x640", "800x1333"])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--skip-onnx", action="store_true")
    parser.add_argument("--skip-tensorrt", action="store_true")
    parser.add_argument("--skip-tiny-session", action="store_true", help="skip step 4 (needs the shipped weights and "
                        "the packaged MiniLM)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_checks: needs a CUDA GPU (torch.cuda.is_available() is False); nothing was measured or written",
              file=sys.stderr)
        return 2
    try:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
        if any(len(s) != 2 or min(s) < 64 for s in sizes):
            raise ValueError
    except ValueError:
        print(f"gpu_checks: --sizes must look like 640x640, got {args.sizes}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = run(sizes, args.iterations, out, args.skip_onnx, args.skip_tensorrt, not args.skip_tiny_session)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
