"""Score a model on freshly generated synthetic evaluation sets and write the scores into MODEL.md.

    python -m training.model_card --checkpoint uninext_core/assets/uninext_tiny.safetensors --out runs/model_card
    python -m training.model_card --checkpoint ... --limit 1 --out runs/card_check   # the quick reproduction check
    python -m training.model_card --checkpoint ... --out runs/model_card --only ref   # re-score one set, keep the rest

The evaluation sets come from the synthetic world with another seed than training (`EVAL_SEED`; training used 0), so
no evaluation image was seen in training. Each set is scored with `uninext-eval` — the same sessions the ROS node
drives — and the headline metrics the model card promises are collected into `scores.json` and `scores.md`;
`--update-card MODEL.md` replaces the block between the `SCORES_BEGIN` / `SCORES_END` markers (or, with --limit, the
`CHECK_BEGIN` / `CHECK_END` block that tests/training/test_model_card.py reproduces) with the new table, so the
numbers in the card are never typed by hand. `--only` re-scores some sets (after an evaluator change) and takes
the others from the `scores.json` an earlier run of the same checkpoint and limit left in `--out`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from uninext_core.tasks.motion_prior import NODE_SOT_MOTION_SIGMA, NODE_SOT_MOTION_WEIGHT

logger = logging.getLogger("training.model_card")

EVAL_SEED = 1
SYNTH_OPTIONS = ("--size", "320", "--difficulty", "medium")
MOT_CATEGORIES = "circle,square,triangle,star,hexagon,cross,heart,ring,ellipse,diamond"
SCORES_BEGIN, SCORES_END = "<!-- SCORES_BEGIN -->", "<!-- SCORES_END -->"
CHECK_BEGIN, CHECK_END = "<!-- CHECK_BEGIN -->", "<!-- CHECK_END -->"


@dataclass(frozen=True)
class EvalSet:
    """One generated evaluation set and the metrics the card reports from it.

    Attributes:
        key: the set's name in scores.json, in the card and for --only (unique; a folder may be scored twice).
        folder: sub-folder of the evaluation root.
        generate: arguments of `python -m uninext_core.data.synthetic` (besides --out, --seed and SYNTH_OPTIONS).
        task: `uninext-eval --task`.
        metrics: (result.json metric key, name in the card, target or None) in card order.
        eval_args: more `uninext-eval` arguments.
    """

    key: str
    folder: str
    generate: tuple[str, ...]
    task: str
    metrics: tuple[tuple[str, str, float | None], ...]
    eval_args: tuple[str, ...] = ()


# The SOT set is scored twice: with the temporal-continuity prior the ROS node uses by default (the card's SOT row,
# `uninext_core.tasks.motion_prior`), and with the official full-frame top-1 rule (reference §7) for comparison.
SOT_NODE_RULE = ("--set", f"sot_motion_weight={NODE_SOT_MOTION_WEIGHT}",
                 "--set", f"sot_motion_sigma={NODE_SOT_MOTION_SIGMA}")
SOT_VIDEOS = ("--task", "sot", "--num-videos", "10", "--num-frames", "48")

EVAL_SETS: tuple[EvalSet, ...] = (
    EvalSet("det", "det", ("--task", "detection", "--num-images", "200"), "instance_segmentation",
            (("box_ap50", "box AP50 (category prompts)", 0.7), ("box_ap", "box AP", None),
             ("mask_ap", "mask AP", None))),
    EvalSet("ref", "ref", ("--task", "referring", "--num-images", "200"), "rec",
            (("accuracy", "REC accuracy (IoU ≥ 0.5)", 0.7),)),
    EvalSet("sot", "sot", SOT_VIDEOS, "sot",
            (("success_auc", "SOT success AUC", 0.5), ("precision_20px", "SOT precision (20 px)", None)),
            SOT_NODE_RULE),
    EvalSet("sot_official", "sot", SOT_VIDEOS, "sot",
            (("success_auc", "SOT success AUC, official full-frame rule", None),)),
    EvalSet("vos", "vos", ("--task", "vos", "--num-videos", "10", "--num-frames", "24"), "vos",
            (("jf_mean", "VOS J&F", None),)),
    EvalSet("mot", "mot", ("--task", "mot", "--num-videos", "10", "--num-frames", "48"), "mot",
            (("mota", "MOT MOTA", None), ("idf1", "MOT IDF1", 0.6)), ("--categories", MOT_CATEGORIES)),
)


def generate_eval_sets(root: Path, *, seed: int = EVAL_SEED, sets: Sequence[EvalSet] = EVAL_SETS) -> None:
    """Generate each missing evaluation set under `root` (a folder that exists is kept as it is)."""
    from uninext_core.data.synthetic.__main__ import main as synthesize

    for spec in sets:
        target = root / spec.folder
        if target.exists():  # also a folder generated for an earlier set of this loop
            continue
        argv = ["--out", str(target), "--seed", str(seed), *SYNTH_OPTIONS, *spec.generate]
        logger.info("generating %s", " ".join(argv))
        if synthesize(argv) != 0:
            raise RuntimeError(f"generating the {spec.folder} evaluation set failed ({' '.join(argv)})")


def evaluate(checkpoint: Path, root: Path, out: Path, *, limit: int | None, threads: int,
             sets: Sequence[EvalSet] = EVAL_SETS) -> dict[str, dict[str, object]]:
    """Run uninext-eval on every set; returns {key: {"task", "metrics", "frames", "units", "seconds"}}."""
    from uninext_core.eval.cli import main as uninext_eval

    results: dict[str, dict[str, object]] = {}
    for spec in sets:
        run_dir = out / spec.key
        argv = ["--task", spec.task, "--data", str(root / spec.folder), "--checkpoint", str(checkpoint),
                "--threads", str(threads), "--out", str(run_dir), *spec.eval_args]
        if limit is not None:
            argv += ["--limit", str(limit)]
        start = time.monotonic()
        status = uninext_eval(argv)
        if status != 0:
            raise RuntimeError(f"uninext-eval {' '.join(argv)} exited with {status}")
        result = json.loads((run_dir / "result.json").read_text())
        results[spec.key] = {"task": spec.task, "metrics": result["metrics"],
                                "frames": result["evaluated"]["frames"], "units": result["evaluated"]["units"],
                                "seconds": round(time.monotonic() - start, 1)}
    return results


def scores_table(results: dict[str, dict[str, object]], *, sets: Sequence[EvalSet] = EVAL_SETS) -> str:
    """The card's Markdown table: metric, value, target, evaluation set size."""
    lines = ["| metric | value | target | evaluated on |", "|---|---|---|---|"]
    for spec in sets:
        if spec.key not in results:
            raise ValueError(f"no scores for the {spec.key} set (an older scores.json? re-run without --only)")
        result = results[spec.key]
        metrics = result["metrics"]
        for key, name, target in spec.metrics:
            value = metrics.get(key)
            shown = "n/a" if value is None else f"{value:.3f}"
            verdict = "" if target is None or value is None else (" ✓" if value >= target else " ✗")
            lines.append(f"| {name} | {shown}{verdict} | {'' if target is None else f'≥ {target}'} | "
                         f"{result['units']} {spec.folder} units, {result['frames']} frames |")
    return "\n".join(lines)


