"""Fitting the retrieval side of a frozen network on cached inputs: one forward per sample, then many cheap epochs.

No official counterpart (the official recipe trains every part jointly, reference §8). Why the `tiny` model uses it:
a recipe whose `trainable` names only the retrieval side (`tiny_stage3_relation_heads`) still runs the backbone,
encoder and decoder forward on every batch, 1.2 s of a 2-core step, so its 2,000 steps showed the query relation
each referring image less than once. What the last decoder layer's retrieval head reads (`Uninext.retrieval_inputs`:
query features, boxes, query-colour samples, fused prompt, and the encoder memory when the model has a query
resample) does not depend on that head, the query colour, the query relation or the query resample, so it is
computed once per augmented sample (`frames_of_batch`, from the recipe's own batch stream) and those parts are
trained on it for many epochs (`fit_retrieval`) at milliseconds per batch (under a second per batch of 32 with the
resample, which runs frame by frame).

The loss is the final decoder layer's `loss_ce` of `SetCriterion`: the same dynamic-k matcher on the same logits and
(fixed) boxes, the same token focal loss, normalised by the matched pairs of the batch. The earlier layer's head
(`class_embed.0`) reaches no output at inference and is not fitted; the boxes, masks, IoU scores and re-ID
embeddings of every task are untouched because nothing before the retrieval head changes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.model.query_resample import MemoryView
from uninext_core.model.uninext import Uninext
from uninext_core.ops.boxes import box_cxcywh_to_xyxy, box_iou
from uninext_core.tasks.scoring import pooled_scores
from uninext_core.train.batching import PROMPT_KINDS, TrainBatch
from uninext_core.train.losses import classification_loss, gather_matches
from uninext_core.train.matcher import DynamicKMatcher
from uninext_core.train.optim import OptimizerSettings, build_optimizer, build_scheduler

logger = logging.getLogger(__name__)

CACHE_FORMAT = "uninext-retrieval-cache-1"


class CachedFrame(NamedTuple):
    """The retrieval inputs of one key frame with its prompt and ground truth (batch dimension removed).

    Attributes:
        kind: prompt kind ("category", "expression" or "template").
        dataset: recipe dataset name it came from.
        hidden: (Q, C) float16 last-layer query features.
        boxes_cxcywh: (Q, 4) float32 boxes.
        colour_samples: (Q, S) float16 query-colour samples (S = 0 without a query colour).
        prompt: (T, C_l) float16 fused prompt tokens, trailing padding cut.
        prompt_mask: (T,) bool.
        pooled_prompt: (C_l,) float32.
        iou_logits: (Q,) float32.
        target_boxes_cxcywh: (N, 4) float32 ground truth.
        positive_map: (N, T) bool for category prompts, (N, 1) otherwise.
        memory: (S, C) float16 encoder output, when the model has a query resample (else None); S counts the cells
            of the padded batch the frame was collated in.
        spatial_shapes: (L, 2) int64 (H_l, W_l) of that memory.
        valid_ratios: (L, 2) float32.
        padding_mask: (S,) bool, True on padding.
    """

    kind: str
    dataset: str
    hidden: torch.Tensor
    boxes_cxcywh: torch.Tensor
    colour_samples: torch.Tensor
    prompt: torch.Tensor
    prompt_mask: torch.Tensor
    pooled_prompt: torch.Tensor
    iou_logits: torch.Tensor
    target_boxes_cxcywh: torch.Tensor
    positive_map: torch.Tensor
    memory: torch.Tensor | None = None
    spatial_shapes: torch.Tensor | None = None
    valid_ratios: torch.Tensor | None = None
    padding_mask: torch.Tensor | None = None

    def memory_view(self) -> MemoryView:
        """The frame's memory as `Uninext.resample_term` reads it (batch of one); ValueError when not cached."""
        if self.memory is None:
            raise ValueError("this cached frame has no encoder memory; re-run `python -m training.fit_retrieval "
                             "cache` with a model that has a query resample (heads.query_resample_layers)")
        shapes = [(int(h), int(w)) for h, w in self.spatial_shapes.tolist()]
        return MemoryView(self.memory[None].float(), shapes, self.valid_ratios[None], self.padding_mask[None])


