"""Choose the SOT temporal-continuity prior (`sot_motion_weight`, `sot_motion_sigma`) on validation videos.

    python -m uninext_core.data.synthetic --out data/synth_val_seed2/sot --seed 2 --size 320 --difficulty medium \
        --task sot --num-videos 10 --num-frames 48
    python -m training.tune_sot_prior --checkpoint uninext_core/assets/uninext_tiny.safetensors \
        --data data/synth_val_seed2/sot --data data/synth_val_seed3/sot --out runs/sot_prior_search

Each validation sequence is run once through the perception session with the official full-frame rule while a
recording backend keeps every forward's candidates (score and box of each query). The prior only changes which
candidate is chosen, and a video shorter than the online-update interval never re-encodes its template, so every
(weight, sigma) of the grid is replayed from the recording exactly as the session would have run it; the replay of
weight 0 reproduces the session's own result (checked and reported). Use videos generated with other seeds than the
model card's evaluation set, so the card's SOT score is not tuned on itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from training.recording_backend import RecordingBackend
from uninext_core.eval.sot import SotSequenceResult, evaluate_sot_sequence, summarize_sot
from uninext_core.tasks.motion_prior import choose_with_continuity
from uninext_core.tasks.preprocess import normalized_boxes_to_frame

DEFAULT_WEIGHTS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_SIGMAS = (0.5, 1.0, 1.5, 2.0, 3.0)


class RecordedSequence:
    """One sequence: per processed frame the candidates, the ground truth and the visibility (first frame = prompt)."""

    def __init__(self, name: str, candidates: list[tuple[torch.Tensor, torch.Tensor]], gt_xyxy: np.ndarray,
                 visible: np.ndarray, session_xyxy: np.ndarray) -> None:
        self.name = name
        self.candidates = candidates
        self.gt_xyxy = gt_xyxy
        self.visible = visible
        self.session_xyxy = session_xyxy


def _xywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes_xyxy[:, :2], boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]], axis=1)


def record(checkpoint: Path, data: Path, *, threads: int) -> list[RecordedSequence]:
    """Run every SOT unit of `data` with the official rule and keep its candidates (one forward per frame)."""
    from uninext_core.checkpoint.safetensors_io import read_config
    from uninext_core.deploy.loading import load_backend
    from uninext_core.eval.datasets import open_data, resolve_data
    from uninext_core.eval.runner import run_unit
    from uninext_core.eval.units import build_units
    from uninext_core.tasks.session import Session
    from uninext_core.tasks.session_config import SessionConfig

    torch.set_num_threads(threads)
    store = open_data(resolve_data(str(data), task="sot"))
    units = build_units(store, task="sot")
    loaded = load_backend(preset=read_config(checkpoint).name, checkpoint=str(checkpoint),
                          backend="torch", device="cpu", engine_path="", text_encoder_path="")
    recorder = RecordingBackend(loaded.backend)
    config = SessionConfig(sot_motion_weight=0.0)
    session = Session(recorder, tokenizer=loaded.tokenizer, config=config)
    sequences = []
    for unit in units:
        if len(unit.frames) > config.template_update_interval:
            raise ValueError(f"{unit.name} has {len(unit.frames)} frames: an online template update would make the "
                             f"replay differ from the session (use videos of at most "
                             f"{config.template_update_interval} frames)")
        recorder.records.clear()
        run = run_unit(session, store, unit)
        (target,) = unit.referent_ids
        gt, visible, chosen, boxes = [], [], [], []
        frame_hw = run.truths[0].image_size
        for scores, cxcywh in recorder.records:
            boxes.append((scores, normalized_boxes_to_frame(cxcywh, frame_hw)))
        for truth, output in zip(run.truths, run.outputs, strict=True):
            row = truth.index_of(target)
            gt.append(np.zeros(4) if row is None else truth.boxes_xyxy_px[row].astype(np.float64))
            visible.append(row is not None)
            instances = output.instances
            chosen.append(instances.boxes_xyxy[int(np.argmax(instances.scores))].astype(np.float64)
                          if len(instances) else np.zeros(4))
        if len(boxes) != len(run.truths) - 1:
            raise RuntimeError(f"{unit.name}: {len(boxes)} forwards for {len(run.truths)} frames (expected one per "
                               f"frame after the prompt frame)")
        sequences.append(RecordedSequence(unit.name, boxes, np.stack(gt), np.array(visible), np.stack(chosen)))
    return sequences


def replay(sequence: RecordedSequence, *, weight: float, sigma: float) -> SotSequenceResult:
    """The sequence's OPE curves had the session chosen its candidates with this prior."""
    previous = torch.tensor(sequence.gt_xyxy[0], dtype=torch.float32)
    predictions = [sequence.gt_xyxy[0]]
    for scores, boxes in sequence.candidates:
        best = choose_with_continuity(scores, boxes, previous, weight=weight, sigma_scale=sigma)
        previous = boxes[best]
        predictions.append(boxes[best].numpy().astype(np.float64))
    return evaluate_sot_sequence(pred_boxes_xywh_px=_xywh(np.stack(predictions)),
                                 gt_boxes_xywh_px=_xywh(sequence.gt_xyxy), target_visible=sequence.visible)


