"""Per-prompt summary of a demo run: frames, rate, latency, and whether the prompted objects were found.

What the node published (instance arrays, recorded as `Observation`s) is matched against the synthetic ground truth
of the frame each array answers (by header stamp), at box IoU >= 0.5:
  detect  recall of the prompted classes: ground-truth objects matched by an instance of their class (greedy, highest
          score first, each instance used once), over all objects shown on the processed frames; and precision:
          the matched share of all published instances (a model that puts a box of every class on every object
          reaches full recall but not precision);
  refer   REC hit rate (REC Prec@0.5): frames whose top-scoring instance overlaps the referent, over processed frames
          that show the referent;
  track   SOT success rate at 0.5 (GOT-10k's SR_0.5): frames whose top-scoring instance overlaps the target, over
          processed frames after the template frame that show the target.
A phase's objects count as found when that share (detect: recall and precision) is at least `FOUND_SHARE`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from uninext_core.eval.overlaps import box_iou_xyxy
from uninext_ros.demo.planner import PlannedPrompt, PromptOutcome
from uninext_ros.demo.video import FrameTruth

MATCH_IOU = 0.5  # box IoU at which an instance counts as the object
FOUND_SHARE = 0.5  # recall / hit rate / success rate at which a phase's prompted objects count as found
METRIC_NAMES: dict[str, str] = {"classes": "recall", "expression": "hit_rate", "template": "success_rate"}


@dataclass(frozen=True)
class Observation:
    """One instance array as the recorder received it.

    Attributes:
        stamp_ns: header stamp of the source frame.
        received_ns: wall-clock time of arrival (ns).
        prompt_id: prompt the instances answer (0: none yet).
        task: the node's task for that prompt.
        boxes_xyxy_px: (N, 4) float64 boxes in pixels of the source frame.
        scores: (N,) float64 in [0, 1].
        labels: N labels (class name, expression or template label).
        latency_ms: the node's stamp-to-publish latency.
        inference_ms: the network's share of it.
    """

    stamp_ns: int
    received_ns: int
    prompt_id: int
    task: str
    boxes_xyxy_px: np.ndarray
    scores: np.ndarray
    labels: tuple[str, ...]
    latency_ms: float
    inference_ms: float

    @property
    def end_to_end_ms(self) -> float:
        """Frame stamp to arrival at the recorder, in milliseconds."""
        return (self.received_ns - self.stamp_ns) / 1e6


@dataclass(frozen=True)
class PhaseRecord:
    """What the run knows about one phase: the prompt, the node's verdict, and how many frames the camera sent."""

    planned: PlannedPrompt
    outcome: PromptOutcome
    frames_published: int


@dataclass(frozen=True)
class PhaseSummary:
    """The summary line of one phase (see the module docstring for the metrics).

    Attributes:
        phase, kind, prompt: the planned prompt.
        accepted, reason, prompt_id, task: the node's verdict.
        frames_published: frames the camera sent during the phase; frames_processed: arrays answering the prompt.
        rate_hz: processed frames per second (arrival times).
        latency_ms_median, latency_ms_p90: frame stamp to arrival at the recorder.
        inference_ms_median: the network's share (the node's report).
        metric: "recall", "hit_rate" or "success_rate"; value: its value, None when nothing could be scored.
        hits, scored: numerator and denominator of the value.
        precision: detect only: hits / instances published for the scored frames (None: none published, or
            another phase).
        found: value >= FOUND_SHARE (detect: precision too).
    """

    phase: str
    kind: str
    prompt: str
    accepted: bool
    reason: str
    prompt_id: int
    task: str
    frames_published: int
    frames_processed: int
    rate_hz: float
    latency_ms_median: float
    latency_ms_p90: float
    inference_ms_median: float
    metric: str
    value: float | None
    hits: int
    scored: int
    precision: float | None
    found: bool


