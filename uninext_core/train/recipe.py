"""Stage recipes: what one training stage trains on and how (YAML under training/recipes/, reference §1.6, §8).

A recipe holds values only. Datasets are named by reader + path; a dataset's `task` decides its prompt and losses:

| task      | prompt     | losses                              | readers                                         |
|-----------|------------|-------------------------------------|-------------------------------------------------|
| detection | categories | detection + masks / BoxInst         | coco (stills; 2-frame pseudo videos in stage 3) |
| grounding | expression | detection + masks                   | refcoco (stills or pseudo videos)               |
| vis       | categories | detection + masks, re-ID (2 frames) | ytvis, cocovid, coco (pseudo videos)            |
| mot       | categories | detection, re-ID (2 frames)         | motchallenge, cocovid                           |
| rvos      | expression | detection + masks                   | cocovid / ytvis with an R-VOS `expressions` file |
| sot       | template   | detection on the key frame          | lasot, got10k, coco (pseudo videos), cocovid    |
| vos       | template   | detection + masks on the key frame  | davis, youtube_vos                              |

Unknown keys raise ValueError naming the key and the keys expected; missing dataset files raise when the data is
built (`sources.build_sources`), so recipes of the official models can be read and checked without their data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from uninext_core.config import PRESETS, UninextConfig, from_dict, get_preset, with_overrides

Task = Literal["detection", "grounding", "vis", "mot", "rvos", "sot", "vos"]
Reader = Literal["coco", "refcoco", "cocovid", "ytvis", "motchallenge", "lasot", "got10k", "davis", "youtube_vos"]
MaskSupervisionName = Literal["none", "masks", "boxinst"]

TASK_READERS: dict[str, tuple[str, ...]] = {
    "detection": ("coco",),
    "grounding": ("refcoco",),
    "vis": ("ytvis", "cocovid", "coco"),
    "mot": ("motchallenge", "cocovid"),
    "rvos": ("cocovid", "ytvis"),
    "sot": ("lasot", "got10k", "coco", "cocovid", "ytvis"),
    "vos": ("davis", "youtube_vos"),
}
REID_TASKS = ("vis", "mot")


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of a stage.

    Attributes:
        name: label used in logs.
        task: see the module table.
        reader: file format.
        path: annotation file (coco, refcoco instances, cocovid, ytvis) or dataset root (motchallenge: folder of
            sequences; lasot / got10k: split root; davis / youtube_vos: dataset root).
        image_root: folder of the image files (coco, refcoco, cocovid, ytvis).
        refs: refcoco: the refs file.
        expressions: rvos: the Ref-YouTube-VOS `meta_expressions.json`.
        categories: motchallenge: class names, class id k+1 = categories[k].
        ratio: sampling ratio (§8.2).
        batch_size: samples per batch per process (official DATASET_BS).
        mask_supervision: "masks", "boxinst" (box-only data, stage 1) or "none".
        short_sides: multi-scale resize short sides (empty: the recipe's input.short_sides).
        max_size: long-side cap (0: the recipe's input.max_size).
    """

    name: str
    task: Task
    reader: Reader
    path: str
    image_root: str = ""
    refs: str = ""
    expressions: str = ""
    categories: tuple[str, ...] = ()
    ratio: float = 1.0
    batch_size: int = 2
    mask_supervision: MaskSupervisionName = "masks"
    short_sides: tuple[int, ...] = ()
    max_size: int = 0

    def __post_init__(self) -> None:
        if self.reader not in TASK_READERS[self.task]:
            raise ValueError(f"dataset {self.name!r}: task {self.task!r} cannot use reader {self.reader!r}; expected "
                             f"one of {list(TASK_READERS[self.task])}")
        if self.ratio < 0 or self.batch_size < 1:
            raise ValueError(f"dataset {self.name!r}: need ratio >= 0 and batch_size >= 1, got {self.ratio} and "
                             f"{self.batch_size}")
        if self.reader == "refcoco" and not self.refs:
            raise ValueError(f"dataset {self.name!r}: the refcoco reader needs `refs` (the refs file)")
        if self.task == "rvos" and not self.expressions:
            raise ValueError(f"dataset {self.name!r}: task rvos needs `expressions` (meta_expressions.json)")
        if self.reader == "motchallenge" and not self.categories:
            raise ValueError(f"dataset {self.name!r}: the motchallenge reader needs `categories` (class names)")


@dataclass(frozen=True)
class SolverSpec:
    """Optimiser and schedule (§1.6).

    Attributes:
        max_iter: iterations of the stage.
        base_lr, weight_decay, backbone_multiplier, linear_proj_multiplier, text_encoder_lr, fusion_lr,
            colour_skip_multiplier, query_colour_multiplier, query_relation_multiplier, query_resample_multiplier,
            prompt_subject_multiplier: see `optim.OptimizerSettings` (fusion_lr 0 = base_lr).
        lr_steps: iterations where the LR is multiplied by `gamma`.
        warmup_iters, warmup_factor: linear warm-up.
        clip_grad_norm: full-model L2 gradient clip (0.1); 0 disables it.
        amp: mixed precision on GPU (ignored on CPU).
    """

    max_iter: int = 1000
    base_lr: float = 2e-4
    weight_decay: float = 0.05
    backbone_multiplier: float = 0.1
    linear_proj_multiplier: float = 0.1
    text_encoder_lr: float = 1e-5
    fusion_lr: float = 0.0
    colour_skip_multiplier: float = 1.0
    query_colour_multiplier: float = 1.0
    query_relation_multiplier: float = 1.0
    query_resample_multiplier: float = 1.0
    prompt_subject_multiplier: float = 1.0
    lr_steps: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_iters: int = 200
    warmup_factor: float = 1.0
    clip_grad_norm: float = 0.1
    amp: bool = False


