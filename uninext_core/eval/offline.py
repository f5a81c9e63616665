"""Offline evaluation as a Python call: a session over a dataset's units, scored by the task's scorer.

`uninext-eval` (cli.py) is this plus model loading, a progress bar and the report; tests call it with sessions of
their own (a scripted backend, or any object with the Session methods the runner uses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from uninext_core.eval.runner import FrameOutput, FrameTiming, frame_timing, latency_summary, run_unit
from uninext_core.eval.scoring import Scores, make_scorer
from uninext_core.eval.units import EvalUnit
from uninext_core.tasks.session import Session
from uninext_core.train.frame_stores import FrameStore


class Evaluation(NamedTuple):
    """Metrics and curves, the latency summary, and every prompted frame's wall time (milliseconds)."""

    scores: Scores
    latency: dict[str, float]
    wall_ms: list[float]
    frames: int


def evaluate_units(session: Session, store: FrameStore, units: Sequence[EvalUnit], *, task: str,
                   on_output: Callable[[FrameOutput], None] | None = None) -> Evaluation:
    """Run every unit through `session` (reset between units) and score the task.

    Args:
        session: a perception Session (or an object with set_prompt / process / reset / clip_results).
        store: the dataset the units come from.
        units: from `units.build_units(store, task=task)`.
        task: the evaluated task.
        on_output: called after every frame (progress bars).

    Raises:
        ValueError: a prompt or frame the session refuses (naming the unit), or data the scorer cannot use.
    """
    scorer = make_scorer(task, categories=store.categories)
    timings: list[FrameTiming] = []  # the instances themselves are dropped once scored
    for unit in units:
        run = run_unit(session, store, unit, on_output)
        scorer.add(run)
        timings += [frame_timing(o) for o in run.outputs]
    return Evaluation(scorer.result(), latency_summary(timings), [t.wall_ms for t in timings if t.prompted],
                      len(timings))
