"""Command-line tools: `uninext-export` (network -> ONNX parts + manifest) and `uninext-build-engine` (ONNX parts ->
cached TensorRT engines). Both print progress; engine builds take minutes.

    uninext-export --weights uninext_r50_video.safetensors --image-size 800 1344 --out exports/r50_800x1344
    uninext-build-engine --export-dir exports/r50_800x1344 --precision fp16

Console scripts (setup.py): `uninext-export = uninext_core.deploy.cli:export_main`,
`uninext-build-engine = uninext_core.deploy.cli:build_engine_main`. Exit codes: 0 success, 2 bad input or a missing
optional package (the message says which), 1 a build that failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from uninext_core.checkpoint.safetensors_io import load_model, read_config
from uninext_core.config import PRESETS, UninextConfig, load_config
from uninext_core.deploy.engine_cache import PRECISIONS
from uninext_core.deploy.export_manifest import PART_NAMES
from uninext_core.deploy.onnx_export import export_onnx
from uninext_core.deploy.tensorrt_backend import TensorRTBackend
from uninext_core.model.build import build_model
from uninext_core.model.uninext import Uninext


def default_image_size(cfg: UninextConfig) -> tuple[int, int]:
    """(test short side, test long-side bound), each rounded up to the size divisibility (r50: 800 x 1344)."""
    d = cfg.input.size_divisibility
    return (math.ceil(cfg.input.test_short_side / d) * d, math.ceil(cfg.input.test_max_size / d) * d)


def load_network(config: str | None, weights: str | None, *, allow_random_text_init: bool,
                 fp16_safe_mask: bool) -> tuple[UninextConfig, Uninext]:
    """The config and network to export: from a weights file (uninext-convert / trainer output, which stores its
    config; `config`, when given, must name the same preset) or a preset / YAML with random weights."""
    if weights is None:
        cfg = load_config(config or "tiny")
        if fp16_safe_mask:
            cfg = cfg.replace(fusion=dataclasses.replace(cfg.fusion, fp16_safe_mask=True))
        return cfg, build_model(cfg, allow_random_text_init=allow_random_text_init).eval()
    # `load_model` also refills a frozen text encoder a file leaves out (the shipped `tiny` weights)
    loaded = load_model(weights, preset=config if config in PRESETS else None)
    cfg = read_config(weights)
    if not fp16_safe_mask:
        return cfg, loaded
    cfg = cfg.replace(fusion=dataclasses.replace(cfg.fusion, fp16_safe_mask=True))  # a masking rule, no weights
    model = build_model(cfg, allow_random_text_init=True)
    model.load_state_dict(loaded.state_dict(), strict=True)
    return cfg, model.eval()


def _export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uninext-export", description="Export the UNINEXT network to ONNX parts "
                                     "(text encoder, template encoder, main network) with a manifest.")
    parser.add_argument("--config", help="preset name (tiny, r50, ...) or YAML path (default: the weights file's "
                        "config, else tiny)")
    parser.add_argument("--weights", help="uninext-ros .safetensors weights (uninext-convert / trainer output; they "
                        "carry their config); omitted: random weights")
    parser.add_argument("--allow-random-text-init", action="store_true",
                        help="official presets without text.path: random bert-base weights (tests, benchmarks)")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                        help="static image size of the main network (default: the config's test size, padded)")
    parser.add_argument("--prompt-buckets", type=int, nargs="+",
                        help="prompt lengths (default: text tokens, template tokens, two templates)")
    parser.add_argument("--parts", nargs="+", choices=PART_NAMES, help="parts to export (default: all the model has)")
    parser.add_argument("--no-fp16-safe-mask", action="store_true",
                        help="keep the -9e15 prompt mask (fp32 runtimes only; fp16 engines need the safe mask)")
    parser.add_argument("--out", required=True, help="output folder")
    return parser


def export_main(argv: Sequence[str] | None = None) -> int:
    """`uninext-export` entry point."""
    args = _export_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg, model = load_network(args.config, args.weights, allow_random_text_init=args.allow_random_text_init,
                                  fp16_safe_mask=not args.no_fp16_safe_mask)
        if not args.weights:
            print("warning: no --weights given, exporting random weights", file=sys.stderr)
        image_size = tuple(args.image_size) if args.image_size else default_image_size(cfg)
        parts = args.parts or [p for p in PART_NAMES if p != "template_encoder" or cfg.template.enabled]
        start = time.perf_counter()
        with tqdm(total=2 * len(parts) + 1, desc="uninext-export", unit="step") as bar:
            def progress(message: str) -> None:
                bar.set_postfix_str(f"{message} ({time.perf_counter() - start:.0f} s)")
                bar.update(1)

            manifest = export_onnx(model, cfg, args.out, image_size=image_size, prompt_buckets=args.prompt_buckets,
                                   parts=parts, progress=progress)
    except ValueError as error:
        print(f"uninext-export: {error}", file=sys.stderr)
        return 2
    for name, part in manifest.parts.items():
        print(f"{name}: {Path(args.out) / part.file} sha256 {part.sha256[:16]}…")
    print(f"image {manifest.image_size[0]}x{manifest.image_size[1]}, prompt buckets {list(manifest.prompt_buckets)}, "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uninext-build-engine", description="Build (or load from the cache) the "
                                     "TensorRT engines of an uninext-export folder.")
    parser.add_argument("--export-dir", required=True, help="folder written by uninext-export")
    parser.add_argument("--cache-dir", help="engine cache folder (default: <export-dir>/engines)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index")
    parser.add_argument("--workspace-gb", type=float, default=4.0, help="builder workspace limit in GiB")
    parser.add_argument("--calibration", nargs="+", metavar="NPZ",
                        help="int8: .npz files with main-network inputs (images, pixel_mask, prompt_hidden, "
                             "prompt_mask at the text bucket)")
    return parser


def build_engine_main(argv: Sequence[str] | None = None) -> int:
    """`uninext-build-engine` entry point."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    bars: dict[str, tqdm] = {}

    def progress(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            bar = bars[phase] = tqdm(total=total, desc=phase[:60], unit="step", leave=False)
        bar.n = done
        bar.refresh()
        if done >= total:
            bars.pop(phase).close()

    try:
        calibration = None
        if args.calibration:
            calibration = [{name: np.asarray(values) for name, values in np.load(path).items()}
                           for path in args.calibration]
        if args.precision == "int8" and not calibration:
            raise ValueError("--precision int8 needs --calibration files")
        cache_dir = args.cache_dir or str(Path(args.export_dir) / "engines")
        start = time.perf_counter()
        backend = TensorRTBackend(args.export_dir, cache_dir=cache_dir, precision=args.precision,
                                  device_index=args.device, workspace_bytes=int(args.workspace_gb * (1 << 30)),
                                  calibration_batches=calibration, progress=progress)
    except (ImportError, ValueError) as error:
        print(f"uninext-build-engine: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"uninext-build-engine: build failed: {error}", file=sys.stderr)
        return 1
    rebuilt = ", ".join(backend.built_parts) or "none (all loaded from the cache)"
    print(f"engines for {backend.gpu.name} (sm {backend.gpu.compute_capability}), {args.precision}, in {cache_dir}; "
          f"built: {rebuilt}; {time.perf_counter() - start:.1f} s")
    backend.close()
    return 0
