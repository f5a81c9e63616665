"""Benchmark: training throughput of the `tiny` model on CPU (issue 5): images/s in one process (1 and 2 threads)
and with 1 vs 2 gloo processes (torchrun, 1 thread each).

Each case runs the real trainer (`python -m torch.distributed.run ... -m training.train`) on a freshly generated
synthetic detection set with the stage-1 settings (BoxInst masks, denoising, frozen text encoder, batch 2 per process,
320-px images without resize jitter) for `--warmup + --steps` iterations, and reads the per-iteration wall time of
rank 0 from metrics.jsonl, warm-up iterations excluded. One JSON line per case: median and p90 ms per iteration,
images/s (= global batch / median time), the ratio to the first case (same run), and the machine's load average —
other processes share these cores, so compare cases of one run only.

    .venv/bin/python bench/train_throughput.py                  # 3 + 12 iterations per case
    .venv/bin/python bench/train_throughput.py --steps 30 --size 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from uninext_core.config import tiny
from uninext_core.data.synthetic.export import export_world
from uninext_core.data.synthetic.options import ExportOptions
from uninext_core.train.curves import read_metrics

REPO = Path(__file__).resolve().parents[1]
# (processes, threads per process)
CASES = ((1, 2), (1, 1), (2, 1))


def _recipe(data: Path, out: Path, *, size: int, batch_size: int, max_iter: int) -> dict:
    return {
        "name": "throughput", "preset": "tiny", "output_dir": str(out), "freeze_text_encoder": True, "log_period": 1,
        "seed": 0, "solver": {"max_iter": max_iter, "base_lr": 2e-4, "backbone_multiplier": 1.0, "lr_steps": []},
        "input": {"short_sides": [size], "max_size": size, "flip_prob": 0.5, "crop_prob": 0.0,
                  "pre_crop_short_sides": [], "crop_range": [size, size]},
        "datasets": [{"name": "synth", "task": "detection", "reader": "coco",
                      "path": str(data / "annotations" / "instances.json"), "image_root": str(data / "images"),
                      "batch_size": batch_size, "mask_supervision": "boxinst"}],
    }


def run_case(*, processes: int, threads: int, data: Path, work: Path, size: int, batch_size: int, warmup: int,
             steps: int) -> dict:
    """Train warmup + steps iterations in `processes` processes and measure rank 0's iteration times."""
    out = work / f"p{processes}_t{threads}"
    recipe = work / f"p{processes}_t{threads}.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(data, out, size=size, batch_size=batch_size, max_iter=warmup + steps)))
    load_before = os.getloadavg()[0]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "training.train", "--recipe", str(recipe), "--threads", str(threads), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    completed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"case {processes}x{threads} failed:\n{completed.stderr[-2000:]}")
    times = np.array([r["step_time_s"] for r in read_metrics(out / "metrics.jsonl") if r["step"] > warmup])
    median = float(np.median(times))
    return {
        "case": f"tiny_{size}px_stage1", "backbone": tiny().backbone.kind, "processes": processes,
        "threads_per_process": threads,
        "global_batch": batch_size * processes, "iterations": len(times),
        "median_ms": round(1000 * median, 1), "p90_ms": round(1000 * float(np.percentile(times, 90)), 1),
        "images_per_s": round(batch_size * processes / median, 3),
        "load_avg_1min_before": round(load_before, 2), "load_avg_1min_after": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(), "device": platform.processor() or platform.machine(), "precision": "float32",
    }


def main(argv: list[str] | None = None) -> None:
    """Run the cases and print one JSON line each, then a side-by-side table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=2, help="per process")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="uninext-train-bench-") as folder:
        work = Path(folder)
        export_world(ExportOptions(out=work / "data", task="detection", count=32, size=args.size, seed=0))
        for processes, threads in CASES:
            result = run_case(processes=processes, threads=threads, data=work / "data", work=work, size=args.size,
                              batch_size=args.batch_size, warmup=args.warmup, steps=args.steps)
            result["ratio_to_first"] = round(result["images_per_s"] / (results or [result])[0]["images_per_s"], 2)
            results.append(result)
            print(json.dumps(result), flush=True)
    print(f"\n{'processes x threads':>20} {'images/s':>9} {'median ms':>10} {'vs first':>9}")
    for r in results:
        print(f"{r['processes']:>11} x {r['threads_per_process']:<6} {r['images_per_s']:>9} {r['median_ms']:>10} "
              f"{r['ratio_to_first']:>9}")


if __name__ == "__main__":
    main()
