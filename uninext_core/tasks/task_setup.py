"""From a prompt to a ready task runner: validation, task choice, tokenisation, template crops, encoding.

`build_runner` checks everything a prompt needs before anything changes in the session (prompt content, task/kind
compatibility, text limits, template frame availability, boxes inside the image) and encodes the prompt through the
cache. Any problem raises `PromptRejected` with the reason; the caller keeps its previous prompt and state.

Default task per prompt kind: categories -> instance_segmentation (detection when masks are off); expression -> res;
template -> vos when every target has a mask, else sot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from uninext_core.deploy.backend import Backend
from uninext_core.instances import TASKS
from uninext_core.model.text_encoder import TokenizedText
from uninext_core.prompts import CategoryPrompt, ExpressionPrompt, TemplatePrompt, build_category_caption
from uninext_core.tasks.detection import DetectionRunner
from uninext_core.tasks.grounding import GroundingRunner
from uninext_core.tasks.multi_object import MultiObjectRunner
from uninext_core.tasks.preprocess import PreparedFrame
from uninext_core.tasks.prompt_cache import PromptCache
from uninext_core.tasks.scoring import TaskResult
from uninext_core.tasks.session_config import SessionConfig
from uninext_core.tasks.sot import SotRunner, encode_template_targets
from uninext_core.tasks.timing import FrameCost
from uninext_core.tasks.vos import VosRunner

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Prompt = CategoryPrompt | ExpressionPrompt | TemplatePrompt

KIND_TASKS: dict[type, tuple[str, ...]] = {
    CategoryPrompt: ("detection", "instance_segmentation", "mot", "mots", "vis"),
    ExpressionPrompt: ("rec", "res", "rvos"),
    TemplatePrompt: ("sot", "vos"),
}
_KIND_NAMES = {CategoryPrompt: "category", ExpressionPrompt: "expression", TemplatePrompt: "template"}


class PromptRejected(ValueError):  # noqa: N818 - the public name the node and the evaluator catch
    """A prompt the session refuses; the message is the reason. The previous prompt and state are kept."""


class TaskRunner(Protocol):
    """One task rule with its prompt features and per-stream state (detection.py ... multi_object.py)."""

    task: str
    stateful: bool  # True when it carries state across frames (a frame-size change mid-stream is refused)

    def step(self, prepared: PreparedFrame, stamp_ns: int, *, config: SessionConfig, cost: FrameCost) -> TaskResult:
        """Instances of one frame."""
        ...

    def reset(self) -> None:
        """Forget per-stream state (tracks, template updates), keep the prompt."""
        ...

    def apply_config(self, config: SessionConfig) -> None:
        """Take new thresholds that the runner holds (trackers) without losing state."""
        ...


@dataclass(frozen=True)
class SetupContext:
    """What building a runner needs from the session.

    Attributes:
        backend: the network.
        cache: prompt feature cache in front of the backend.
        tokenizer: fast BERT tokenizer of the model's text encoder.
        config: current session config (limits, masks switch).
        frame_lookup: stamp -> buffered (H, W, 3) uint8 frame or None.
        buffer_description: one line describing the buffer, for the rejection message.
        prepare: frame -> PreparedFrame, exactly as the session prepares stream frames.
    """

    backend: Backend
    cache: PromptCache
    tokenizer: PreTrainedTokenizerBase
    config: SessionConfig
    frame_lookup: Callable[[int], np.ndarray | None]
    buffer_description: str
    prepare: Callable[[np.ndarray], PreparedFrame]


def resolve_task(prompt: Prompt, task: str | None, *, masks: bool) -> str:
    """The task for `prompt`: `task` when it fits the prompt kind, else the kind's default (see module docstring)."""
    kind = type(prompt)
    if kind not in KIND_TASKS:
        raise PromptRejected(f"prompt must be a CategoryPrompt, ExpressionPrompt or TemplatePrompt, "
                             f"got {type(prompt).__name__}")
    if task is None or task == "":
        if kind is CategoryPrompt:
            return "instance_segmentation" if masks else "detection"
        if kind is ExpressionPrompt:
            return "res"
        return "vos" if all(t.mask is not None for t in prompt.targets) else "sot"
    if task not in TASKS:
        raise PromptRejected(f"unknown task {task!r}; expected one of {list(TASKS)}")
    if task not in KIND_TASKS[kind]:
        raise PromptRejected(f"task {task!r} does not fit a {_KIND_NAMES[kind]} prompt; expected one of "
                             f"{list(KIND_TASKS[kind])}")
    return task