def earlier_results(scores_json: Path, *, checkpoint: Path, limit: int | None) -> dict[str, dict[str, object]]:
    """The results of an earlier run kept in `scores_json` (ValueError: missing, or of other weights or limit)."""
    if not scores_json.is_file():
        raise ValueError(f"--only needs the scores.json of an earlier full run in the same --out ({scores_json})")
    earlier = json.loads(scores_json.read_text())
    if earlier.get("checkpoint") != str(checkpoint) or earlier.get("limit") != limit:
        raise ValueError(f"{scores_json} scored {earlier.get('checkpoint')} with limit {earlier.get('limit')}, not "
                         f"{checkpoint} with limit {limit}")
    return earlier["results"]


def _split_block(text: str, begin: str, end: str) -> tuple[str, str, str]:
    """(before `begin`, between the markers, after `end`); ValueError when the marked block is missing."""
    if begin not in text or end not in text or text.index(begin) > text.index(end):
        raise ValueError(f"the card has no {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    block, tail = rest.split(end, 1)
    return head, block, tail


def card_block(text: str, begin: str, end: str) -> str:
    """The lines between the `begin` and `end` markers of a card (ValueError if missing)."""
    return _split_block(text, begin, end)[1]


def replace_block(text: str, begin: str, end: str, body: str) -> str:
    """`text` with the lines between the `begin` and `end` markers replaced by `body` (ValueError if missing)."""
    head, _, tail = _split_block(text, begin, end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def missed_targets(card_text: str, *, sets: Sequence[EvalSet] = EVAL_SETS) -> dict[str, float]:
    """Card metric name -> value for every target the card's full-set block (`SCORES_BEGIN` ... `SCORES_END`) marks
    as missed (✗); ValueError when the block or a targeted metric's row is missing."""
    block = card_block(card_text, SCORES_BEGIN, SCORES_END)
    cells = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in block.splitlines()
             if row.startswith("| ") and row.count("|") >= 3}
    missed = {}
    for spec in sets:
        for _, name, target in spec.metrics:
            if target is None:
                continue
            if name not in cells:
                raise ValueError(f"the card's score block has no row for {name!r}")
            if cells[name].endswith("✗"):
                missed[name] = float(cells[name].split()[0])
    return missed


def main(argv: list[str] | None = None) -> int:
    """CLI entry. Exit 0, or 2 for bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.model_card", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True, help="weights to score (.safetensors)")
    parser.add_argument("--eval-root", type=Path, default=Path(f"data/synth_eval_seed{EVAL_SEED}"),
                        help="where the evaluation sets are (generated when missing)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (one uninext-eval report per set)")
    parser.add_argument("--limit", type=int, default=None, help="score the first N units of each set only")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--update-card", type=Path, default=None, help="MODEL.md whose score block to rewrite")
    parser.add_argument("--only", action="append", choices=[s.key for s in EVAL_SETS], default=None,
                        help="re-score this set only (repeatable); the others come from --out's scores.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.checkpoint.is_file():
        print(f"error: checkpoint {args.checkpoint} does not exist", file=sys.stderr)
        return 2
    results: dict[str, dict[str, object]] = {}
    if args.only:
        try:
            results = earlier_results(args.out / "scores.json", checkpoint=args.checkpoint, limit=args.limit)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    generate_eval_sets(args.eval_root)
    chosen = [s for s in EVAL_SETS if not args.only or s.key in args.only]
    results |= evaluate(args.checkpoint, args.eval_root, args.out, limit=args.limit, threads=args.threads,
                        sets=chosen)
    try:
        table = scores_table(results)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scores.json").write_text(json.dumps({"checkpoint": str(args.checkpoint), "limit": args.limit,
                                                      "eval_seed": EVAL_SEED, "results": results}, indent=2))
    (args.out / "scores.md").write_text(table + "\n")
    if args.update_card is not None:
        begin, end = (SCORES_BEGIN, SCORES_END) if args.limit is None else (CHECK_BEGIN, CHECK_END)
        try:
            args.update_card.write_text(replace_block(args.update_card.read_text(), begin, end, table))
        except (OSError, ValueError) as error:
            print(f"error: cannot update {args.update_card}: {error}", file=sys.stderr)
            return 2
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
