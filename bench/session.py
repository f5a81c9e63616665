"""Per-frame cost of the `tiny` perception session on CPU with the torch and ONNX Runtime backends, the prompt-change
cost, and how the cost grows with class names, tracked instances and VOS objects.

Setting: tiny preset (MobileNetV3-Large, d 128, 64-token prompts), random weights built with seed 0 (bench/backends.py
`_build`), fp32, 320×320 synthetic frames, `--threads` torch threads and ONNX Runtime intra-op threads. The ONNX
Runtime backend runs an `uninext-export` folder of the same weights (text encoder, template encoder and main network
at 320×320), exported in a child process (or reused from `--export-dir` when its config matches); a parity line
compares the two backends' network outputs on one frame first. Both backends run in this process, case by case
(torch, then onnxruntime), so load drift hits both alike.

Groups (session_cases.py has the details):
* tasks: detection and instance segmentation (6 names), REC, RES, SOT, MOT (8 names): the session's own split per
  frame (preprocess, network, postprocess, tracking, template) and frames/s = 1000 / median wall time.
* prompt: set_prompt cost (cache miss) for 1, 10 and the most COCO names that fit, an expression, SOT and VOS
  templates; the 80-name prompt (the session rejects it: 80 names need more than 64 tokens); a cache hit.
* classes: instance segmentation with 1, 10 and the most COCO names that fit one 64-token caption; 80 names as one
  prompt (rejected, the reason is printed) and as the fewest equal parts that fit, one session per part on the same
  frames (the per-frame cost is the sum).
* tracks: MOT, MOTS, VIS with 1, 10, 50 planted detections (session_planting.py; the planting wraps any backend, so
  both backends run this group).
* vos: 1, 2, 4 mask-prompted objects, with the random weights' outputs (no object passes the score thresholds: no
  masks, no template updates) and planted (every object confident: one template update per object per frame).
Median and p90 wall time over the timed frames after `--warmup` frames, median process CPU time per frame (every
thread): on a shared machine the wall time carries the other processes' load, the CPU time much less. One JSON line
per (case, backend), then the tables; `--out` writes date, load, command, JSON lines and tables to a file.
Runtime: about 4 min with --threads 1 at load 3-4 on the shared 2-core machine; --threads 2 there took 17 min
(both backends' thread pools spin while waiting for a busy core; bench/results/session.txt has the figures).

    .venv/bin/python bench/session.py [--threads 2] [--frames 8] [--warmup 2] [--backend torch|onnxruntime|both]
        [--groups tasks prompt classes tracks vos] [--export-dir DIR] [--out bench/results/session.txt]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from backends import _build
from session_cases import (
    SIDE,
    Case,
    class_cases,
    describe,
    make_scene,
    prompt_cases,
    task_cases,
    track_cases,
    vos_cases,
)
from session_tables import all_tables

from uninext_core.config import load_config, to_yaml
from uninext_core.deploy.backend import Backend, model_spec
from uninext_core.deploy.export_manifest import PART_NAMES, ExportManifest
from uninext_core.deploy.torch_backend import TorchBackend
from uninext_core.model.text_encoder import TokenizedText, load_tokenizer
from uninext_core.prompts import build_category_caption
from uninext_core.tasks.preprocess import prepare_frame

GROUPS = ("tasks", "prompt", "classes", "tracks", "vos")
GOAL_FPS = 15.0
ENV_KEYS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")  # recorded with the command
PARITY_LIMIT = 1e-2  # larger differences mean the two backends do not hold the same weights


def export_child(directory: Path, threads: int) -> None:
    """Child process: export every part of the seed-0 tiny network at SIDE×SIDE into `directory`."""
    from uninext_core.deploy.onnx_export import export_onnx

    torch.set_num_threads(threads)
    logging.disable(logging.WARNING)  # the fp16-safe-mask warning does not concern fp32 runtimes
    cfg, model = _build("tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, cfg, directory, image_size=(SIDE, SIDE))


def _export_is_current(directory: Path) -> bool:
    try:
        manifest = ExportManifest.load(directory)
    except ValueError:
        return False
    return (manifest.config_yaml == to_yaml(load_config("tiny")) and tuple(manifest.image_size) == (SIDE, SIDE)
            and set(manifest.parts) == set(PART_NAMES))


def _onnxruntime_backend(export_dir: str | None, threads: int) -> Backend:
    from uninext_core.deploy.onnxruntime_backend import OnnxRuntimeBackend

    directory = Path(export_dir) if export_dir else Path(tempfile.mkdtemp(prefix="uninext-session-")) / "tiny"
    if not _export_is_current(directory):
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--export-child", str(directory), "--threads", str(threads)],
                       check=True)
        print(f"# exported tiny (all parts, {SIDE}x{SIDE}) to {directory} in {time.perf_counter() - start:.0f} s",
              file=sys.stderr)
    return OnnxRuntimeBackend(directory, intra_op_threads=threads)


def parity(backends: dict[str, Backend], tokenizer: object, frame: object) -> str:
    """Max |difference| of the two backends' text features and network outputs on one frame (a category prompt).

    Raises:
        SystemExit: differences above PARITY_LIMIT (the backends do not hold the same weights).
    """
    eager, onnx = backends["torch"], backends["onnxruntime"]
    caption = build_category_caption(("circle", "square"), tokenizer, max_tokens=eager.spec.max_text_tokens)
    tokens = TokenizedText(caption.input_ids, caption.attention_mask)
    outputs = []
    for backend in (eager, onnx):
        prepared = prepare_frame(frame, spec=backend.spec, short_side=SIDE, max_size=SIDE,
                                 fixed_input_size=backend.fixed_input_size, device=backend.device)
        features = backend.encode_text(tokens)
        outputs.append((features.hidden, backend.infer(prepared.images, prepared.pixel_mask, features)))
    diffs = {"text_hidden": float((outputs[0][0] - outputs[1][0]).abs().max())}
    for name in ("boxes_cxcywh", "token_logits", "pooled_logits", "iou_logits", "mask_features"):
        diffs[name] = float((getattr(outputs[0][1], name) - getattr(outputs[1][1], name)).abs().max())
    line = "# parity torch vs onnxruntime, max |diff|: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
    if max(diffs.values()) > PARITY_LIMIT:
        raise SystemExit(f"{line}\nthe backends disagree beyond {PARITY_LIMIT}: the export folder holds other "
                         f"weights; remove it (or --export-dir) and rerun")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8, help="timed frames per case")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--backend", choices=["torch", "onnxruntime", "both"], default="both")
    parser.add_argument("--groups", nargs="+", default=list(GROUPS), choices=GROUPS)
    parser.add_argument("--export-dir", help="ONNX export folder to reuse or fill (default: a temporary folder)")
    parser.add_argument("--out", help="write date, load, command, JSON lines and tables to this file")
    parser.add_argument("--export-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        export_child(Path(args.export_child), args.threads)
        return
    started, load_start = time.time(), os.getloadavg()
    torch.set_num_threads(args.threads)
    cfg = load_config("tiny")
    tokenizer = load_tokenizer(cfg.text)
    names = ["torch", "onnxruntime"] if args.backend == "both" else [args.backend]
    backends: dict[str, Backend] = {}
    if "torch" in names:
        _, model = _build("tiny")
        backends["torch"] = TorchBackend(model, spec=model_spec(cfg))
    if "onnxruntime" in names:
        backends["onnxruntime"] = _onnxruntime_backend(args.export_dir, args.threads)
    scene = make_scene(warmup=args.warmup, count=args.frames)
    notes = [parity(backends, tokenizer, scene.frames[0])] if len(backends) == 2 else []
    for note in notes:
        print(note, flush=True)
    tokens = cfg.text.max_tokens
    factories = {"tasks": lambda: task_cases(scene), "prompt": lambda: prompt_cases(scene, tokenizer, tokens),
                 "classes": lambda: class_cases(scene, tokenizer, tokens),
                 "tracks": lambda: track_cases(scene, tokenizer, tokens), "vos": lambda: vos_cases(scene)}
    results: dict[str, list[dict]] = {g: [] for g in args.groups}
    lines = []
    for group in args.groups:
        cases: list[Case] = factories[group]()
        for case in cases:
            for name, backend in backends.items():
                line = json.dumps(describe(case, name, args.threads, case.run(backend, tokenizer)))
                print(line, flush=True)
                lines.append(line)
                results[group].append(json.loads(line))
    tables = all_tables(results, threads=args.threads, goal_fps=GOAL_FPS)
    print("\n" + tables)
    if args.out:
        load_end = os.getloadavg()
        header = [f"# {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}, "
                  f"{time.time() - started:.0f} s, {os.cpu_count()} CPUs, torch {torch.__version__}",
                  f"# load average (1, 5, 15 min) at start {load_start[0]:.2f} {load_start[1]:.2f} "
                  f"{load_start[2]:.2f}, at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}",
                  "# command: " + shlex.join([*(f"{k}={v}" for k, v in sorted(os.environ.items()) if k in ENV_KEYS),
                                              ".venv/bin/python", "bench/session.py", *sys.argv[1:]])]
        with open(args.out, "a") as handle:
            handle.write("\n".join([*header, *notes, *lines, "", tables, "", ""]))


if __name__ == "__main__":
    main()
