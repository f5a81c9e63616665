"""Fit the retrieval side of a trained model on cached inputs (`uninext_core.train.retrieval_fit`).

    python -m training.fit_retrieval cache --recipe training/recipes/tiny_retrieval_fit.yaml --batches 2000 \\
        --out runs/retrieval_fit/train_cache
    python -m training.fit_retrieval cache --recipe training/recipes/tiny_retrieval_fit_val.yaml --batches 300 \\
        --chunk 50 --out runs/retrieval_fit/val_cache
    python -m training.fit_retrieval fit --recipe training/recipes/tiny_retrieval_fit.yaml \\
        --cache runs/retrieval_fit/train_cache --val-cache runs/retrieval_fit/val_cache --epochs 8 \\
        --lr-drop 6 --out runs/retrieval_fit/model_final.safetensors

`cache` runs the recipe's batch stream (its datasets, ratios, augmentation and seed) through the frozen network
built from the recipe's `init_checkpoint`, and writes the retrieval inputs of every key frame in chunks of
`--chunk` batches; an interrupted run continues after the last complete chunk. `fit` trains the recipe's
`trainable` parameters (only the last decoder layer's retrieval head, the query colour, the query relation and the
query resample are allowed; a model with a resample caches each key frame's encoder memory, which it reads) with
the recipe's solver settings, and writes the init weights with the fitted parameters in their place, plus
`<out stem>_best.safetensors` at the epoch with the best validation top-1 when a validation cache is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from uninext_core.model.build import build_model
from uninext_core.train import checkpointing as ckpt
from uninext_core.train.loop import (
    build_stream,
    encode_prompt,
    freeze_all_but,
    init_distributed,
    model_config,
    optimizer_settings,
)
from uninext_core.train.recipe import Recipe, load_recipe
from uninext_core.train.retrieval_fit import (
    CachedFrame,
    EpochReport,
    check_fittable,
    expression_top1,
    fit_retrieval,
    frames_of_batch,
    load_frames,
    save_frames,
)

logger = logging.getLogger("training.fit_retrieval")


def _model(recipe: Recipe):
    """The recipe's model with its init weights; the text encoder frozen as the recipe says."""
    if not recipe.init_checkpoint:
        raise ValueError(f"recipe {recipe.name!r} has no init_checkpoint; a retrieval fit starts from trained weights")
    cfg = model_config(recipe)
    torch.manual_seed(recipe.seed)
    model = build_model(cfg)
    ckpt.init_from_checkpoint(model, recipe.init_checkpoint, config=cfg,
                              template_from_backbone=recipe.template_from_backbone)
    return model, cfg


def _chunk_path(folder: Path, index: int) -> Path:
    return folder / f"chunk_{index:05d}.pt"


def cache(recipe: Recipe, *, batches: int, out: Path, chunk: int, shard: tuple[int, int] = (0, 1),
          show_progress: bool = True) -> int:
    """Write the retrieval inputs of `batches` stream batches to `out` in chunks; returns the frames written now.
    `shard` (i, n): this process writes only the chunks whose index is i modulo n, so n single-threaded processes
    can share the cores (on 2 cores, faster than one process with 2 threads on these small tensors)."""
    if batches <= 0 or chunk <= 0:
        raise ValueError(f"batches and chunk must be positive, got {batches} and {chunk}")
    if not 0 <= shard[0] < shard[1]:
        raise ValueError(f"shard must be i/n with 0 <= i < n, got {shard[0]}/{shard[1]}")
    model, cfg = _model(recipe)
    model.eval()
    stream = build_stream(recipe, model, cfg, init_distributed())
    written = 0
    bar = tqdm(total=batches, desc=f"cache {recipe.name}", disable=not show_progress,
               mininterval=1.0 if sys.stderr.isatty() else 60.0)
    for index, start in enumerate(range(0, batches, chunk)):
        size = min(chunk, batches - start)
        path = _chunk_path(out, index)
        if path.exists() or index % shard[1] != shard[0]:
            stream.skip(size)
            bar.update(size)
            continue
        frames: list[CachedFrame] = []
        with torch.no_grad():
            for step in range(start, start + size):
                batch = stream.next(step)
                frames.extend(frames_of_batch(model, batch, encode_prompt(model, batch.prompt)))
                bar.update(1)
        save_frames(frames, path)
        written += len(frames)
    bar.close()
    return written


def read_cache(folder: Path) -> list[CachedFrame]:
    """Every chunk of a cache folder, in order (ValueError when there is none)."""
    paths = sorted(folder.glob("chunk_*.pt"))
    if not paths:
        raise ValueError(f"no cache chunks (chunk_*.pt) in {folder}; run `python -m training.fit_retrieval cache` "
                         "first")
    return [frame for path in paths for frame in load_frames(path)]


