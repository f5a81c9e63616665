"""Train one UNINEXT stage from a recipe, in one process or under torchrun.

    python -m training.train --recipe training/recipes/tiny_stage1.yaml [--resume] [--max-steps N] [--threads T]
        [--max-minutes M] [--data-workers W]
    torchrun --nproc_per_node 2 -m training.train --recipe training/recipes/tiny_stage1.yaml   # DDP (gloo / NCCL)
    torchrun --nnodes 2 --node_rank R --rdzv_backend c10d --rdzv_endpoint HOST:29400 --nproc_per_node 8 \\
        -m training.train --recipe training/recipes/r50_stage3.yaml                           # several machines

Writes `<output_dir>/checkpoints/` (model safetensors + trainer state, resumable with --resume), metrics.jsonl,
loss_curves.png and, at the end of the schedule, model_final.safetensors (the next stage's `init_checkpoint`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import torch

from uninext_core.train.loop import run_training
from uninext_core.train.recipe import load_recipe


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, required=True, help="stage recipe (YAML)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint, if any")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop (with a checkpoint) once this iteration is reached; default: the recipe's max_iter")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop (with a checkpoint) after this many minutes of training; --resume goes on")
    parser.add_argument("--data-workers", type=int, default=0,
                        help="processes building batches ahead of the step (GPU training); default 0 = none")
    parser.add_argument("--output-dir", type=Path, default=None, help="override the recipe's output_dir")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; prints one JSON summary line on rank 0. Returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        recipe = load_recipe(args.recipe)
        if args.output_dir is not None:
            recipe = replace(recipe, output_dir=str(args.output_dir))
        result = run_training(recipe, resume=args.resume, max_steps=args.max_steps, max_minutes=args.max_minutes,
                              data_workers=args.data_workers, show_progress=not args.no_progress)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if torch.distributed.is_initialized():
        rank = torch.distributed.get_rank()
        torch.distributed.destroy_process_group()
        if rank != 0:
            return 0
    print(json.dumps({"recipe": recipe.name, "step": result.step, "output_dir": str(result.output_dir),
                      "loss": result.last_losses.get("loss")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
