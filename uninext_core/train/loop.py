"""The training loop of one stage recipe, in one process or under torchrun (DDP; reference §1.6).

Per iteration: the sampler picks one dataset and the global batch of N·B samples (`MultiDatasetSampler`, one
stream for all processes); process r takes samples r·B .. r·B + B − 1, each drawing its augmentation from
`np.random.default_rng([seed, step, k])` with k its position in the global batch, so the data of a step does not
depend on how many processes share it. `collate` builds the batch, `TrainingStep` encodes the prompt, runs the key
frames (with denoising) and, for re-ID clips, the reference frames, and the criterion returns the weighted total;
then backward, full-model L2 gradient clipping, AdamW and the warm-up multi-step LR schedule. On GPU the forward
runs under autocast (bfloat16 where supported, else float16 with a GradScaler).

Distributed: `torchrun --nproc_per_node N -m training.train ...` sets RANK / WORLD_SIZE / LOCAL_RANK; the process
group uses gloo on CPU and NCCL on GPU (multi-node through torchrun's rendezvous). The model is wrapped in
DistributedDataParallel (unused parameters allowed: a batch uses only its prompt kind's encoder); the criterion's
match counts are summed over processes, so N processes with B samples each compute the update of one process with
the N·B samples (see `criterion`) — for models without batch-statistic layers: BatchNorms in train mode normalise
with each process's own batch (no SyncBatchNorm, which has no CPU implementation). Rank 0 writes metrics.jsonl,
loss_curves.png, the progress bar and the weights.

Checkpoints (`checkpointing`) every `checkpoint_period` iterations and/or `checkpoint_minutes`, at `max_steps` and at
the end, where model_final.safetensors follows (after `precise_bn` when the recipe asks for it); `resume=True`
restores weights, optimizer, schedule, AMP scaler, BoxInst counter, RNG states and the sampler position, so the
resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from uninext_core.config import UninextConfig
from uninext_core.data.prompt_sampling import caption_fits
from uninext_core.data.sampler import MultiDatasetSampler
from uninext_core.model.build import build_model
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.uninext import Uninext
from uninext_core.train import checkpointing as ckpt
from uninext_core.train.batching import PixelNormalisation, PromptBatch, TrainBatch, collate
from uninext_core.train.criterion import CriterionOutput, ReferenceFrame, SetCriterion
from uninext_core.train.curves import append_metrics, plot_loss_curves, read_metrics, truncate_metrics
from uninext_core.train.frame_stores import open_store
from uninext_core.train.optim import OptimizerSettings, build_optimizer, build_scheduler
from uninext_core.train.precise_bn import update_bn_stats
from uninext_core.train.recipe import Recipe
from uninext_core.train.sources import SampleSource

logger = logging.getLogger(__name__)
FALLBACK_UNITS = 16  # neighbouring units tried when a sample cannot be made


class DistContext(NamedTuple):
    """Where this process runs: rank, world size, local rank and device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device


class TrainResult(NamedTuple):
    """End of a `run_training` call: the last completed step and where its files are."""

    step: int
    output_dir: Path
    last_losses: dict[str, float]


def init_distributed() -> DistContext:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, NCCL on GPU); else a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank, world_size, local_rank, device)


def _count_reducer(context: DistContext):
    if context.world_size == 1:
        return None

    def reduce(counts: torch.Tensor) -> torch.Tensor:
        summed = counts.to(context.device)
        dist.all_reduce(summed)
        return summed.cpu() / context.world_size

    return reduce


def encode_prompt(model: Uninext, prompt: PromptBatch) -> PromptFeatures:
    """Prompt features of a collated batch: template crops through the template encoder, token ids through the text
    encoder."""
    if prompt.kind == "template":
        return model.encode_template(prompt.template_crops, prompt.template_padding)
    return model.encode_text(prompt.input_ids, prompt.attention_mask)


