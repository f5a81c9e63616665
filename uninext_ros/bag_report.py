"""What the bag evaluator reports beyond the evaluator's common report: per-frame records and replay vs offline."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from uninext_core.eval.runner import FrameOutput
from uninext_ros.bag_io import FrameHeader
from uninext_ros.bag_replay import ReplayResult


def frame_records(headers: Sequence[FrameHeader], outputs: Sequence[FrameOutput]) -> list[dict[str, Any]]:
    """One JSON record per frame: index, stamps, instance count, prompt id and the per-frame cost (milliseconds)."""
    records = []
    for header, output in zip(headers, outputs, strict=True):
        timings = output.instances.timings
        records.append({"index": header.index, "stamp_ns": header.stamp_ns, "log_time_ns": header.log_time_ns,
                        "prompt_id": output.instances.prompt_id, "instances": len(output.instances),
                        "wall_ms": output.wall_ms, "preprocess_ms": timings.preprocess_ms,
                        "inference_ms": timings.inference_ms, "postprocess_ms": timings.postprocess_ms})
    return records


def replay_summary(replay: ReplayResult, *, bag_duration_s: float) -> dict[str, Any]:
    """Frames answered and dropped, arrival latency (publication -> arrival) and answered rate."""
    latency = np.asarray(replay.latency_ms, dtype=np.float64)
    answered = int(sum(replay.received))
    return {
        "frames": len(replay.received), "answered": answered, "dropped": len(replay.received) - answered,
        "drop_rate": 1.0 - answered / len(replay.received) if replay.received else 0.0,
        "latency_ms_mean": float(latency.mean()) if latency.size else math.nan,
        "latency_ms_median": float(np.median(latency)) if latency.size else math.nan,
        "latency_ms_p90": float(np.percentile(latency, 90)) if latency.size else math.nan,
        "answered_hz": answered / bag_duration_s if bag_duration_s > 0 else math.nan,
        "prompts_refused": sum(1 for _, accepted, _ in replay.prompt_answers if not accepted),
    }


def comparison_lines(offline_metrics: Mapping[str, float], replay_metrics: Mapping[str, float] | None,
                     offline_latency: Mapping[str, float], replay: Mapping[str, Any], *, frames: int) -> list[str]:
    """Markdown table: every metric offline and in the replay, then frames and timing of both."""
    def text(value: Any) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.4f}"
        return str(value)

    lines = ["| | offline | replay |", "|---|---|---|"]
    for name, value in offline_metrics.items():
        replayed = None if replay_metrics is None else replay_metrics.get(name)
        lines.append(f"| {name} | {text(value)} | {text(replayed)} |")
    lines += [f"| frames answered | {frames} of {frames} | {replay['answered']} of {replay['frames']} |",
              f"| frames dropped | 0 | {replay['dropped']} |",
              f"| latency mean (ms) | {text(offline_latency.get('wall_ms_mean'))} (processing) | "
              f"{text(replay['latency_ms_mean'])} (publication to arrival) |",
              f"| latency p90 (ms) | {text(offline_latency.get('wall_ms_p90'))} | {text(replay['latency_ms_p90'])} |"]
    if replay_metrics is None:
        lines += ["", "Replay metrics are not available for VIS: clip-level results are not published over ROS."]
    return lines
