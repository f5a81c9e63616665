"""Benchmark: synthetic image generation with masks, written to disk as COCO (issue 4 target: 1,000 images at
320×320 in under 60 s on 2 cores).

Each case runs the real export path (draw → JPEG → RLE masks → COCO JSON) into a temporary folder and prints one
JSON line: images/s, the ratio to the target rate (1000 / 60 s; > 1 is faster than needed), median and p90 time
between finished images (one worker only), and the machine's load average (other processes share these cores).

    .venv/bin/python bench/synthetic_generation.py                # 1000 images, workers 1 and 2
    .venv/bin/python bench/synthetic_generation.py --count 200 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from uninext_core.data.synthetic.export import export_world
from uninext_core.data.synthetic.options import ExportOptions

TARGET_IMAGES_PER_S = 1000 / 60.0


def run_case(*, count: int, size: int, difficulty: str, workers: int, mask_format: str, out: Path) -> dict:
    """Generate `count` images and return the measurements."""
    stamps: list[float] = []
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    export_world(ExportOptions(out=out, task="detection", count=count, size=size, difficulty=difficulty,
                               workers=workers, mask_format=mask_format),
                 progress=lambda _n: stamps.append(time.perf_counter()))
    seconds = time.perf_counter() - start
    gaps_ms = np.diff([start, *stamps]) * 1000.0
    rate = count / seconds
    return {
        "case": f"detection_{size}px_{difficulty}_{mask_format}", "workers": workers, "images": count,
        "seconds": round(seconds, 2), "images_per_s": round(rate, 1),
        "ratio_to_target": round(rate / TARGET_IMAGES_PER_S, 2),
        # time between finished images; only meaningful in one process (workers hand results back in chunks)
        "median_ms": round(float(np.median(gaps_ms)), 2) if workers == 1 else None,
        "p90_ms": round(float(np.percentile(gaps_ms, 90)), 2) if workers == 1 else None,
        "load_avg_1min_before": round(load_before, 2), "load_avg_1min_after": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(), "device": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> None:
    """Run the cases and print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--difficulty", default="medium", choices=("easy", "medium", "hard"))
    parser.add_argument("--mask-format", default="rle", choices=("rle", "polygon"))
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts, one case each")
    args = parser.parse_args(argv)
    for workers in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
            export_world(ExportOptions(out=Path(tmp) / "warmup", task="detection", count=4, size=args.size))
            print(json.dumps(run_case(count=args.count, size=args.size, difficulty=args.difficulty, workers=workers,
                                      mask_format=args.mask_format, out=Path(tmp) / "run")), flush=True)


if __name__ == "__main__":
    main()