class FitBatch(NamedTuple):
    """Cached frames of one prompt kind, padded to a common prompt length (fields as `CachedFrame`, batched)."""

    kind: str
    hidden: torch.Tensor
    boxes_cxcywh: torch.Tensor
    colour_samples: torch.Tensor
    prompt: torch.Tensor
    prompt_mask: torch.Tensor
    pooled_prompt: torch.Tensor
    iou_logits: torch.Tensor
    target_boxes_cxcywh: list[torch.Tensor]
    positive_maps: list[torch.Tensor]
    memory: list[MemoryView] | None = None


class EpochReport(NamedTuple):
    """One epoch of `fit_retrieval`: mean training loss, top-1 accuracy of expression frames on the validation
    frames (None without any), wall seconds."""

    epoch: int
    loss: float
    val_top1: float | None
    seconds: float


# ----------------------------------------------------------------------------------------------------------------------
# Collecting
# ----------------------------------------------------------------------------------------------------------------------


def frames_of_batch(model: Uninext, batch: TrainBatch, features: PromptFeatures) -> list[CachedFrame]:
    """The key frame of every clip of a collated batch through the frozen network, split into CachedFrames.

    Args:
        model: the network (its trunk is read, nothing is trained).
        batch: a collated batch (`BatchStream.next`).
        features: its PromptFeatures (`loop.encode_prompt`).
    """
    key = batch.frames[0]
    inputs = model.retrieval_inputs(key.images, key.pixel_mask, features)
    frames = []
    view = inputs.memory
    for b, target in enumerate(key.targets):
        memory = {} if view is None else dict(
            memory=view.memory[b].to(torch.float16).cpu(),
            spatial_shapes=torch.tensor(view.spatial_shapes, dtype=torch.int64),
            valid_ratios=view.valid_ratios[b].float().cpu(), padding_mask=view.padding_mask[b].cpu())
        valid = inputs.prompt_mask[b]
        length = int(valid.nonzero().max()) + 1 if bool(valid.any()) else 1
        positive = target.positive_map[:, :length] if batch.prompt.kind == "category" else target.positive_map
        frames.append(CachedFrame(
            kind=batch.prompt.kind, dataset=batch.dataset,
            hidden=inputs.hidden[b].to(torch.float16).cpu(),
            boxes_cxcywh=inputs.boxes_cxcywh[b].float().cpu(),
            colour_samples=inputs.colour_samples[b].to(torch.float16).cpu(),
            prompt=inputs.prompt[b, :length].to(torch.float16).cpu(),
            prompt_mask=valid[:length].cpu(),
            pooled_prompt=inputs.pooled_prompt[b].float().cpu(),
            iou_logits=inputs.iou_logits[b, :, 0].float().cpu(),
            target_boxes_cxcywh=target.boxes_cxcywh.float().cpu(),
            positive_map=positive.bool().cpu(), **memory))
    return frames


