"""Worker for test_loop's DDP check, started by `python -m torch.distributed.run` (not a test module).

Trains one step of a recipe given as JSON with a tiny config that has no per-process statistics or randomness, so
that N processes with B samples each must give the update of one process with N·B samples: a ResNet-18 body with
frozen batch norm instead of the preset's MobileNetV3 (whose trainable BatchNorms normalise with each process's own
batch, as in any DDP run without SyncBatchNorm), no attention dropout, and no denoising (set in the recipe).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import torch

from uninext_core.config import BackboneConfig, UninextConfig, tiny
from uninext_core.train.loop import run_training
from uninext_core.train.recipe import recipe_from_dict


def deterministic_tiny() -> UninextConfig:
    """The tiny image model with a frozen-BN ResNet-18 body and no attention dropout (see the module docstring)."""
    base = tiny(video=False)
    backbone = BackboneConfig(kind="resnet18", out_channels=(128, 256, 512), norm="frozen_bn", freeze_at=0)
    # without the query resample: its zero-initialised output keeps every other weight of it still at the one step
    # this trains, and the comparison in test_loop counts the weights that took a step
    return base.replace(backbone=backbone, fusion=replace(base.fusion, attn_dropout=0.0),
                        text=replace(base.text, frozen=True), heads=replace(base.heads, query_resample_layers=0))


def main() -> None:
    torch.set_num_threads(1)
    recipe = recipe_from_dict(json.loads(sys.argv[1]))
    run_training(recipe, max_steps=1, config=deterministic_tiny(), show_progress=False)


if __name__ == "__main__":
    main()