def _tokenize_expression(text: str, tokenizer: PreTrainedTokenizerBase, max_tokens: int) -> TokenizedText:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if len(ids) > max_tokens:
        raise PromptRejected(f"expression is {len(ids)} tokens long ([CLS]/[SEP] included); at most {max_tokens} fit")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((1, max_tokens), pad, dtype=torch.int64)
    input_ids[0, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
    attention_mask = torch.zeros(1, max_tokens, dtype=torch.int64)
    attention_mask[0, : len(ids)] = 1
    return TokenizedText(input_ids, attention_mask)


def _category_runner(prompt: CategoryPrompt, task: str, ctx: SetupContext) -> TaskRunner:
    limit = ctx.config.max_categories
    if len(prompt.names) > limit:
        raise PromptRejected(f"category prompt has {len(prompt.names)} class names; at most {limit} are accepted "
                             f"(max_categories)")
    if task in ("mot", "mots", "vis") and not ctx.backend.spec.has_embeddings:
        raise PromptRejected(f"task {task!r} needs re-ID embeddings, but model {ctx.backend.spec.name!r} has no "
                             f"re-ID head (built with video=False)")
    try:
        caption = build_category_caption(prompt.names, ctx.tokenizer, max_tokens=ctx.backend.spec.max_text_tokens)
    except ValueError as error:
        raise PromptRejected(str(error)) from error
    features = ctx.cache.text(TokenizedText(caption.input_ids, caption.attention_mask))
    matrix = caption.class_token_matrix().to(ctx.backend.device)
    if task in ("detection", "instance_segmentation"):
        return DetectionRunner(task=task, backend=ctx.backend, prompt=features, class_token_matrix=matrix,
                               names=prompt.names)
    return MultiObjectRunner(task=task, backend=ctx.backend, prompt=features, class_token_matrix=matrix,
                             names=prompt.names, config=ctx.config)


def _expression_runner(prompt: ExpressionPrompt, task: str, ctx: SetupContext) -> TaskRunner:
    limit = ctx.config.max_expression_chars
    if len(prompt.text) > limit:
        raise PromptRejected(f"expression has {len(prompt.text)} characters; at most {limit} are accepted "
                             f"(max_expression_chars)")
    if not prompt.cleaned:
        raise PromptRejected(f"expression {prompt.text!r} is empty after removing punctuation and whitespace")
    tokens = _tokenize_expression(prompt.cleaned, ctx.tokenizer, ctx.backend.spec.max_text_tokens)
    return GroundingRunner(task=task, backend=ctx.backend, prompt=ctx.cache.text(tokens), label=prompt.text)


def _clipped_box(box: tuple[float, float, float, float], object_id: int, height: int,
                 width: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise PromptRejected(f"target {object_id}: box {box} lies outside the {width}x{height} (WxH) image")
    clipped = (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))
    if clipped[2] - clipped[0] < 1.0 or clipped[3] - clipped[1] < 1.0:
        raise PromptRejected(f"target {object_id}: box {box} covers {clipped[2] - clipped[0]:.2f}x"
                             f"{clipped[3] - clipped[1]:.2f} pixels of the {width}x{height} image; at least 1x1 "
                             f"is needed (zero-area box)")
    return clipped


def _template_runner(prompt: TemplatePrompt, task: str, ctx: SetupContext) -> TaskRunner:
    spec = ctx.backend.spec
    if spec.template_size is None:
        raise PromptRejected(f"model {spec.name!r} has no template encoder (built with video=False); template "
                             f"prompts need a video model")
    if task == "vos":
        missing = [t.object_id for t in prompt.targets if t.mask is None]
        if missing:
            raise PromptRejected(f"task 'vos' needs a mask for every target; targets {missing} have none "
                                 f"(use task 'sot' for box-only targets)")
    frame = prompt.image if prompt.image is not None else ctx.frame_lookup(prompt.frame_stamp_ns)
    if frame is None:
        raise PromptRejected(f"template frame stamp {prompt.frame_stamp_ns} is not in the frame buffer "
                             f"({ctx.buffer_description}) and the prompt carries no image")
    height, width = frame.shape[:2]
    for target in prompt.targets:
        if target.mask is not None and target.mask.shape != (height, width):
            raise PromptRejected(f"target {target.object_id}: mask of shape {target.mask.shape} does not match the "
                                 f"template frame size {(height, width)}")
    boxes = [_clipped_box(t.resolved_box_xyxy(), t.object_id, height, width) for t in prompt.targets]
    prepared = ctx.prepare(frame)
    states = encode_template_targets(prompt, prepared, boxes, cache=ctx.cache, template_size=spec.template_size,
                                     search_area_factor=spec.template_search_area_factor)
    runner_type = VosRunner if task == "vos" else SotRunner
    return runner_type(backend=ctx.backend, cache=ctx.cache, targets=states, prompt_stamp_ns=prompt.frame_stamp_ns,
                       template_size=spec.template_size, search_area_factor=spec.template_search_area_factor)


def build_runner(prompt: Prompt, task: str | None, ctx: SetupContext) -> TaskRunner:
    """Validate `prompt` for `task` (or its default) and build its runner with the prompt encoded.

    Raises:
        PromptRejected: with the reason; nothing outside the returned runner has changed (the cache may hold the
            features of a prompt that was encoded before a later check failed).
    """
    task = resolve_task(prompt, task, masks=ctx.config.masks)
    if isinstance(prompt, CategoryPrompt):
        return _category_runner(prompt, task, ctx)
    if isinstance(prompt, ExpressionPrompt):
        return _expression_runner(prompt, task, ctx)
    return _template_runner(prompt, task, ctx)
