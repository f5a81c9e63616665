"""What the synthetic-set diagnosis CLIs (`colour_choice`, `diagnose_rec`) share: their common arguments, the check
that the weights and the set exist, and the optional JSON copy of the report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_common_arguments(parser: argparse.ArgumentParser, *, data_help: str) -> None:
    """--checkpoint, --data, --threads and --out."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="weights (.safetensors)")
    parser.add_argument("--data", type=Path, required=True, help=data_help)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")


def inputs_exist(args: argparse.Namespace) -> bool:
    """True when the weights and the set's COCO annotations exist; otherwise prints which is missing."""
    for path in (args.checkpoint, args.data / "annotations" / "instances.json"):
        if not path.exists():
            print(f"error: {path} does not exist", file=sys.stderr)
            return False
    return True


def write_report(report: dict, out: Path | None) -> None:
    """Write `report` as indented JSON to `out` (parents created); nothing when `out` is None."""
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