@dataclass(frozen=True)
class InputSpec:
    """Augmentation (§8.4) and clip settings; sizes in pixels.

    Attributes:
        short_sides, max_size: final multi-scale resize.
        flip_prob, crop_prob, pre_crop_short_sides, crop_range: see `data.transforms.AugmentationConfig`.
        clip_frames: 1 (image stages) or 2 (stage 3: key frame + reference frame).
    """

    short_sides: tuple[int, ...] = tuple(range(480, 801, 32))
    max_size: int = 1333
    flip_prob: float = 0.5
    crop_prob: float = 0.5
    pre_crop_short_sides: tuple[int, ...] = (400, 500, 600)
    crop_range: tuple[int, int] = (384, 600)
    clip_frames: int = 1


@dataclass(frozen=True)
class Recipe:
    """One training stage.

    Attributes:
        name: recipe name.
        stage: 1, 2 or 3 (informational; the datasets decide the losses).
        preset: model preset (tiny, r50, convnext_l, vit_h).
        video: build the video model (template branch and re-ID head; stage 3).
        model: nested changes to the preset's config (`{"backbone": {"colour_skip": false}}`), so a recipe keeps
            building the model it trained after the preset gains a part (`tiny`'s text adapter, colour skip).
        init_checkpoint: safetensors weights of the previous stage ("" = random init / pretrained parts only).
        template_from_backbone: stage 3: build the template backbone from the image backbone (zero 4th channel).
        freeze_text_encoder: freeze BERT (stage 3); a frozen encoder also runs in eval mode (no dropout).
        denoising: contrastive denoising queries (§4.6).
        seed: random seed.
        output_dir: where checkpoints, metrics.jsonl and loss_curves.png go.
        reference_world_size: processes the official batch sizes assume (informational).
        checkpoint_period: save every this many iterations (0: only time-based and final).
        checkpoint_minutes: also save when this many minutes passed since the last save (0: off).
        log_period: write a metrics line every this many iterations.
        precise_bn_batches: at the end of the stage, recompute BatchNorm statistics over this many training batches
            before writing model_final (`precise_bn`; 0 = off, as for the official frozen-BN / LayerNorm backbones).
        trainable: name prefixes of the only parameters that train (`query_relation.`, `class_embed.`); empty = all
            (every official stage). The rest is frozen and its BatchNorms keep their statistics, so a step runs no
            backward pass through the frozen trunk: on 2 CPU cores that is how heads added to trained weights get
            many more steps in the same time. Not official.
        solver: SolverSpec.
        input: InputSpec.
        datasets: the stage's datasets.
    """

    name: str
    preset: str
    datasets: tuple[DatasetSpec, ...]
    output_dir: str
    stage: int = 1
    video: bool = False
    model: dict[str, Any] = field(default_factory=dict)
    init_checkpoint: str = ""
    template_from_backbone: bool = True
    freeze_text_encoder: bool = False
    denoising: bool = True
    seed: int = 0
    reference_world_size: int = 1
    checkpoint_period: int = 0
    checkpoint_minutes: float = 0.0
    log_period: int = 10
    precise_bn_batches: int = 0
    trainable: tuple[str, ...] = ()
    solver: SolverSpec = field(default_factory=SolverSpec)
    input: InputSpec = field(default_factory=InputSpec)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"recipe {self.name!r}: unknown preset {self.preset!r}; expected one of {sorted(PRESETS)}")
        if not self.datasets:
            raise ValueError(f"recipe {self.name!r}: no datasets; expected at least one")
        self.model_config()  # unknown or mistyped model keys fail here, before any data is read
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ValueError(f"recipe {self.name!r}: dataset names must be unique, got {names}")
        if self.input.clip_frames not in (1, 2):
            raise ValueError(f"recipe {self.name!r}: input.clip_frames must be 1 or 2, got {self.input.clip_frames}")
        needs_video = [d.name for d in self.datasets if d.task in ("sot", "vos") or
                       (d.task in REID_TASKS and self.input.clip_frames == 2)]
        if needs_video and not self.video:
            raise ValueError(f"recipe {self.name!r}: datasets {needs_video} need the video model (template branch or "
                             f"re-ID head); set video: true")
        if any(d.task in ("sot", "vos") for d in self.datasets) and self.input.clip_frames != 2:
            raise ValueError(f"recipe {self.name!r}: SOT / VOS datasets need input.clip_frames: 2")
        if self.trainable and self.precise_bn_batches:
            raise ValueError(f"recipe {self.name!r}: precise_bn_batches must be 0 with `trainable` (the frozen trunk "
                             f"keeps its BatchNorm statistics)")
        if self.solver.max_iter < 1:
            raise ValueError(f"recipe {self.name!r}: solver.max_iter must be >= 1, got {self.solver.max_iter}")


    def model_config(self) -> UninextConfig:
        """The preset (video or image model) with the recipe's `model` changes."""
        cfg = get_preset(self.preset, video=self.video)
        return with_overrides(cfg, self.model, where=f"recipe {self.name!r}: model") if self.model else cfg


def recipe_from_dict(data: dict, *, source: str = "recipe") -> Recipe:
    """A Recipe from a parsed YAML mapping; unknown keys or wrong types raise ValueError naming them."""
    return from_dict(Recipe, data, where=source)


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe YAML file.

    Raises:
        ValueError: a missing file, invalid YAML, unknown keys, wrong types or inconsistent settings.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"recipe file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"recipe {path} is not valid YAML: {error}") from error
    return recipe_from_dict(data or {}, source=str(path))