def session_result(sequence: RecordedSequence) -> SotSequenceResult:
    """The OPE curves of what the session itself returned (official rule)."""
    return evaluate_sot_sequence(pred_boxes_xywh_px=_xywh(sequence.session_xyxy),
                                 gt_boxes_xywh_px=_xywh(sequence.gt_xyxy), target_visible=sequence.visible)


def search(sequences: list[RecordedSequence], weights: tuple[float, ...], sigmas: tuple[float, ...]
           ) -> dict[tuple[float, float], tuple[float, float]]:
    """(weight, sigma) -> (success AUC, precision @ 20 px) over all sequences (each weighs the same)."""
    grid = {}
    for weight in weights:
        for sigma in sigmas:
            summary = summarize_sot([replay(s, weight=weight, sigma=sigma) for s in sequences])
            grid[(weight, sigma)] = (summary.auc, summary.precision)
    return grid


def grid_table(grid: dict[tuple[float, float], tuple[float, float]], weights: tuple[float, ...],
               sigmas: tuple[float, ...]) -> str:
    """Markdown: one row per weight, one column per sigma, cells 'AUC / P@20'."""
    lines = ["| weight \\ sigma | " + " | ".join(f"{s:g}" for s in sigmas) + " |",
             "|---|" + "---|" * len(sigmas)]
    for weight in weights:
        cells = " | ".join(f"{grid[(weight, s)][0]:.3f} / {grid[(weight, s)][1]:.3f}" for s in sigmas)
        lines.append(f"| {weight:g} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry. Exit 0, or 2 for bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.tune_sot_prior", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="weights (.safetensors)")
    parser.add_argument("--data", type=Path, action="append", required=True, help="SOT validation set (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="folder for search.json and search.md")
    parser.add_argument("--weights", type=float, nargs="+", default=list(DEFAULT_WEIGHTS))
    parser.add_argument("--sigmas", type=float, nargs="+", default=list(DEFAULT_SIGMAS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    for path in [args.checkpoint, *args.data]:
        if not path.exists():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    if any(not 0.0 <= w <= 1.0 for w in args.weights) or any(s <= 0.0 for s in args.sigmas):
        print("error: weights must lie in [0, 1] and sigmas be > 0", file=sys.stderr)
        return 2
    weights, sigmas = tuple(args.weights), tuple(args.sigmas)
    try:
        sequences = [s for data in args.data for s in record(args.checkpoint, data, threads=args.threads)]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    session_auc = summarize_sot([session_result(s) for s in sequences]).auc
    replayed_auc = summarize_sot([replay(s, weight=0.0, sigma=1.0) for s in sequences]).auc
    if abs(session_auc - replayed_auc) > 1e-6:
        print(f"error: the weight-0 replay ({replayed_auc:.4f}) does not reproduce the session ({session_auc:.4f})",
              file=sys.stderr)
        return 1
    grid = search(sequences, weights, sigmas)
    table = grid_table(grid, weights, sigmas)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search.json").write_text(json.dumps({
        "checkpoint": str(args.checkpoint), "data": [str(d) for d in args.data], "sequences": len(sequences),
        "official_rule_auc": session_auc,
        "grid": [{"weight": w, "sigma": s, "auc": a, "precision_20px": p} for (w, s), (a, p) in grid.items()]},
        indent=2))
    (args.out / "search.md").write_text(f"{len(sequences)} sequences; official rule (weight 0) AUC "
                                        f"{session_auc:.3f}; cells: success AUC / precision @ 20 px\n\n{table}\n")
    print(f"{len(sequences)} sequences, official rule AUC {session_auc:.3f} (the weight-0 replay matches)\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
