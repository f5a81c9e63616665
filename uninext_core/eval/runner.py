"""Driving a perception `Session` through a timeline of frames and prompt changes, and timing it.

The offline evaluator and the rosbag evaluator share `drive_session`: the first builds the timeline from annotation
files (units.py), the second from a bag's image and prompt topics. Frames are processed one by one, deterministically
and as fast as possible; each output keeps the session's own split (pre-processing, network, post-processing) and
the wall time of `Session.process`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from uninext_core.eval.truth import FrameTruth
from uninext_core.eval.units import EvalUnit, load_frame, template_prompt
from uninext_core.instances import Instances
from uninext_core.prompts import CategoryPrompt, ExpressionPrompt, TemplatePrompt
from uninext_core.tasks.session import Session
from uninext_core.tasks.trackers import ClipInstance
from uninext_core.train.frame_stores import FrameStore

FRAME_PERIOD_NS = 100_000_000  # stamps of the offline evaluator's frames: 10 Hz from 0


@dataclass(frozen=True)
class FrameEvent:
    """A frame to process: (H, W, 3) uint8 RGB and its capture stamp in nanoseconds."""

    stamp_ns: int
    frame: np.ndarray


@dataclass(frozen=True)
class PromptEvent:
    """A prompt change; `source` names where it came from (a scenario line, a bag message) for error messages."""

    prompt: CategoryPrompt | ExpressionPrompt | TemplatePrompt
    task: str | None = None
    prompt_id: int | None = None
    source: str = ""


@dataclass(frozen=True)
class FrameOutput:
    """The session's answer to one frame and the wall time `Session.process` took (milliseconds)."""

    stamp_ns: int
    instances: Instances
    wall_ms: float


@dataclass
class UnitRun:
    """One evaluated unit: per-frame ground truth and outputs (same length), and VIS clip results."""

    unit: EvalUnit
    truths: list[FrameTruth] = field(default_factory=list)
    outputs: list[FrameOutput] = field(default_factory=list)
    clip_results: list[ClipInstance] = field(default_factory=list)


class PromptFailed(ValueError):  # noqa: N818 - reads as what happened
    """The session refused a prompt of the timeline; the message names its source and the reason."""


def drive_session(session: Session, events: Iterable[FrameEvent | PromptEvent],
                  on_output: Callable[[FrameOutput], None] | None = None) -> list[FrameOutput]:
    """Run the events in order: prompts are set, frames processed.

    Raises:
        PromptFailed: a prompt the session rejects (naming `PromptEvent.source`).
        FrameRejected: a frame the session refuses (from Session.process).
    """
    outputs = []
    for event in events:
        if isinstance(event, PromptEvent):
            try:
                session.set_prompt(event.prompt, task=event.task, prompt_id=event.prompt_id)
            except ValueError as error:
                where = f"{event.source}: " if event.source else ""
                raise PromptFailed(f"{where}prompt rejected: {error}") from error
            continue
        started = time.perf_counter()
        instances = session.process(event.frame, event.stamp_ns)
        output = FrameOutput(event.stamp_ns, instances, (time.perf_counter() - started) * 1e3)
        outputs.append(output)
        if on_output is not None:
            on_output(output)
    return outputs


def unit_events(store: FrameStore, unit: EvalUnit, truths: list[FrameTruth],
                period_ns: int = FRAME_PERIOD_NS) -> Iterator[FrameEvent | PromptEvent]:
    """The timeline of one unit; appends each frame's truth to `truths` as it is read.

    Category and expression prompts come before the first frame; a template prompt right after it, on its stamp.
    """
    labels = {c.id: c.name for c in store.categories}
    for k, position in enumerate(unit.frames):
        frame, truth = load_frame(store, unit, position)
        truths.append(truth)
        stamp_ns = k * period_ns
        if k == 0 and unit.prompt is not None:
            yield PromptEvent(unit.prompt, unit.task, source=unit.name)
        yield FrameEvent(stamp_ns, frame)
        if k == 0 and unit.prompt is None:
            names = {i: labels.get(int(c), "object") for i, c in zip(truth.ids.tolist(), truth.category_ids.tolist(),
                                                                     strict=True)}
            prompt = template_prompt(truth, task=unit.task, referent_ids=unit.referent_ids, stamp_ns=stamp_ns,
                                     labels=names)
            yield PromptEvent(prompt, unit.task, source=unit.name)


def run_unit(session: Session, store: FrameStore, unit: EvalUnit,
             on_output: Callable[[FrameOutput], None] | None = None) -> UnitRun:
    """Reset the session (prompt cleared), run the unit's timeline, collect truths, outputs and clip results."""
    session.reset(clear_prompt=True)
    run = UnitRun(unit)
    run.outputs = drive_session(session, unit_events(store, unit, run.truths), on_output)
    run.clip_results = session.clip_results()
    return run


class FrameTiming(NamedTuple):
    """The cost of one answered frame (milliseconds), kept instead of its instances for the latency summary.

    prompted: whether a prompt was in force (frames answered before the first prompt are left out of summaries).
    """

    prompted: bool
    wall_ms: float
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float


def frame_timing(output: FrameOutput) -> FrameTiming:
    """The FrameTiming of a session output."""
    timings = output.instances.timings
    return FrameTiming(output.instances.prompt_id != 0, output.wall_ms, timings.preprocess_ms, timings.inference_ms,
                       timings.postprocess_ms)


def latency_summary(timings: Sequence[FrameTiming]) -> dict[str, float]:
    """Per-frame cost over the frames answered with a prompt (milliseconds; fps = 1000 / mean wall time).

    Keys: frames, wall_ms_{mean,median,p90,p99,max}, first_frame_ms, preprocess_ms_mean, inference_ms_mean,
    postprocess_ms_mean, fps.
    """
    prompted = [t for t in timings if t.prompted]
    if not prompted:
        return {"frames": 0}
    wall = np.array([t.wall_ms for t in prompted], dtype=np.float64)
    split = np.array([[t.preprocess_ms, t.inference_ms, t.postprocess_ms] for t in prompted], dtype=np.float64)
    mean = float(wall.mean())
    return {
        "frames": len(prompted),
        "wall_ms_mean": mean,
        "wall_ms_median": float(np.median(wall)),
        "wall_ms_p90": float(np.percentile(wall, 90)),
        "wall_ms_p99": float(np.percentile(wall, 99)),
        "wall_ms_max": float(wall.max()),
        "first_frame_ms": float(wall[0]),
        "preprocess_ms_mean": float(split[:, 0].mean()),
        "inference_ms_mean": float(split[:, 1].mean()),
        "postprocess_ms_mean": float(split[:, 2].mean()),
        "fps": 1000.0 / mean if mean > 0 else 0.0,
    }
