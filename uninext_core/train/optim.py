"""AdamW with the official learning-rate multipliers and the warm-up multi-step schedule (reference §1.6).

Per parameter (official `build_optimizer` in `projects/UNINEXT/train_net.py`, rules applied in this order):
    lr = BASE_LR; "backbone" in the name (main and template backbones) -> lr × BACKBONE_MULTIPLIER (0.1);
    "text_encoder" -> LANG_LR (1e-5); the Bi-XAtt fusion block (official `vl_layers`, here `transformer.fusion`)
    -> VL_LR; "sampling_offsets" or "reference_points" -> lr × LINEAR_PROJ_MULTIPLIER (0.1); the `tiny`-only colour
    skip, query colour, query relation, query resample and prompt subject (no official counterpart) -> lr ×
    colour_skip_multiplier / query_colour_multiplier / query_relation_multiplier / query_resample_multiplier /
    prompt_subject_multiplier (1.0 unless a recipe asks).
Weight decay 0.05 on every parameter; frozen parameters (requires_grad False) are left out. Schedule: detectron2's
`WarmupMultiStepLR` — a linear warm-up from `warmup_factor` to 1 over `warmup_iters`, then × gamma at each step
in `steps` (official: factor 1.0, i.e. no real warm-up).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

FUSION_PREFIX = "transformer.fusion."
COLOUR_SKIP_PREFIX = "colour_skip."
QUERY_COLOUR_PREFIX = "query_colour."
QUERY_RELATION_PREFIX = "query_relation."
QUERY_RESAMPLE_PREFIX = "query_resample."
PROMPT_SUBJECT_PREFIX = "prompt_subject."


@dataclass(frozen=True)
class OptimizerSettings:
    """Learning rates and decay of one training stage.

    Attributes:
        base_lr: BASE_LR (2e-4 stages 1–2, 1e-4 stage 3).
        weight_decay: on every parameter (0.05).
        backbone_multiplier: BACKBONE_MULTIPLIER (0.1; 1.0 makes sense for a backbone trained from scratch).
        linear_proj_multiplier: sampling offsets / reference points multiplier (0.1).
        text_encoder_lr: LANG_LR (1e-5).
        fusion_lr: VL_LR (= base_lr officially); None means base_lr.
        colour_skip_multiplier: LR multiplier of the colour skip (`tiny` only): it starts at zero and, at the base
            LR, Adam moves its weights by about 1e-4 a step, too little to matter after hundreds of steps when it
            is added to trained weights (measured: |w| <= 0.007 after 400 steps of `tiny_stage3_colourskip`).
        query_colour_multiplier: LR multiplier of the query colour MLP (`tiny` only; zero-initialised output, the
            same reason).
        query_relation_multiplier: LR multiplier of the query relation (`tiny` only; zero-initialised output).
        query_resample_multiplier: LR multiplier of the query resample (zero-initialised output).
        prompt_subject_multiplier: LR multiplier of the prompt subject (zero-initialised token-score output).
        betas: AdamW betas.
    """

    base_lr: float = 2e-4
    weight_decay: float = 0.05
    backbone_multiplier: float = 0.1
    linear_proj_multiplier: float = 0.1
    text_encoder_lr: float = 1e-5
    fusion_lr: float | None = None
    colour_skip_multiplier: float = 1.0
    query_colour_multiplier: float = 1.0
    query_relation_multiplier: float = 1.0
    query_resample_multiplier: float = 1.0
    prompt_subject_multiplier: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        for name in ("base_lr", "backbone_multiplier", "linear_proj_multiplier", "text_encoder_lr",
                     "colour_skip_multiplier", "query_colour_multiplier", "query_relation_multiplier",
                     "query_resample_multiplier", "prompt_subject_multiplier"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


def parameter_lr(name: str, settings: OptimizerSettings) -> float:
    """Learning rate of the parameter called `name` (a `named_parameters` key of the Uninext model)."""
    lr = settings.base_lr
    if "backbone" in name:
        lr *= settings.backbone_multiplier
    if name.startswith("text_encoder."):
        lr = settings.text_encoder_lr
    if name.startswith(FUSION_PREFIX):
        lr = settings.base_lr if settings.fusion_lr is None else settings.fusion_lr
    if "sampling_offsets" in name or "reference_points" in name:
        lr *= settings.linear_proj_multiplier
    if name.startswith(COLOUR_SKIP_PREFIX):
        lr *= settings.colour_skip_multiplier
    if name.startswith(QUERY_COLOUR_PREFIX):
        lr *= settings.query_colour_multiplier
    if name.startswith(QUERY_RELATION_PREFIX):
        lr *= settings.query_relation_multiplier
    if name.startswith(QUERY_RESAMPLE_PREFIX):
        lr *= settings.query_resample_multiplier
    if name.startswith(PROMPT_SUBJECT_PREFIX):
        lr *= settings.prompt_subject_multiplier
    return lr


def parameter_groups(model: nn.Module, settings: OptimizerSettings) -> list[dict]:
    """One AdamW group per distinct learning rate, in first-appearance order.

    Returns:
        [{"params": [...], "lr": float, "weight_decay": float, "name": str}], name = the first parameter of the group.
    """
    groups: dict[float, dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        lr = parameter_lr(name, settings)
        if lr not in groups:
            groups[lr] = {"params": [], "lr": lr, "weight_decay": settings.weight_decay, "name": name}
        groups[lr]["params"].append(parameter)
    if not groups:
        raise ValueError("the model has no trainable parameter")
    return list(groups.values())


def build_optimizer(model: nn.Module, settings: OptimizerSettings) -> torch.optim.AdamW:
    """AdamW over `parameter_groups` (each group's `initial_lr` is what the schedule multiplies)."""
    return torch.optim.AdamW(parameter_groups(model, settings), lr=settings.base_lr, betas=settings.betas,
                             weight_decay=settings.weight_decay)


def warmup_multistep_factor(step: int, *, steps: Sequence[int], gamma: float = 0.1, warmup_iters: int = 0,
                            warmup_factor: float = 1.0) -> float:
    """LR multiplier at iteration `step` (0-based), detectron2 `WarmupMultiStepLR` with linear warm-up.

    factor = warmup(step) · gamma^(number of milestones ≤ step), warmup(step) = warmup_factor · (1 − α) + α with
    α = step / warmup_iters while step < warmup_iters, else 1.
    """
    if list(steps) != sorted(steps):
        raise ValueError(f"LR steps must be increasing, got {list(steps)}")
    warmup = 1.0
    if step < warmup_iters:
        alpha = step / warmup_iters
        warmup = warmup_factor * (1.0 - alpha) + alpha
    return warmup * gamma ** bisect.bisect_right(list(steps), step)


class WarmupMultiStep:
    """Picklable LR lambda for `torch.optim.lr_scheduler.LambdaLR` (its state is plain numbers).

    Args:
        steps: iterations where the LR is multiplied by gamma.
        gamma: step factor (0.1).
        warmup_iters: warm-up length.
        warmup_factor: start factor of the linear warm-up (1.0 = none).
    """

    def __init__(self, *, steps: Sequence[int], gamma: float = 0.1, warmup_iters: int = 0,
                 warmup_factor: float = 1.0) -> None:
        self.steps = [int(s) for s in steps]
        self.gamma = float(gamma)
        self.warmup_iters = int(warmup_iters)
        self.warmup_factor = float(warmup_factor)
        warmup_multistep_factor(0, steps=self.steps)  # validates the milestones

    def __call__(self, step: int) -> float:
        return warmup_multistep_factor(step, steps=self.steps, gamma=self.gamma, warmup_iters=self.warmup_iters,
                                       warmup_factor=self.warmup_factor)


def build_scheduler(optimizer: torch.optim.Optimizer, *, steps: Sequence[int], gamma: float = 0.1,
                    warmup_iters: int = 0, warmup_factor: float = 1.0) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR applying `warmup_multistep_factor` to every group's initial LR; call `.step()` once per iteration."""
    schedule = WarmupMultiStep(steps=steps, gamma=gamma, warmup_iters=warmup_iters, warmup_factor=warmup_factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=schedule)