def count_detection_matches(*, boxes_xyxy_px: np.ndarray, scores: np.ndarray, labels: Sequence[str],
                            truth: FrameTruth, iou_threshold: float = MATCH_IOU) -> int:
    """Ground-truth objects matched by an instance of their class (greedy by score, one instance per object).

    Args:
        boxes_xyxy_px: (N, 4) instance boxes in pixels; scores: (N,); labels: N class names.
        truth: the frame's objects.

    Returns:
        Number of matched ground-truth objects, in [0, len(truth.kinds)].
    """
    if len(labels) == 0 or len(truth.kinds) == 0:
        return 0
    ious = box_iou_xyxy(np.asarray(boxes_xyxy_px, np.float64).reshape(-1, 4), truth.boxes_xyxy_px)  # (N, M)
    same_class = np.array([[label.strip().lower() == kind for kind in truth.kinds] for label in labels])
    ious = np.where(same_class, ious, 0.0)
    taken = np.zeros(len(truth.kinds), dtype=bool)
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        candidates = np.where(taken, -1.0, ious[i])
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_threshold:
            taken[best] = True
    return int(taken.sum())


def top_instance_hits(*, boxes_xyxy_px: np.ndarray, scores: np.ndarray, target_xyxy_px: np.ndarray,
                      iou_threshold: float = MATCH_IOU) -> bool:
    """Whether the top-scoring instance overlaps the target box by at least `iou_threshold` (False when none)."""
    if len(scores) == 0:
        return False
    best = int(np.argmax(scores))
    iou = box_iou_xyxy(np.asarray(boxes_xyxy_px, np.float64)[best:best + 1], np.asarray(target_xyxy_px)[None])
    return bool(iou[0, 0] >= iou_threshold)


class _Score(NamedTuple):
    hits: int
    scored: int
    predictions: int  # instances published on the scored frames


def _score_phase(record: PhaseRecord, answers: Sequence[Observation],
                 truth_of: Callable[[int], FrameTruth | None]) -> _Score:
    """Numerator and denominator of the phase's metric, and the instances published on the scored frames."""
    planned = record.planned
    hits = scored = predictions = 0
    for obs in answers:
        truth = truth_of(obs.stamp_ns)
        if truth is None:
            continue
        if planned.kind == "classes":
            hits += count_detection_matches(boxes_xyxy_px=obs.boxes_xyxy_px, scores=obs.scores, labels=obs.labels,
                                            truth=truth)
            scored += len(truth.kinds)
            predictions += len(obs.labels)
            continue
        if planned.kind == "template" and obs.stamp_ns == planned.frame_stamp_ns:
            continue  # the template frame's answer is the given box
        where = np.flatnonzero(truth.track_indices == planned.target_track)
        if where.size == 0:
            continue  # the referent / target is not in view
        scored += 1
        predictions += len(obs.labels)
        hits += top_instance_hits(boxes_xyxy_px=obs.boxes_xyxy_px, scores=obs.scores,
                                  target_xyxy_px=truth.boxes_xyxy_px[int(where[0])])
    return _Score(hits, scored, predictions)


def summarize_phase(record: PhaseRecord, observations: Sequence[Observation],
                    truth_of: Callable[[int], FrameTruth | None]) -> PhaseSummary:
    """The summary of one phase from every recorded array (those answering its prompt id are used).

    Args:
        record: the phase's prompt, verdict and published frame count.
        observations: every recorded instance array of the run.
        truth_of: header stamp -> ground truth of that published frame (None for an unknown stamp).
    """
    planned, outcome = record.planned, record.outcome
    answers = [o for o in observations if outcome.accepted and o.prompt_id == outcome.prompt_id]
    answers.sort(key=lambda o: o.received_ns)
    latencies = np.array([o.end_to_end_ms for o in answers], dtype=np.float64)
    rate = 0.0
    if len(answers) >= 2 and answers[-1].received_ns > answers[0].received_ns:
        rate = (len(answers) - 1) / ((answers[-1].received_ns - answers[0].received_ns) / 1e9)
    hits, scored, predictions = _score_phase(record, answers, truth_of)
    value = hits / scored if scored else None
    precision = hits / predictions if planned.kind == "classes" and predictions else None
    found = value is not None and value >= FOUND_SHARE
    if planned.kind == "classes":
        found = found and precision is not None and precision >= FOUND_SHARE
    return PhaseSummary(
        phase=planned.phase, kind=planned.kind, prompt=planned.text, accepted=outcome.accepted,
        reason=outcome.reason, prompt_id=outcome.prompt_id, task=outcome.task,
        frames_published=record.frames_published, frames_processed=len(answers), rate_hz=float(rate),
        latency_ms_median=float(np.median(latencies)) if latencies.size else 0.0,
        latency_ms_p90=float(np.percentile(latencies, 90)) if latencies.size else 0.0,
        inference_ms_median=float(np.median([o.inference_ms for o in answers])) if answers else 0.0,
        metric=METRIC_NAMES[planned.kind], value=value, hits=hits, scored=scored, precision=precision, found=found)


