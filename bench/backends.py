"""CPU per-frame latency of the torch and onnxruntime backends side by side: tiny at 320×384 and r50 at 640×640.

Per frame = one `Backend.infer` with a cached text prompt (T = the model's text length: r50 256, tiny 64), as the
session runs it. Both backends run the same weights (the model is built with seed 0 in every process; the ONNX main
network is exported from it first, in its own process). Each (case, backend) measurement runs in a fresh process so
its peak RSS (ru_maxrss) is its own: peak_rss_mb is the process peak, infer_peak_mb its increase over the loaded
backend. Warm-up iterations are excluded; median and p90 over the timed iterations; ratio = torch median /
onnxruntime median (> 1: onnxruntime is faster). On a shared machine wall time depends on the other load
(load_avg_1m is recorded); cpu_ms_median, the process CPU time per frame (all threads), is the steadier companion
number. Where the time goes: a profiled extra iteration per backend, self time summed per operator type (torch
profiler `key_averages`; ONNX Runtime session profiling by op_name), top six. One JSON line per (case, backend),
then the table.

    .venv/bin/python bench/backends.py [--threads 2] [--iterations 5] [--cases tiny r50] [--export-root DIR]
        [--out bench/results/backends.txt]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch

CASES = {"tiny": ("tiny", (320, 384)), "r50": ("r50", (640, 640))}
BACKENDS = ("torch", "onnxruntime")
VALID_PROMPT_TOKENS = 24  # a ten-class caption
TOP_OPS = 6


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _build(preset: str):
    from uninext_core.config import load_config
    from uninext_core.model.build import build_model

    torch.manual_seed(0)
    cfg = load_config(preset)
    return cfg, build_model(cfg, allow_random_text_init=True).eval()


def _inputs(text_dim: int, tokens: int, size: tuple[int, int]):
    from uninext_core.model.prompt_features import PromptFeatures

    generator = torch.Generator().manual_seed(1)
    height, width = size
    pixel_mask = torch.ones(1, height, width, dtype=torch.bool)
    images = torch.randn(1, 3, height, width, generator=generator)
    hidden = torch.randn(1, tokens, text_dim, generator=generator)
    mask = torch.zeros(1, tokens, dtype=torch.bool)
    mask[:, :VALID_PROMPT_TOKENS] = True
    return images, pixel_mask, PromptFeatures(hidden, mask)


def _text_dim(backend) -> int:
    if hasattr(backend, "manifest"):
        return int(backend.manifest.part("main").input("prompt_hidden").shape[2])
    return backend.model.text_encoder.hidden_dim


def export_case(case: str, directory: Path, threads: int) -> None:
    """Child process: export the case's main network into `directory`."""
    from uninext_core.deploy.onnx_export import export_onnx

    torch.set_num_threads(threads)
    preset, size = CASES[case]
    cfg, model = _build(preset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, cfg, directory, image_size=size, parts=["main"])


def _torch_top_ops(backend, images, pixel_mask, prompt) -> list[tuple[str, float]]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        backend.infer(images, pixel_mask, prompt)
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:TOP_OPS]
    return [(e.key, round(e.self_cpu_time_total / total, 3)) for e in top]


def _onnxruntime_top_ops(path: Path, feed: dict, threads: int) -> list[tuple[str, float]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(path.parent / "ort_profile")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    session.run(None, feed)  # warm-up
    session.run(None, feed)
    trace = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values()) / 2  # two runs profiled; shares are per run
    top = sorted(per_op.items(), key=lambda item: item[1], reverse=True)[:TOP_OPS]
    return [(name, round(duration / 2 / total, 3)) for name, duration in top]


