"""Worker for test_loop's DDP check, started by `python -m torch.distributed.run` (not a test module).

Trains one step of a recipe given as JSON with a tiny config that has no source of per-process randomness
(frozen batch norm, no attention dropout, frozen text encoder, no denoising in the recipe), so that N processes
with B samples each must give the update of one process with N·B samples.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace

import torch

from uninext_core.config import tiny
from uninext_core.train.loop import run_training
from uninext_core.train.recipe import recipe_from_dict


def main() -> None:
    torch.set_num_threads(1)
    recipe = recipe_from_dict(json.loads(sys.argv[1]))
    base = tiny(video=False)
    config = base.replace(backbone=replace(base.backbone, norm="frozen_bn"),
                          fusion=replace(base.fusion, attn_dropout=0.0), text=replace(base.text, frozen=True))
    run_training(recipe, max_steps=1, config=config, show_progress=False)


if __name__ == "__main__":
    main()
