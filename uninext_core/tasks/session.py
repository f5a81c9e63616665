"""The perception session: `(frame, stamp)` plus the current prompt -> tracked `Instances`.

The ROS node, the demo and the rosbag / offline evaluators all drive this one class (design/architecture.md). It
owns the frame buffer, the current task runner (detection.py, grounding.py, sot.py, vos.py, multi_object.py) and the
session configuration; the network runs behind a `Backend`, and prompt features come from a `PromptCache` that
several sessions on one backend may share (the node's cameras).

Contract (what callers rely on):
* `set_prompt` validates everything before changing any state; a rejection raises `PromptRejected` (a ValueError)
  whose message is the reason, and the previous prompt, task, tracks and buffer stay as they were.
* `process` always buffers an accepted frame; bad frames raise `FrameRejected` (a ValueError) and change nothing.
  While a stateful task (SOT, VOS, MOT, MOTS, VIS) is running, a frame of another size is refused until `reset`.
* The text and template encoders run at prompt changes and template updates only, never per frame.
* Not thread-safe: one caller at a time per session (the node holds a lock per camera).

Example:
    >>> session = Session(build_torch_backend("tiny"), tokenizer=model.text_encoder.tokenizer)
    >>> session.set_prompt(CategoryPrompt(("person", "car")))
    1
    >>> instances = session.process(frame_rgb, stamp_ns=0)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from uninext_core.deploy.backend import Backend
from uninext_core.instances import Instances, Timings
from uninext_core.tasks.frame_buffer import FrameBuffer
from uninext_core.tasks.preprocess import PreparedFrame, prepare_frame
from uninext_core.tasks.prompt_cache import CacheStats, PromptCache
from uninext_core.tasks.session_config import SessionConfig, validate_session_config
from uninext_core.tasks.task_setup import Prompt, PromptRejected, SetupContext, TaskRunner, build_runner
from uninext_core.tasks.timing import FrameCost
from uninext_core.tasks.trackers import ClipInstance

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

__all__ = ["FrameRejected", "PromptRejected", "Session", "SessionStats"]


class FrameRejected(ValueError):  # noqa: N818 - the public name the node and the evaluator catch
    """A frame the session refuses; the message is the reason. The session state is unchanged."""


@dataclass(frozen=True)
class SessionStats:
    """Diagnostics of one session.

    Attributes:
        frames_processed: frames answered since construction (with or without a prompt).
        last_timings: coarse split of the last frame (as in its Instances).
        last_cost: fine split of the last frame (pre-processing, network, post-processing, tracking, templates).
        prompt_changes: accepted set_prompt calls.
        last_prompt_change_ms: wall time of the last accepted set_prompt (validation, crops, encoders).
        cache: counters of the prompt cache (shared caches count every session's lookups).
    """

    frames_processed: int
    last_timings: Timings
    last_cost: FrameCost
    prompt_changes: int
    last_prompt_change_ms: float
    cache: CacheStats


def _check_frame(frame: object, stamp_ns: object) -> tuple[int, int]:
    if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, int | np.integer) or stamp_ns < 0:
        raise FrameRejected(f"stamp_ns must be a non-negative integer (nanoseconds), got {stamp_ns!r}")
    if not isinstance(frame, np.ndarray):
        raise FrameRejected(f"frame must be an (H, W, 3) uint8 numpy array, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameRejected(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise FrameRejected(f"frame is empty (shape {frame.shape})")
    if frame.dtype != np.uint8:
        raise FrameRejected(f"frame must be uint8, got {frame.dtype}")
    return int(frame.shape[0]), int(frame.shape[1])


class Session:
    """Stateful perception session (see the module docstring for the contract).

    Args:
        backend: runs the network (TorchBackend, or an ONNX Runtime / TensorRT backend).
        tokenizer: the fast BERT tokenizer of the model's text encoder (e.g. `model.text_encoder.tokenizer`).
        config: thresholds and limits (official values by default).
        prompt_cache: a cache shared with other sessions on the same backend; None makes a private one.

    Raises:
        ValueError: a cache bound to another backend, or an invalid config.
    """

    def __init__(self, backend: Backend, *, tokenizer: PreTrainedTokenizerBase, config: SessionConfig | None = None,
                 prompt_cache: PromptCache | None = None) -> None:
        config = validate_session_config(SessionConfig() if config is None else config)
        if prompt_cache is not None and prompt_cache.backend is not backend:
            raise ValueError("prompt_cache belongs to another backend; a shared cache must wrap this session's backend")
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"tokenizer must be a fast (offset-mapping) tokenizer, got {type(tokenizer).__name__}")
        self._backend = backend
        self._tokenizer = tokenizer
        self._config = config
        self._cache = prompt_cache if prompt_cache is not None else PromptCache(backend)
        self._buffer = FrameBuffer(capacity=config.frame_buffer_size)
        self._runner: TaskRunner | None = None
        self._prompt: Prompt | None = None
        self._prompt_id = 0
        self._next_prompt_id = 1
        self._stream_hw: tuple[int, int] | None = None
        self._frames_processed = 0
        self._last_cost = FrameCost()
        self._prompt_changes = 0
        self._last_prompt_change_ms = 0.0

    # ------------------------------------------------------------------------------------------------------------
    # Properties
    # ------------------------------------------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The backend running the network."""
        return self._backend

    @property
    def config(self) -> SessionConfig:
        """The current configuration."""
        return self._config

    @property
    def prompt(self) -> Prompt | None:
        """The current prompt, or None."""
        return self._prompt

    @property
    def prompt_id(self) -> int:
        """Id of the current prompt (>= 1), 0 when there is none."""
        return self._prompt_id

    @property
    def task(self) -> str | None:
        """The current task (one of instances.TASKS), None without a prompt."""
        return None if self._runner is None else self._runner.task

    def stats(self) -> SessionStats:
        """Frames processed, the last frame's cost, the prompt-change cost and the cache counters."""
        return SessionStats(frames_processed=self._frames_processed, last_timings=self._last_cost.timings(),
                            last_cost=replace(self._last_cost), prompt_changes=self._prompt_changes,
                            last_prompt_change_ms=self._last_prompt_change_ms, cache=self._cache.stats())

    def clip_results(self) -> list[ClipInstance]:
        """VIS: video-level results (clip scoring) of the frames since the prompt or the last reset; else []."""
        clip_results = getattr(self._runner, "clip_results", None)
        return clip_results() if clip_results is not None else []

    # ------------------------------------------------------------------------------------------------------------
    # Prompt, config, reset
    # ------------------------------------------------------------------------------------------------------------

    def _prepare(self, frame: np.ndarray) -> PreparedFrame:
        spec = self._backend.spec
        return prepare_frame(frame, spec=spec, short_side=self._config.input_short_side or spec.test_short_side,
                             max_size=self._config.input_max_size or spec.test_max_size,
                             fixed_input_size=self._backend.fixed_input_size, device=self._backend.device)

    def set_prompt(self, prompt: Prompt, *, task: str | None = None, prompt_id: int | None = None) -> int:
        """Validate and encode a new prompt, then make it current (tracks and template updates start afresh).

        Args:
            prompt: CategoryPrompt, ExpressionPrompt or TemplatePrompt (a template refers to a buffered frame by
                stamp, or carries its own image).
            task: a task that fits the prompt kind (categories: detection, instance_segmentation, mot, mots, vis;
                expression: rec, res, rvos; template: sot, vos), or None for the kind's default.
            prompt_id: id to report with the instances (>= 1), or None for the next counter value.

        Returns:
            The prompt id (never 0).

        Raises:
            PromptRejected: the reason; the previous prompt and state are kept.
        """
        started = time.perf_counter()
        if prompt_id is not None and (isinstance(prompt_id, bool) or not isinstance(prompt_id, int | np.integer)
                                      or prompt_id < 1):
            raise PromptRejected(f"prompt_id must be None or an integer >= 1, got {prompt_id!r}")
        context = SetupContext(backend=self._backend, cache=self._cache, tokenizer=self._tokenizer,
                               config=self._config, frame_lookup=self._buffer.get,
                               buffer_description=self._buffer.describe(), prepare=self._prepare)
        runner = build_runner(prompt, task, context)
        # Accepted: nothing above changed the session; commit.
        self._runner, self._prompt = runner, prompt
        if prompt_id is None:
            prompt_id = self._next_prompt_id
        self._prompt_id = int(prompt_id)
        self._next_prompt_id = max(self._next_prompt_id, self._prompt_id) + 1
        self._stream_hw = None
        self._prompt_changes += 1
        self._last_prompt_change_ms = (time.perf_counter() - started) * 1e3
        logger.debug("prompt %d set for task %s in %.1f ms", self._prompt_id, runner.task, self._last_prompt_change_ms)
        return self._prompt_id

    def update_config(self, config: SessionConfig) -> None:
        """Apply new thresholds from the next frame on (tracker thresholds included, tracks kept).

        Raises:
            ValueError / TypeError: naming the bad field; the previous config stays.
        """
        config = validate_session_config(config)
        self._buffer.resize(config.frame_buffer_size)
        if self._runner is not None:
            self._runner.apply_config(config)
        self._config = config

    def reset(self, *, clear_prompt: bool = False) -> None:
        """Forget tracks, template updates and buffered frames; also the prompt when clear_prompt."""
        if self._runner is not None:
            self._runner.reset()
        self._buffer.clear()
        self._stream_hw = None
        if clear_prompt:
            self._runner, self._prompt, self._prompt_id = None, None, 0

    # ------------------------------------------------------------------------------------------------------------
    # Frames
    # ------------------------------------------------------------------------------------------------------------

    def process(self, frame: np.ndarray, stamp_ns: int) -> Instances:
        """Instances of one frame for the current prompt.

        Args:
            frame: (H, W, 3) uint8 RGB.
            stamp_ns: capture stamp in nanoseconds (also the key template prompts refer to).

        Returns:
            Instances (Instances.empty without a prompt); boxes in pixels of `frame`, masks at its size.

        Raises:
            FrameRejected: an empty frame, a wrong type/shape/dtype, a negative stamp, or a size change while a
                stateful task runs; nothing is changed.
        """
        cost = FrameCost()
        with cost.measure("preprocess_ms"):
            frame_hw = _check_frame(frame, stamp_ns)
            runner = self._runner
            if runner is not None and runner.stateful and self._stream_hw not in (None, frame_hw):
                raise FrameRejected(
                    f"frame size changed from {self._stream_hw[1]}x{self._stream_hw[0]} to {frame_hw[1]}x{frame_hw[0]} "
                    f"(WxH) mid-stream while tracking (task {runner.task}); call reset() to restart at the new size")
            self._buffer.add(int(stamp_ns), frame)
            prepared = self._prepare(frame) if runner is not None else None
        if runner is None or prepared is None:
            self._finish(cost)
            return Instances.empty(stamp_ns=int(stamp_ns), image_size=frame_hw, task="detection", prompt_id=0,
                                   timings=cost.timings())
        result = runner.step(prepared, int(stamp_ns), config=self._config, cost=cost)
        if runner.stateful:
            self._stream_hw = frame_hw
        self._finish(cost)
        return Instances(stamp_ns=int(stamp_ns), image_size=frame_hw, task=runner.task, prompt_id=self._prompt_id,
                         track_ids=result.track_ids, boxes_xyxy=result.boxes_xyxy, scores=result.scores,
                         class_indices=result.class_indices, labels=result.labels, masks=result.masks,
                         timings=cost.timings())

    def _finish(self, cost: FrameCost) -> None:
        self._frames_processed += 1
        self._last_cost = cost