def _verdict(summary: PhaseSummary) -> str:
    if not summary.accepted:
        return f"refused: {summary.reason}"
    if summary.value is None:
        return "not scored (no processed frame showed the object)"
    precision = "" if summary.precision is None else f", precision {summary.precision:.2f}"
    return ("found" if summary.found else "NOT found") + \
        f" ({summary.metric} {summary.value:.2f} = {summary.hits}/{summary.scored}{precision}, IoU >= {MATCH_IOU})"


def format_table(summaries: Sequence[PhaseSummary]) -> str:
    """A plain-text table, one line per phase, then one line per prompt text and verdict."""
    header = f"{'phase':<7} {'task':<22} {'frames':>10} {'rate Hz':>8} {'latency ms med/p90':>19} {'net ms':>7}  result"
    lines = [header, "-" * len(header)]
    for s in summaries:
        frames = f"{s.frames_processed}/{s.frames_published}"
        result = "refused" if not s.accepted else "-" if s.value is None else f"{s.metric} {s.value:.2f}"
        if s.precision is not None:
            result += f", precision {s.precision:.2f}"
        if s.accepted and s.value is not None:
            result += " found" if s.found else " NOT found"
        lines.append(f"{s.phase:<7} {s.task or '-':<22} {frames:>10} {s.rate_hz:>8.2f} "
                     f"{s.latency_ms_median:>9.0f}/{s.latency_ms_p90:<9.0f} {s.inference_ms_median:>7.0f}  {result}")
    lines.append("")
    lines.extend(f"{s.phase}: prompt {s.prompt!r} -> {_verdict(s)}" for s in summaries)
    return "\n".join(lines)


def to_markdown(summaries: Sequence[PhaseSummary], *, run: dict[str, object]) -> str:
    """The summary as Markdown: the run's settings, then one table row per phase."""
    lines = ["# uninext-ros demo", ""]
    lines += [f"- {key}: {value}" for key, value in run.items()]
    lines += ["", "| phase | prompt | task | frames processed / published | rate (Hz) | latency median / p90 (ms) | "
              "network median (ms) | result |", "|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        prompt = s.prompt.replace("|", "\\|")
        lines.append(f"| {s.phase} | {prompt} | {s.task or '-'} | {s.frames_processed} / {s.frames_published} | "
                     f"{s.rate_hz:.2f} | {s.latency_ms_median:.0f} / {s.latency_ms_p90:.0f} | "
                     f"{s.inference_ms_median:.0f} | {_verdict(s).replace('|', '/')} |")
    lines += ["", f"Matching: box IoU >= {MATCH_IOU} against the synthetic ground truth; found when the share is "
              f">= {FOUND_SHARE}. Latency: frame stamp to arrival of its instance array at the demo process."]
    return "\n".join(lines) + "\n"


def write_summary(out_dir: Path, summaries: Sequence[PhaseSummary], *, run: dict[str, object]) -> tuple[Path, Path]:
    """Write `summary.json` (run settings, thresholds, one object per phase) and `summary.md`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "summary.json", out_dir / "summary.md"
    payload = {"run": run, "match_iou": MATCH_IOU, "found_share": FOUND_SHARE,
               "phases": [asdict(s) for s in summaries]}
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(to_markdown(summaries, run=run), encoding="utf-8")
    return json_path, md_path