class TrainingStep(nn.Module):
    """Prompt encoding, forward of the key (and reference) frames and the criterion: one DDP forward per step.

    Args:
        model: the Uninext network.
        criterion: SetCriterion.
        denoising: add denoising queries to the key frames.
    """

    def __init__(self, *, model: Uninext, criterion: SetCriterion, denoising: bool) -> None:
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.denoising = denoising

    def train(self, mode: bool = True) -> TrainingStep:
        """Train mode, except a frozen text encoder, which stays in eval mode (no dropout), and BatchNorms whose
        parameters do not train (a recipe's `trainable`), which keep their running statistics."""
        super().train(mode)
        if getattr(self.model.text_encoder, "frozen", False):
            self.model.text_encoder.eval()
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None and (
                    not module.weight.requires_grad):
                module.eval()
        return self

    def forward(self, batch: TrainBatch) -> CriterionOutput:
        """Losses of one collated batch (already on the model's device)."""
        prompt = batch.prompt
        features = encode_prompt(self.model, prompt)
        key = batch.frames[0]
        outputs = self.model(key.images, key.pixel_mask, features, targets=[t.boxes_cxcywh for t in key.targets],
                             use_denoising=self.denoising)
        reference = None
        if batch.reid:
            ref = batch.frames[1]
            ref_outputs = self.model(ref.images, ref.pixel_mask, features,
                                     targets=[t.boxes_cxcywh for t in ref.targets], use_denoising=False)
            reference = ReferenceFrame(ref_outputs, ref.targets)
        return self.criterion(outputs, key.targets, prompt_kind=prompt.kind, mask_supervision=batch.mask_supervision,
                              images_rgb=key.images_rgb if batch.mask_supervision == "boxinst" else None,
                              reference=reference)


def batch_to(batch: TrainBatch, device: torch.device) -> TrainBatch:
    """The batch with every tensor moved to `device`."""
    if device.type == "cpu":
        return batch

    def move(value):
        if isinstance(value, torch.Tensor):
            return value.to(device, non_blocking=True)
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return type(value)(*[move(v) for v in value])
        if isinstance(value, list):
            return [move(v) for v in value]
        return value

    return move(batch)


class BatchStream:
    """Batches for one process: sampler position + per-sample RNG make every batch reproducible.

    Args:
        sources: one SampleSource per recipe dataset.
        sampler: MultiDatasetSampler over the sources giving global batches (world_size × per-process sizes).
        tokenizer, pixel, max_tokens, template_size, template_factor: `collate` settings.
        seed: sample RNG seeds are [seed, step, k], k = position in the global batch.
        rank, world_size: this process takes the rank-th of world_size equal slices of each global batch.
    """

    def __init__(self, *, sources: list[SampleSource], sampler: MultiDatasetSampler, tokenizer,
                 pixel: PixelNormalisation, max_tokens: int, template_size: int, template_factor: float,
                 seed: int, rank: int, world_size: int) -> None:
        self.sources = sources
        self.sampler = sampler
        self.iterator = iter(sampler)
        self.position = 0
        self.collate_args = {"tokenizer": tokenizer, "pixel": pixel, "max_tokens": max_tokens,
                             "template_size": template_size, "template_factor": template_factor}
        self.seed, self.rank, self.world_size = seed, rank, world_size

    def skip(self, batches: int) -> None:
        """Advance the sampler by `batches` (resume)."""
        for _ in range(batches):
            next(self.iterator)
            self.position += 1

    def next(self, step: int) -> TrainBatch:
        """The batch of iteration `step`."""
        batch = self.build(step, next(self.iterator))
        self.position += 1
        return batch

    def batches(self, start: int, end: int, *, workers: int = 0) -> Iterator[TrainBatch]:
        """The batches of iterations start .. end - 1, in order; `position` counts the ones handed out.

        With `workers` > 0 the sampler is still drawn here, in step order, and forked worker processes build the
        batches ahead (`torch.utils.data.DataLoader`, order kept): the same batches as without workers, since each
        depends only on its step and indices. Why: on a GPU the tiny model's step is shorter than decoding and
        augmenting its clips in one process.
        """
        if workers <= 0:
            for step in range(start, end):
                yield self.next(step)
            return
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the fast tokenizer's threads do not survive fork
        keys = ((step, next(self.iterator)) for step in range(start, end))
        loader = DataLoader(_StepBatches(self), batch_size=None, sampler=keys, num_workers=workers,
                            prefetch_factor=4, multiprocessing_context="fork",
                            # Its workers' base seed comes from this generator, not the global one the step draws.
                            generator=torch.Generator().manual_seed(self.seed))
        for batch in loader:
            self.position += 1
            yield batch

    def build(self, step: int, indices: list[int]) -> TrainBatch:
        """The batch of iteration `step` from its global sample indices (this rank's slice of them)."""
        dataset = self.sampler.split(indices[0]).dataset
        source = self.sources[dataset]
        per_process = len(indices) // self.world_size
        first = self.rank * per_process
        samples = []
        for k in range(first, first + per_process):
            local = self.sampler.split(indices[k]).index
            rng = np.random.default_rng([self.seed, step, k])
            for j in range(FALLBACK_UNITS):
                sample = source.sample((local + j) % len(source), rng)
                if sample is not None:
                    samples.append(sample)
                    break
            else:
                raise ValueError(f"dataset {source.spec.name!r}: no valid sample among {FALLBACK_UNITS} units "
                                 f"from index {local}")
        return collate(samples, mask_supervision=source.mask_supervision, reid=source.reid,
                       dataset=source.spec.name, **self.collate_args)


