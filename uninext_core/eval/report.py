"""Evaluation reports: result.json, report.md / report.html and matplotlib PNG plots, written so that a failed run
never leaves a complete-looking folder (result.json is written last, through a temporary file and a rename).

Plots: one PNG per curve the scorer returns (precision-recall, SOT success and precision, J per object, HOTA per
alpha, REC IoU distribution) and a histogram of the per-frame latency.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from uninext_core.eval.scoring import Curve

RESULT_NAME = "result.json"
REPORT_NAME = "report.md"
HTML_NAME = "report.html"
# curve name -> (title, x label, y label)
_CURVE_LABELS: dict[str, tuple[str, str, str]] = {
    "precision_recall_box": ("Precision-recall, boxes, IoU 0.5", "recall", "precision"),
    "precision_recall_mask": ("Precision-recall, masks, IoU 0.5", "recall", "precision"),
    "precision_recall_video": ("Precision-recall, video masks, IoU 0.5", "recall", "precision"),
    "sot_success": ("SOT success plot", "overlap threshold", "success rate"),
    "sot_precision": ("SOT precision plot", "centre error threshold (px)", "precision"),
    "j_mean_per_object": ("Region J per object (cumulative)", "J mean", "fraction of objects"),
    "hota_per_alpha": ("HOTA per localisation threshold", "alpha", "HOTA"),
    "rec_iou_cdf": ("Box IoU per expression (cumulative)", "IoU", "fraction of expressions"),
}


class ReportFiles(NamedTuple):
    """Paths written: the JSON, the Markdown and HTML reports, and the plots."""

    result: Path
    markdown: Path
    html: Path
    plots: list[Path]


def _plot_curve(path: Path, name: str, curve: Curve) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title, x_label, y_label = _CURVE_LABELS.get(name, (name, "x", "y"))
    figure, axes = plt.subplots(figsize=(5, 4), dpi=100)
    axes.plot(curve["x"], curve["y"], marker="." if len(curve["x"]) < 60 else None)
    axes.set(title=title, xlabel=x_label, ylabel=y_label, ylim=(-0.02, 1.02))
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _plot_latency(path: Path, wall_ms: Sequence[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 4), dpi=100)
    axes.hist(np.asarray(wall_ms, dtype=np.float64), bins=min(40, max(5, len(wall_ms) // 2)))
    axes.set(title="Per-frame latency (Session.process)", xlabel="milliseconds", ylabel="frames")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _number(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    return str(value)


def _table(rows: Mapping[str, Any]) -> list[str]:
    lines = ["| name | value |", "|---|---|"]
    lines += [f"| {key} | {_number(value)} |" for key, value in rows.items()]
    return lines


def _json_safe(value: Any) -> Any:
    """NaN / inf become None (strict JSON); numpy scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: Path, content: Mapping[str, Any]) -> None:
    """Write strict JSON through `<path>.partial` and a rename, so a reader never sees half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(_json_safe(content), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(partial, path)


def write_report(out: str | Path, *, title: str, evaluated: Mapping[str, Any], metrics: Mapping[str, float],
                 curves: Mapping[str, Curve], latency: Mapping[str, float], wall_ms: Sequence[float],
                 sections: Sequence[tuple[str, Sequence[str]]] = (), extra: Mapping[str, Any] | None = None
                 ) -> ReportFiles:
    """Write plots, report.md, report.html and (last) result.json into `out`.

    Args:
        out: output folder (created).
        title: report heading.
        evaluated: what was evaluated (dataset, frames, checkpoint, preset, backend, seed, ...).
        metrics: metric name -> value.
        curves: curve name -> {"x", "y"}; one PNG each.
        latency: the latency summary (runner.latency_summary).
        wall_ms: per-frame wall times for the histogram.
        sections: extra Markdown sections (heading, lines).
        extra: more top-level keys for result.json (e.g. per-frame records).

    Returns:
        The paths written.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / RESULT_NAME
    if stale.exists():
        stale.unlink()  # an older complete result must not survive a rerun that fails half way
    plots = []
    for name, curve in curves.items():
        path = folder / f"{name}.png"
        _plot_curve(path, name, curve)
        plots.append(path)
    if wall_ms:
        path = folder / "latency_histogram.png"
        _plot_latency(path, wall_ms)
        plots.append(path)
    lines = [f"# {title}", "", "## Evaluated", "", *_table(evaluated), "", "## Metrics", "", *_table(metrics), "",
             "## Latency (per frame, milliseconds)", "", *_table(latency), ""]
    for heading, body in sections:
        lines += [f"## {heading}", "", *body, ""]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    markdown = folder / REPORT_NAME
    markdown.write_text("\n".join(lines), encoding="utf-8")
    html_path = folder / HTML_NAME
    html_path.write_text(_html(title, evaluated, metrics, latency, sections, plots), encoding="utf-8")
    result = folder / RESULT_NAME
    write_json_atomic(result, {"evaluated": dict(evaluated), "metrics": dict(metrics), "latency": dict(latency),
                               "curves": {k: dict(v) for k, v in curves.items()}, **(extra or {})})
    return ReportFiles(result, markdown, html_path, plots)


def _html(title: str, evaluated: Mapping[str, Any], metrics: Mapping[str, float], latency: Mapping[str, float],
          sections: Sequence[tuple[str, Sequence[str]]], plots: Sequence[Path]) -> str:
    def table(rows: Mapping[str, Any]) -> str:
        body = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_number(v))}</td></tr>"
                       for k, v in rows.items())
        return f"<table border='1' cellpadding='3'><tr><th>name</th><th>value</th></tr>{body}</table>"

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>",
             f"<h1>{html.escape(title)}</h1>", "<h2>Evaluated</h2>", table(evaluated), "<h2>Metrics</h2>",
             table(metrics), "<h2>Latency (per frame, milliseconds)</h2>", table(latency)]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><pre>{html.escape(chr(10).join(body))}</pre>")
    parts.append("<h2>Plots</h2>" + "".join(f"<img src='{html.escape(p.name)}' alt='{html.escape(p.stem)}'>"
                                            for p in plots))
    parts.append("</body></html>\n")
    return "\n".join(parts)