def fit(recipe: Recipe, *, cache_dir: Path, val_dir: Path | None, epochs: int, batch_size: int,
        lr_drop_epochs: list[int], out: Path) -> tuple[float | None, list[EpochReport]]:
    """Fit on a cache and write the weights (see module docstring); returns the validation top-1 before fitting
    and the epoch reports. `<out stem>_best` is written only for an epoch that beats the weights it started from."""
    model, cfg = _model(recipe)
    freeze_all_but(model, recipe.trainable)
    check_fittable(model)
    frames = read_cache(cache_dir)
    val_frames = read_cache(val_dir) if val_dir is not None else []
    counts = {kind: sum(f.kind == kind for f in frames) for kind in ("category", "expression", "template")}
    logger.info("fitting %s on %d cached frames %s, %d validation frames", ", ".join(recipe.trainable),
                len(frames), counts, len(val_frames))
    start = expression_top1(model.eval(), val_frames)
    logger.info("validation expression top-1 before fitting: %s", "-" if start is None else f"{start:.3f}")
    best = {"top1": -1.0 if start is None else start}
    best_path = out.with_name(f"{out.stem}_best{out.suffix}")

    def save(path: Path, epoch: int, report: EpochReport) -> None:
        ckpt.save_model(model, path, config=cfg, include_text_encoder=False, extra_metadata={
            "retrieval_fit.recipe": recipe.name, "retrieval_fit.epoch": str(epoch + 1),
            "retrieval_fit.frames": str(len(frames)),
            "retrieval_fit.val_top1": "" if report.val_top1 is None else f"{report.val_top1:.4f}"})

    def on_epoch(report: EpochReport) -> None:
        if report.val_top1 is not None and report.val_top1 > best["top1"]:
            best["top1"] = report.val_top1
            save(best_path, report.epoch, report)

    solver = recipe.solver
    reports = fit_retrieval(model, frames, settings=optimizer_settings(recipe), epochs=epochs, batch_size=batch_size,
                            lr_drop_epochs=lr_drop_epochs, gamma=solver.gamma, clip_grad_norm=solver.clip_grad_norm,
                            seed=recipe.seed, val_frames=val_frames, on_epoch=on_epoch)
    save(out, epochs - 1, reports[-1])
    return start, reports


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(prog="python -m training.fit_retrieval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="write the retrieval inputs of the recipe's batches")
    c.add_argument("--recipe", type=Path, required=True)
    c.add_argument("--batches", type=int, required=True, help="stream batches to cache")
    c.add_argument("--out", type=Path, required=True, help="cache folder")
    c.add_argument("--chunk", type=int, default=100, help="batches per chunk file (the unit of resuming)")
    c.add_argument("--shard", default="0/1", help="i/n: write only the chunks whose index is i modulo n")
    f = sub.add_parser("fit", help="fit the recipe's trainable retrieval parameters on a cache")
    f.add_argument("--recipe", type=Path, required=True)
    f.add_argument("--cache", type=Path, required=True, help="training cache folder")
    f.add_argument("--val-cache", type=Path, default=None, help="validation cache folder (expression top-1)")
    f.add_argument("--epochs", type=int, required=True)
    f.add_argument("--batch-size", type=int, default=32)
    f.add_argument("--lr-drop", type=int, nargs="*", default=[], help="epochs (0-based) where the LR drops")
    f.add_argument("--out", type=Path, required=True, help="output weights (safetensors)")
    for p in (c, f):
        p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        p.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; prints one JSON summary line. Returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        recipe = load_recipe(args.recipe)
        if args.command == "cache":
            index, _, count = args.shard.partition("/")
            if not (index.isdigit() and count.isdigit()):
                raise ValueError(f"--shard must be i/n (for example 0/2), got {args.shard!r}")
            written = cache(recipe, batches=args.batches, out=args.out, chunk=args.chunk,
                            shard=(int(index), int(count)), show_progress=not args.no_progress)
            print(json.dumps({"recipe": recipe.name, "cache": str(args.out), "frames_written": written}))
        else:
            start, reports = fit(recipe, cache_dir=args.cache, val_dir=args.val_cache, epochs=args.epochs,
                          batch_size=args.batch_size, lr_drop_epochs=args.lr_drop, out=args.out)
            print(json.dumps({"recipe": recipe.name, "out": str(args.out), "val_top1_before": start,
                              "epochs": [r._asdict() for r in reports]}))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
