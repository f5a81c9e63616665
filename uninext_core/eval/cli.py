"""uninext-eval: run the perception session over a dataset and score it with the task's official metric.

    uninext-eval --task detection --data data/synth/det --checkpoint model.safetensors --out runs/eval_det
    uninext-eval --task sot --data data/lasot --checkpoint uninext_r50.pth --preset r50 --limit 20 --out runs/sot
    uninext-eval --task mot --data data/synth/mot --categories circle,square --backend onnxruntime \\
        --engine-path exports/tiny --out runs/mot

Prompts come from the annotations as at test time (reference §7; see uninext_core.eval.units), the model is loaded
as the ROS node loads it (uninext_core.deploy.loading), and the output folder gets result.json (metrics, latency
summary, what was evaluated), report.md / report.html and PNG plots. Exit status: 0 on success, 2 for bad input
(data, checkpoint, options), 1 when the session refuses a frame or prompt during the run.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from uninext_core.eval.datasets import ALL_READERS, EVAL_TASKS, open_data, resolve_data
from uninext_core.eval.offline import evaluate_units
from uninext_core.eval.report import RESULT_NAME, write_report
from uninext_core.eval.runner import FrameOutput
from uninext_core.eval.units import build_units

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(prog="uninext-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=EVAL_TASKS)
    parser.add_argument("--data", required=True, help="dataset folder or annotation file")
    parser.add_argument("--checkpoint", default="", help=".safetensors or official .pth (torch backend)")
    parser.add_argument("--preset", default=None, help="model preset; default: the one the checkpoint names")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "tensorrt"))
    parser.add_argument("--engine-path", default="", help="uninext-export folder (onnxruntime, tensorrt)")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--fp16", action="store_true", help="torch on cuda: float16 autocast")
    parser.add_argument("--cuda-graphs", action="store_true", help="torch on cuda: replay the network from CUDA graphs")
    parser.add_argument("--text-encoder-path", default="", help="local Hugging Face BERT folder")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N units only")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--reader", default=None, choices=ALL_READERS, help="force the dataset reader")
    parser.add_argument("--image-root", default=None, help="image folder of a JSON dataset")
    parser.add_argument("--refs", default=None, help="RefCOCO refs file")
    parser.add_argument("--expressions", default=None, help="R-VOS meta_expressions.json")
    parser.add_argument("--categories", default="", help="MOTChallenge class names, comma-separated")
    parser.add_argument("--split", default="", help="DAVIS / YouTube-VOS split")
    parser.add_argument("--short-side", type=int, default=None, help="input short side (default: the preset's)")
    parser.add_argument("--max-size", type=int, default=None, help="input long-side bound (default: the preset's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="session setting (a SessionConfig field, e.g. sot_motion_weight=0.3); repeatable")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser


def resolve_preset(args: argparse.Namespace) -> str:
    """--preset, else the preset the checkpoint (or export) names (args: preset, backend, engine_path, checkpoint).

    Raises:
        ValueError: no way to tell (an official .pth without --preset, no checkpoint and no export).
    """
    if args.preset:
        return args.preset
    if args.backend != "torch":
        if not args.engine_path:
            raise ValueError(f"backend {args.backend} needs --engine-path (an uninext-export folder)")
        from uninext_core.deploy.export_manifest import ExportManifest

        return ExportManifest.load(args.engine_path).preset
    if not args.checkpoint:
        raise ValueError("the torch backend needs --checkpoint (.safetensors or an official .pth)")
    if Path(args.checkpoint).suffix == ".pth":
        raise ValueError(f"official checkpoint {args.checkpoint} does not name its preset; give --preset "
                         f"(r50, convnext_l or vit_h)")
    from uninext_core.checkpoint.safetensors_io import read_config

    return read_config(args.checkpoint).name


def parse_overrides(items: list[str]) -> dict[str, object]:
    """`["FIELD=VALUE", ...]` -> {field: value}, each value converted to the type of the SessionConfig field.

    Raises:
        ValueError: not FIELD=VALUE, an unknown or non-scalar field, or a value of the wrong type.
    """
    import dataclasses

    from uninext_core.tasks.session_config import SessionConfig

    defaults = {f.name: getattr(SessionConfig(), f.name) for f in dataclasses.fields(SessionConfig)}
    overrides: dict[str, object] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        default = defaults.get(name, dataclasses.MISSING)
        if default is dataclasses.MISSING:
            raise ValueError(f"--set: unknown session setting {name!r}; known: {', '.join(sorted(defaults))}")
        if isinstance(default, bool):
            if text.strip().lower() not in ("true", "false"):
                raise ValueError(f"--set {name} expects true or false, got {text!r}")
            overrides[name] = text.strip().lower() == "true"
        elif isinstance(default, int | float) or default is None:
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"--set {name} expects a number, got {text!r}") from None
            wants_int = isinstance(default, int) or default is None
            if wants_int and not value.is_integer():
                raise ValueError(f"--set {name} expects an integer, got {text!r}")
            overrides[name] = int(value) if wants_int else value
        else:
            raise ValueError(f"--set cannot change {name} (a {type(default).__name__} section)")
    return overrides


def run(args: argparse.Namespace) -> int:
    """Evaluate as `args` say; returns the exit status (raises ValueError for bad input)."""
    from uninext_core.deploy.loading import load_backend
    from uninext_core.tasks.session import Session
    from uninext_core.tasks.session_config import SessionConfig

    categories = tuple(n.strip() for n in args.categories.split(",") if n.strip())
    selection = resolve_data(args.data, task=args.task, reader=args.reader, image_root=args.image_root,
                             refs=args.refs, expressions=args.expressions, categories=categories, split=args.split)
    store = open_data(selection)
    units = build_units(store, task=args.task, limit=args.limit)
    overrides = parse_overrides(args.overrides)
    session_config = SessionConfig(input_short_side=args.short_side, input_max_size=args.max_size).replace(
        **overrides)
    if args.backend == "torch" and not args.checkpoint:
        raise ValueError("the torch backend needs --checkpoint (.safetensors or an official .pth)")
    preset = resolve_preset(args)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_backend(preset=preset, checkpoint=args.checkpoint, backend=args.backend, device=args.device,
                          engine_path=args.engine_path, text_encoder_path=args.text_encoder_path, fp16=args.fp16,
                          cuda_graphs=args.cuda_graphs, input_short_side=args.short_side,
                          input_max_size=args.max_size)
    session = Session(loaded.backend, tokenizer=loaded.tokenizer, config=session_config)
    stale = args.out / RESULT_NAME
    if stale.exists():
        stale.unlink()  # a run that fails from here on must not leave an older result looking like its own
    total = sum(len(u.frames) for u in units)
    with tqdm(total=total, unit="frame", desc=f"uninext-eval {args.task}", file=sys.stderr) as bar:
        def advance(_: FrameOutput) -> None:
            bar.update(1)

        evaluation = evaluate_units(session, store, units, task=args.task, on_output=advance)
    evaluated = {
        "task": args.task, "dataset": str(selection.path), "reader": selection.reader, "units": len(units),
        "frames": evaluation.frames, "checkpoint": args.checkpoint or "", "engine_path": args.engine_path,
        "preset": preset, "backend": args.backend, "device": args.device if args.backend == "torch" else "exported",
        "model": loaded.description, "seed": args.seed, "limit": args.limit if args.limit is not None else "",
        "input_short_side": args.short_side or loaded.backend.spec.test_short_side,
        "input_max_size": args.max_size or loaded.backend.spec.test_max_size,
        "session_overrides": ", ".join(f"{k}={v}" for k, v in overrides.items()),
    }
    files = write_report(args.out, title=f"uninext-eval: {args.task} on {selection.path.name}", evaluated=evaluated,
                         metrics=evaluation.scores.metrics, curves=evaluation.scores.curves,
                         latency=evaluation.latency, wall_ms=evaluation.wall_ms,
                         extra={"units": [u.name for u in units]})
    headline = ", ".join(f"{k}={v:.4f}" for k, v in list(evaluation.scores.metrics.items())[:4])
    print(f"{args.task}: {headline}; {evaluation.frames} frames, "
          f"{evaluation.latency.get('wall_ms_mean', 0.0):.1f} ms/frame -> {files.result}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input, 1 refused during the run)."""
    from uninext_core.eval.runner import PromptFailed
    from uninext_core.tasks.session import FrameRejected

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (PromptFailed, FrameRejected) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