def save_frames(frames: Sequence[CachedFrame], path: str | Path) -> Path:
    """Write cached frames with `torch.save` (tensors, strings and lists only, so `load_frames` reads them with
    `weights_only=True`), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format": CACHE_FORMAT, "frames": [frame._asdict() for frame in frames]}, tmp)
    tmp.replace(path)
    return path


def load_frames(path: str | Path) -> list[CachedFrame]:
    """Read a file of `save_frames` (ValueError for anything else)."""
    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path} is not a retrieval cache ({CACHE_FORMAT}); expected a file written by "
                         "`python -m training.fit_retrieval cache`")
    return [CachedFrame(**frame) for frame in data["frames"]]


# ----------------------------------------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------------------------------------


def retrieval_prefixes(model: Uninext) -> tuple[str, ...]:
    """Parameter-name prefixes of what `Uninext.retrieval_logits` of the last decoder layer computes with."""
    prefixes = [f"class_embed.{model.num_decoder_layers - 1}."]
    if model.query_colour is not None:
        prefixes.append("query_colour.")
    if model.query_resample is not None:
        prefixes.append("query_resample.")
    if model.query_relation is not None:
        prefixes.append("query_relation.")
    if model.prompt_subject is not None:
        prefixes.append("prompt_subject.")
    return tuple(prefixes)


def check_fittable(model: Uninext) -> None:
    """ValueError unless every trainable parameter belongs to the last layer's retrieval side (anything else would
    get no gradient from cached inputs), and at least one does."""
    prefixes = retrieval_prefixes(model)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    outside = [name for name in trainable if not name.startswith(prefixes)]
    if outside:
        raise ValueError(f"a retrieval fit trains only parameters under {list(prefixes)}; the recipe's trainable "
                         f"also names {outside[:4]}{' ...' if len(outside) > 4 else ''}")
    if not trainable:
        raise ValueError(f"nothing to fit: set the recipe's trainable to some of {list(prefixes)}")


def collate_frames(frames: Sequence[CachedFrame]) -> FitBatch:
    """Stack cached frames of one prompt kind, padding the prompt (and category positive maps) to the longest."""
    kinds = {frame.kind for frame in frames}
    if len(kinds) != 1:
        raise ValueError(f"a fit batch holds one prompt kind, got {sorted(kinds)}")
    kind = kinds.pop()
    length = max(frame.prompt.shape[0] for frame in frames)

    def pad_rows(x: torch.Tensor, value=0) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, 0, 0, length - x.shape[0]), value=value)

    prompt = torch.stack([pad_rows(frame.prompt.float()) for frame in frames])
    mask = torch.stack([torch.nn.functional.pad(frame.prompt_mask, (0, length - frame.prompt_mask.shape[0]),
                                                value=False) for frame in frames])
    positive = [torch.nn.functional.pad(frame.positive_map, (0, length - frame.positive_map.shape[1]), value=False)
                if kind == "category" else frame.positive_map for frame in frames]
    return FitBatch(kind=kind, hidden=torch.stack([f.hidden.float() for f in frames]),
                    boxes_cxcywh=torch.stack([f.boxes_cxcywh for f in frames]),
                    colour_samples=torch.stack([f.colour_samples.float() for f in frames]),
                    prompt=prompt, prompt_mask=mask, pooled_prompt=torch.stack([f.pooled_prompt for f in frames]),
                    iou_logits=torch.stack([f.iou_logits for f in frames]),
                    target_boxes_cxcywh=[f.target_boxes_cxcywh for f in frames], positive_maps=positive,
                    memory=[f.memory_view() for f in frames] if frames[0].memory is not None else None)


def batch_logits(model: Uninext, batch: FitBatch) -> torch.Tensor:
    """Token logits (B, Q, T) for category prompts, pooled logits (B, Q, 1) otherwise, as the forward computes
    them. The query resample runs frame by frame: each frame's memory keeps the shapes of the batch it was cached
    in."""
    resampled = None
    if model.query_resample is not None:
        if batch.memory is None:
            raise ValueError("the model has a query resample but the cache holds no encoder memory; re-run "
                             "`python -m training.fit_retrieval cache` with this model")
        resampled = torch.cat([model.resample_term(batch.hidden[b:b + 1], batch.boxes_cxcywh[b:b + 1], view)
                               for b, view in enumerate(batch.memory)])
    token, pooled = model.retrieval_logits(model.num_decoder_layers - 1, batch.hidden, batch.boxes_cxcywh,
                                           batch.colour_samples, batch.prompt, batch.pooled_prompt, batch.prompt_mask,
                                           resampled=resampled)
    return token if batch.kind == "category" else pooled


def fit_loss(model: Uninext, batch: FitBatch, matcher: DynamicKMatcher) -> torch.Tensor:
    """The final decoder layer's `loss_ce` of `SetCriterion` on a cached batch."""
    logits = batch_logits(model, batch)
    matches = matcher(logits, batch.boxes_cxcywh, batch.target_boxes_cxcywh, batch.positive_maps)
    index = gather_matches(matches, [len(t) for t in batch.target_boxes_cxcywh])
    token_mask = batch.prompt_mask if batch.kind == "category" else None
    return classification_loss(logits, index, batch.positive_maps, token_mask,
                                num_matches=max(float(index.num_matches), 1.0))


def kind_batches(frames: Sequence[CachedFrame], batch_size: int, generator: torch.Generator
                 ) -> Iterator[list[CachedFrame]]:
    """One shuffled epoch in batches of one prompt kind each (the last, shorter batch of a kind included)."""
    buckets: dict[str, list[CachedFrame]] = {kind: [] for kind in PROMPT_KINDS}
    for i in torch.randperm(len(frames), generator=generator).tolist():
        bucket = buckets[frames[i].kind]
        bucket.append(frames[i])
        if len(bucket) == batch_size:
            yield list(bucket)
            bucket.clear()
    for bucket in buckets.values():
        if bucket:
            yield bucket