def run_case(case: str, backend_name: str, export_dir: Path, iterations: int, threads: int) -> dict:
    """Child process: time one backend on one case."""
    from uninext_core.deploy.backend import model_spec
    from uninext_core.deploy.export_manifest import main_feed
    from uninext_core.deploy.onnxruntime_backend import OnnxRuntimeBackend
    from uninext_core.deploy.torch_backend import TorchBackend

    torch.set_num_threads(threads)
    preset, size = CASES[case]
    rss_start = _rss_mb()
    if backend_name == "torch":
        cfg, model = _build(preset)
        backend = TorchBackend(model, spec=model_spec(cfg))
    else:
        backend = OnnxRuntimeBackend(export_dir, intra_op_threads=threads)
    images, pixel_mask, prompt = _inputs(_text_dim(backend), backend.spec.max_text_tokens, size)
    rss_loaded = _rss_mb()
    backend.infer(images, pixel_mask, prompt)  # warm-up
    times, cpu_times = [], []
    for _ in range(iterations):
        start, cpu_start = time.perf_counter(), time.process_time()
        backend.infer(images, pixel_mask, prompt)
        times.append((time.perf_counter() - start) * 1e3)
        cpu_times.append((time.process_time() - cpu_start) * 1e3)
    peak = _rss_mb()
    if backend_name == "torch":
        top_ops = _torch_top_ops(backend, images, pixel_mask, prompt)
    else:
        feed, _ = main_feed(backend.manifest, images, pixel_mask, prompt)
        top_ops = _onnxruntime_top_ops(export_dir / "main.onnx", feed, threads)
    times.sort()
    return {
        "case": case, "backend": backend_name, "device": "cpu", "precision": "fp32", "input_hw": list(size),
        "prompt_tokens": backend.spec.max_text_tokens, "threads": threads, "iterations": iterations,
        "median_ms": round(statistics.median(times), 1),
        "p90_ms": round(times[min(len(times) - 1, int(0.9 * len(times)))], 1),
        "cpu_ms_median": round(statistics.median(cpu_times), 1),
        "backend_rss_mb": round(rss_loaded - rss_start, 1), "peak_rss_mb": round(peak, 1),
        "infer_peak_mb": round(peak - rss_loaded, 1), "load_avg_1m": round(os.getloadavg()[0], 2),
        "top_ops_self_time_share": top_ops,
    }


def _export_is_current(case: str, export_dir: Path) -> bool:
    from uninext_core.config import load_config, to_yaml
    from uninext_core.deploy.export_manifest import ExportManifest

    try:
        return ExportManifest.load(export_dir).config_yaml == to_yaml(load_config(CASES[case][0]))
    except ValueError:
        return False


def _child(arguments: list[str]) -> str:
    result = subprocess.run([sys.executable, __file__, *arguments], check=True, capture_output=True, text=True)
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--export-root", help="folder for the exported ONNX files (default: a temporary folder)")
    parser.add_argument("--out", help="also append the JSON lines and the table to this file")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "BACKEND"), help=argparse.SUPPRESS)
    parser.add_argument("--export-child", metavar="CASE", help=argparse.SUPPRESS)
    parser.add_argument("--export-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        export_case(args.export_child, Path(args.export_dir), args.threads)
        return
    if args.child:
        case, backend = args.child
        print(json.dumps(run_case(case, backend, Path(args.export_dir), args.iterations, args.threads)))
        return
    root = Path(args.export_root) if args.export_root else Path(tempfile.mkdtemp(prefix="uninext-bench-"))
    lines, results = [], {}
    for case in args.cases:
        export_dir = root / f"{case}_{CASES[case][1][0]}x{CASES[case][1][1]}"
        if not _export_is_current(case, export_dir):
            start = time.perf_counter()
            _child(["--export-child", case, "--export-dir", str(export_dir), "--threads", str(args.threads)])
            print(f"# exported {case} main network in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        for backend in BACKENDS:
            line = _child(["--child", case, backend, "--export-dir", str(export_dir), "--iterations",
                           str(args.iterations), "--threads", str(args.threads)])
            print(line, flush=True)
            lines.append(line)
            results[case, backend] = json.loads(line)
    table = [f"\n{'case (cpu, fp32, ' + str(args.threads) + ' thr)':<24}{'torch ms':>10}{'ort ms':>10}{'ratio':>8}"
             f"{'cpu-time ratio':>16}{'torch peak MB':>15}{'ort peak MB':>13}"]
    for case in args.cases:
        eager, onnx = results[case, "torch"], results[case, "onnxruntime"]
        size = "x".join(str(v) for v in eager["input_hw"])
        table.append(f"{case + ' ' + size:<24}{eager['median_ms']:>10.1f}{onnx['median_ms']:>10.1f}"
                     f"{eager['median_ms'] / onnx['median_ms']:>7.2f}x"
                     f"{eager['cpu_ms_median'] / onnx['cpu_ms_median']:>15.2f}x{eager['peak_rss_mb']:>15.0f}"
                     f"{onnx['peak_rss_mb']:>13.0f}")
    print("\n".join(table))
    if args.out:
        with open(args.out, "a") as handle:
            handle.write("\n".join(lines) + "\n" + "\n".join(table).lstrip("\n") + "\n")


if __name__ == "__main__":
    main()
