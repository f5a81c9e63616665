"""The training metrics log (JSONL, one line per logged iteration) and its loss-curve plot (PNG)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

# Curves drawn in the second panel: the final decoder layer's terms (unweighted), when present in the log.
PLOTTED_TERMS = ("loss_ce", "loss_bbox", "loss_giou", "loss_boxiou", "loss_mask", "loss_dice", "loss_prj",
                 "loss_pairwise", "loss_ce_enc", "loss_ce_dn", "loss_reid", "loss_reid_aux")


def append_metrics(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line (values must be JSON numbers or strings)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(dict(record), sort_keys=False) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a metrics file (an absent file gives [])."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_metrics(path: str | Path, *, after_step: int) -> None:
    """Drop records with step > after_step (a resumed run rewrites what followed its checkpoint)."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [r for r in read_metrics(path) if int(r.get("step", 0)) <= after_step]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    return np.convolve(values, kernel, mode="valid")


def plot_loss_curves(metrics_path: str | Path, png_path: str | Path, *, title: str = "", smooth: int = 20) -> bool:
    """Plot total loss and the final layer's terms against the step (moving average over `smooth` records).

    Returns:
        False when the log holds no record yet (nothing written), else True.
    """
    records = read_metrics(metrics_path)
    if not records:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in records], dtype=np.float64)
    figure, (total_axis, term_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    totals = np.array([r["loss"] for r in records], dtype=np.float64)
    window = min(smooth, max(1, len(records) // 5))
    total_axis.plot(steps, totals, color="0.8", linewidth=0.8, label="per log line")
    total_axis.plot(steps[window - 1:], _smooth(totals, window), color="C0", label=f"mean of {window}")
    total_axis.set_xlabel("iteration")
    total_axis.set_ylabel("weighted total loss")
    total_axis.set_yscale("log")
    total_axis.legend()
    for k, term in enumerate(PLOTTED_TERMS):
        points = [(r["step"], r[term]) for r in records if term in r]
        if len(points) < 2:
            continue
        xs, ys = np.array(points, dtype=np.float64).T
        w = min(smooth, max(1, len(xs) // 5))
        term_axis.plot(xs[w - 1:], _smooth(ys, w), color=f"C{k % 10}", label=term)
    term_axis.set_xlabel("iteration")
    term_axis.set_ylabel("unweighted loss (final layer, moving mean)")
    term_axis.set_yscale("log")
    if term_axis.lines:  # a run of one logged step has no curve yet
        term_axis.legend(fontsize=7, ncol=2)
    figure.suptitle(title)
    figure.tight_layout()
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return True