@torch.no_grad()
def expression_top1(model: Uninext, frames: Sequence[CachedFrame], *, batch_size: int = 64,
                    iou_threshold: float = 0.5) -> float | None:
    """Fraction of single-referent expression frames whose best-scored query (the inference score, IoU branch
    included) overlaps the referent at IoU ≥ `iou_threshold` (REC's rule); None when there is none."""
    chosen = [f for f in frames if f.kind == "expression" and f.target_boxes_cxcywh.shape[0] == 1]
    if not chosen:
        return None
    hits = 0
    for start in range(0, len(chosen), batch_size):
        batch = collate_frames(chosen[start:start + batch_size])
        logits = batch_logits(model, batch)
        for b in range(logits.shape[0]):
            raw = _ScoreView(logits[b:b + 1], batch.iou_logits[b:b + 1, :, None])
            best = int(pooled_scores(raw).argmax())
            box = box_cxcywh_to_xyxy(batch.boxes_cxcywh[b, best:best + 1])
            target = box_cxcywh_to_xyxy(batch.target_boxes_cxcywh[b])
            hits += int(float(box_iou(box, target)[0, 0]) >= iou_threshold)
    return hits / len(chosen)


class _ScoreView(NamedTuple):
    """The two fields of RawOutputs that `pooled_scores` reads."""

    pooled_logits: torch.Tensor
    iou_logits: torch.Tensor


def fit_retrieval(model: Uninext, frames: Sequence[CachedFrame], *, settings: OptimizerSettings, epochs: int,
                  batch_size: int, lr_drop_epochs: Sequence[int] = (), gamma: float = 0.1, clip_grad_norm: float = 0.1,
                  seed: int = 0, val_frames: Sequence[CachedFrame] = (),
                  on_epoch: Callable[[EpochReport], None] | None = None) -> list[EpochReport]:
    """Train the model's trainable parameters (the last layer's retrieval side, `check_fittable`) on cached frames.

    Args:
        model: the network, trunk frozen (`loop.freeze_all_but`); trained in place.
        frames: training frames.
        settings: AdamW settings (its LR multipliers apply as in `training.train`).
        epochs: passes over `frames`.
        batch_size: frames per step (one prompt kind per step).
        lr_drop_epochs: epochs (0-based) from which the LR is multiplied by `gamma` once more.
        gamma: LR drop factor.
        clip_grad_norm: gradient-norm clip (0 = none), as the recipes.
        seed: shuffling seed.
        val_frames: frames scored after each epoch (`expression_top1`).
        on_epoch: called with each epoch's report (logging, checkpoints).

    Returns:
        One EpochReport per epoch.
    """
    if epochs <= 0 or batch_size <= 0:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if not frames:
        raise ValueError("no cached frames to fit on")
    check_fittable(model)
    steps_per_epoch = sum(math.ceil(sum(f.kind == kind for f in frames) / batch_size) for kind in PROMPT_KINDS)
    optimizer = build_optimizer(model, settings)
    scheduler = build_scheduler(optimizer, steps=[e * steps_per_epoch for e in lr_drop_epochs], gamma=gamma)
    matcher = DynamicKMatcher()
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    reports = []
    model.eval()  # no dropout in the relation's attention, as at inference; nothing here has BatchNorm
    for epoch in range(epochs):
        tick = time.perf_counter()
        total, count = 0.0, 0
        for chunk in kind_batches(frames, batch_size, generator):
            loss = fit_loss(model, collate_frames(chunk), matcher)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad_norm > 0:
                nn.utils.clip_grad_norm_(params, clip_grad_norm)
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(chunk)
            count += len(chunk)
        report = EpochReport(epoch=epoch, loss=total / count, val_top1=expression_top1(model, val_frames),
                             seconds=time.perf_counter() - tick)
        reports.append(report)
        logger.info("epoch %d: loss %.4f, validation expression top-1 %s, %.1f s", epoch, report.loss,
                    "-" if report.val_top1 is None else f"{report.val_top1:.3f}", report.seconds)
        if on_epoch is not None:
            on_epoch(report)
    return reports