class _StepBatches(Dataset):
    """Map-style view of a BatchStream for DataLoader workers: key (step, indices) -> that step's batch."""

    def __init__(self, stream: BatchStream) -> None:
        self.stream = stream

    def __getitem__(self, key: tuple[int, list[int]]) -> TrainBatch:
        return self.stream.build(*key)


def backbones_per_image(model: Uninext, batch: TrainBatch) -> None:
    """Run the batch's frames (and template crops) through the backbones one image at a time, as inference sees them:
    each frame cropped to its own size padded to a multiple of 32 (the BatchNorms sit in the backbones only)."""
    for frame in batch.frames:
        for b, target in enumerate(frame.targets):
            h, w = (-(-side // 32) * 32 for side in target.image_size_hw)
            model.backbone(frame.images[b:b + 1, :, :h, :w])
    if batch.prompt.template_crops is not None and model.template_encoder is not None:
        for crop in batch.prompt.template_crops.split(1):
            model.template_encoder.backbone(crop)


def model_config(recipe: Recipe) -> UninextConfig:
    """The recipe's preset (video or image model, with its `model` changes), text encoder frozen when the recipe
    says so."""
    cfg = recipe.model_config()
    if recipe.freeze_text_encoder and not cfg.text.frozen:
        cfg = cfg.replace(text=replace(cfg.text, frozen=True))
    return cfg


def freeze_all_but(model: nn.Module, prefixes: tuple[str, ...]) -> int:
    """Freeze every parameter whose name starts with none of `prefixes` (nothing when `prefixes` is empty).

    Returns:
        The number of parameters (elements) left to train.

    Raises:
        ValueError: a prefix that names no parameter (a typo would otherwise freeze what it meant to train).
    """
    names = [name for name, _ in model.named_parameters()]
    unknown = [prefix for prefix in prefixes if not any(name.startswith(prefix) for name in names)]
    if unknown:
        raise ValueError(f"trainable prefixes {unknown} match no parameter of the model")
    if prefixes:
        for name, parameter in model.named_parameters():
            if not name.startswith(tuple(prefixes)):
                parameter.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def build_stream(recipe: Recipe, model: Uninext, cfg: UninextConfig, context: DistContext) -> BatchStream:
    """Open the recipe's datasets (ValueError for missing ones) and make this rank's batch stream."""
    tokenizer = model.text_encoder.tokenizer
    fits = caption_fits(tokenizer, max_tokens=cfg.text.max_tokens)
    sources = [SampleSource(spec, open_store(spec), inputs=recipe.input, fits=fits) for spec in recipe.datasets]
    # One stream of global batches shared by all processes (each takes its slice in `BatchStream.next`).
    sampler = MultiDatasetSampler(sizes=[len(s) for s in sources], ratios=[s.spec.ratio for s in sources],
                                  batch_sizes=[s.spec.batch_size * context.world_size for s in sources],
                                  seed=recipe.seed, landscape=[s.landscape() for s in sources])
    return BatchStream(sources=sources, sampler=sampler, tokenizer=tokenizer,
                       pixel=PixelNormalisation(cfg.input.pixel_mean, cfg.input.pixel_std),
                       max_tokens=cfg.text.max_tokens, template_size=cfg.template.size,
                       template_factor=cfg.template.search_area_factor, seed=recipe.seed, rank=context.rank,
                       world_size=context.world_size)


def optimizer_settings(recipe: Recipe) -> OptimizerSettings:
    """AdamW settings of the recipe's solver (base LR and its per-part multipliers)."""
    s = recipe.solver
    return OptimizerSettings(base_lr=s.base_lr, weight_decay=s.weight_decay, backbone_multiplier=s.backbone_multiplier,
                             linear_proj_multiplier=s.linear_proj_multiplier, text_encoder_lr=s.text_encoder_lr,
                             fusion_lr=s.fusion_lr or None, colour_skip_multiplier=s.colour_skip_multiplier,
                             query_colour_multiplier=s.query_colour_multiplier,
                             query_relation_multiplier=s.query_relation_multiplier,
                             query_resample_multiplier=s.query_resample_multiplier,
                             prompt_subject_multiplier=s.prompt_subject_multiplier)


def _logged_seconds(metrics: Path, up_to: int, log_period: int) -> float:
    """Wall time estimated from the log (sampled step times × log period), for checkpoints that did not keep it."""
    return sum(float(r["step_time_s"]) * log_period for r in read_metrics(metrics) if int(r["step"]) <= up_to)


def run_training(recipe: Recipe, *, resume: bool = False, max_steps: int | None = None,
                 max_minutes: float | None = None, data_workers: int = 0, config: UninextConfig | None = None,
                 show_progress: bool = True) -> TrainResult:
    """Train one stage.

    Args:
        recipe: the stage recipe.
        resume: continue from the newest complete checkpoint in the recipe's output folder (fresh start if none).
        max_steps: stop once this iteration count is reached (a checkpoint is written); the schedule still follows
            `recipe.solver.max_iter`. None = run to max_iter.
        max_minutes: also stop, with a checkpoint, at the first step that ends this many minutes after the loop
            started (a lease on a lent machine ends at a fixed time; `--resume` goes on from there). None = no limit.
        data_workers: processes that build batches ahead of the step (`BatchStream.batches`); 0 = in this process.
        config: model config to use instead of the recipe's preset (tests); its name must still be the preset.
        show_progress: tqdm progress bar on rank 0.

    Returns:
        TrainResult.

    Raises:
        ValueError: missing datasets, a checkpoint of another preset, or a world-size change on resume.
    """
    context = init_distributed()
    cfg = config or model_config(recipe)
    out = Path(recipe.output_dir)
    end = recipe.solver.max_iter if max_steps is None else min(max_steps, recipe.solver.max_iter)
    torch.manual_seed(recipe.seed)
    model = build_model(cfg).to(context.device)
    start = ckpt.last_complete_step(out) if resume else None
    if start is None and recipe.init_checkpoint:
        ckpt.init_from_checkpoint(model, recipe.init_checkpoint, config=cfg,
                                  template_from_backbone=recipe.template_from_backbone)
    if recipe.trainable:
        logger.info("training only %s: %d parameters", ", ".join(recipe.trainable),
                    freeze_all_but(model, recipe.trainable))
    criterion = SetCriterion(num_decoder_layers=cfg.transformer.num_decoder_layers,
                             mask_dynamic_channels=cfg.heads.mask_dynamic_channels,
                             mask_dynamic_layers=cfg.heads.mask_dynamic_layers,
                             mask_out_stride=cfg.heads.mask_out_stride, reduce_counts=_count_reducer(context))
    step_module = TrainingStep(model=model, criterion=criterion, denoising=recipe.denoising).to(context.device)
    optimizer = build_optimizer(model, optimizer_settings(recipe))
    scheduler = build_scheduler(optimizer, steps=recipe.solver.lr_steps, gamma=recipe.solver.gamma,
                                warmup_iters=recipe.solver.warmup_iters, warmup_factor=recipe.solver.warmup_factor)
    use_amp = recipe.solver.amp and context.device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    stream = build_stream(recipe, model, cfg, context)

    step = 0
    elapsed = 0.0  # training wall seconds over all runs of this stage (checkpoints before it was kept: from resume)
    if start is not None:
        ckpt.load_model(model, ckpt.model_path(out, start), config=cfg)
        state = ckpt.load_trainer_state(ckpt.trainer_path(out, start, context.rank))
        if state["world_size"] != context.world_size:
            raise ValueError(f"checkpoint {start} of {out} was written by {state['world_size']} processes; resuming "
                             f"with {context.world_size} is not supported (expected the same world size)")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        criterion.load_state_dict(state["criterion"])
        stream.skip(state["sampler_position"])
        ckpt.restore_rng_state(state["rng"])
        step = start
        elapsed = float(state["elapsed_s"]) if "elapsed_s" in state else _logged_seconds(out / "metrics.jsonl", start,
                                                                                        recipe.log_period)
        if context.rank == 0:
            truncate_metrics(out / "metrics.jsonl", after_step=start)
        logger.info("resumed %s at step %d", recipe.name, start)

    module: nn.Module = step_module
    if context.world_size > 1:
        module = DistributedDataParallel(step_module, device_ids=[context.local_rank] if context.device.type == "cuda"
                                         else None, find_unused_parameters=True)
    module.train()

    def save(at: int) -> None:
        if context.rank == 0:
            ckpt.save_model(model, ckpt.model_path(out, at), config=cfg, step=at)
        ckpt.save_trainer_state(ckpt.trainer_path(out, at, context.rank), {
            "step": at, "world_size": context.world_size, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "criterion": criterion.state_dict(),
            "sampler_position": stream.position, "rng": ckpt.capture_rng_state(), "recipe": recipe.name,
            "elapsed_s": elapsed})
        if context.world_size > 1:
            dist.barrier()
        if context.rank == 0:
            ckpt.mark_complete(out, at)
            plot_loss_curves(out / "metrics.jsonl", out / "loss_curves.png", title=recipe.name)

    bar = tqdm(total=end, initial=step, desc=recipe.name, disable=not show_progress or context.rank != 0,
               mininterval=1.0 if sys.stderr.isatty() else 60.0, dynamic_ncols=True)
    last_save = started = time.monotonic()
    last: dict[str, float] = {}
    batches = stream.batches(step, end, workers=data_workers)
    while step < end:
        tick = time.perf_counter()
        batch = batch_to(next(batches), context.device)
        data_time = time.perf_counter() - tick
        with torch.autocast(device_type=context.device.type, dtype=amp_dtype, enabled=use_amp):
            result = module(batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(result.total).backward()
        scaler.unscale_(optimizer)
        grad_norm = 0.0
        if recipe.solver.clip_grad_norm > 0:
            grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), recipe.solver.clip_grad_norm))
        scaler.step(optimizer)
        scaler.update()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        step += 1
        seconds = time.perf_counter() - tick
        elapsed += seconds
        last = {"loss": float(result.total.detach()), **{k: float(v.detach()) for k, v in result.losses.items()}}
        bar.update(1)
        bar.set_postfix(loss=f"{last['loss']:.3f}", data=batch.dataset, refresh=False)
        due = (recipe.checkpoint_period > 0 and step % recipe.checkpoint_period == 0) or step == end
        out_of_time = False
        if recipe.checkpoint_minutes > 0 or max_minutes is not None:
            # Every process takes the same decision (rank 0's clock may run ahead).
            now = time.monotonic()
            save_due = recipe.checkpoint_minutes > 0 and now - last_save > 60 * recipe.checkpoint_minutes
            time_up = max_minutes is not None and now - started > 60 * max_minutes
            flags = torch.tensor([float(save_due), float(time_up)], device=context.device)
            if context.world_size > 1:
                dist.all_reduce(flags, op=dist.ReduceOp.MAX)
            out_of_time = bool(flags[1].item())
            due = due or out_of_time or bool(flags[0].item())
        if context.rank == 0 and (step % recipe.log_period == 0 or step == end or out_of_time):
            append_metrics(out / "metrics.jsonl", {
                "step": step, "dataset": batch.dataset, "lr": lr, "grad_norm": grad_norm, **last,
                "batch_size": batch.batch_size, "step_time_s": round(seconds, 4), "data_time_s": round(data_time, 4),
                "images_per_s": round(batch.batch_size * context.world_size / seconds, 3),
                "elapsed_s": round(elapsed, 1)})
        if due:
            save(step)
            last_save = time.monotonic()
        if out_of_time:
            logger.info("stopped %s at step %d: %.1f minutes passed (max_minutes)", recipe.name, step, max_minutes)
            break
    batches.close()
    bar.close()
    if step == recipe.solver.max_iter:
        # Batches after the schedule's last one; the same ones again if this is redone after a resume.
        updated = update_bn_stats(step_module, lambda k: backbones_per_image(model, batch_to(
            stream.next(step + k), context.device)), recipe.precise_bn_batches)
        if updated:
            logger.info("recomputed the statistics of %d BatchNorm layers over %d batches", updated,
                        recipe.precise_bn_batches)
        if context.rank == 0:
            ckpt.save_model(model, out / "model_final.safetensors", config=cfg, step=step)
    if context.world_size > 1:
        dist.barrier()
    return TrainResult(step=step, output_dir=out, last_losses=last)
