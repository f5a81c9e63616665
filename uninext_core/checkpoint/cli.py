"""`uninext-convert`: official UNINEXT checkpoint (.pth) -> our safetensors file + JSON report.

    uninext-convert --checkpoint video_joint_r50.pth --preset r50 [--video | --image] \\
                    [--text-encoder ./bert-base-uncased] --out r50_video.safetensors

writes `r50_video.safetensors` and `r50_video.report.json` (mapped, reshaped, skipped with reasons, missing,
unexpected). Without --video/--image the variant follows the checkpoint (video when it holds the template branch or
the re-ID head). Exit status 0 on success, 1 when the checkpoint cannot be read or converted (the report is still
written when conversion got that far; the first offending keys are printed), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from uninext_core.checkpoint.convert import (
    OFFICIAL_PRESETS,
    CheckpointError,
    convert_official_checkpoint,
)
from uninext_core.checkpoint.safetensors_io import save_weights

EXIT_FAILURE = 1


def report_path(out: Path) -> Path:
    """`Y.report.json` next to `Y.safetensors` (or `NAME.report.json` for another suffix)."""
    stem = out.name.removesuffix(".safetensors")
    return out.with_name(f"{stem}.report.json")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uninext-convert", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="official UNINEXT .pth (detectron2 format)")
    parser.add_argument("--preset", required=True, choices=OFFICIAL_PRESETS, help="our preset of the same network")
    variant = parser.add_mutually_exclusive_group()
    variant.add_argument("--video", dest="video", action="store_true", default=None,
                         help="video model (template branch + re-ID head; stage-3 checkpoints)")
    variant.add_argument("--image", dest="video", action="store_false",
                         help="image model (a stage-3 checkpoint's video-only modules are skipped)")
    parser.add_argument("--text-encoder", type=Path, default=None,
                        help="local bert-base-uncased folder: BERT weights when the checkpoint has none")
    parser.add_argument("--out", required=True, type=Path, help="output .safetensors file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the converter; returns the exit status."""
    args = _parser().parse_args(argv)
    # Conversion warnings (alias copies that differ, a non-standard position_ids, ...) arrive through logging.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out: Path = args.out
    if not out.parent.is_dir():
        print(f"uninext-convert: output folder {out.parent} does not exist", file=sys.stderr)
        return EXIT_FAILURE
    try:
        conversion = convert_official_checkpoint(args.checkpoint, preset=args.preset, video=args.video,
                                                 text_encoder_path=args.text_encoder, strict=False)
    except (CheckpointError, ValueError) as error:
        print(f"uninext-convert: {error}", file=sys.stderr)
        return EXIT_FAILURE
    report, video = conversion.report, conversion.config.video
    report_file = report_path(out)
    report_file.write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    print(f"{args.checkpoint} -> preset {args.preset} ({'video' if video else 'image'}): {report.summary()}")
    if not report.ok:
        print(f"uninext-convert: {report.error_message()}", file=sys.stderr)
        print(f"uninext-convert: full report in {report_file}; nothing else written", file=sys.stderr)
        return EXIT_FAILURE
    save_weights(out, conversion.state_dict, config=conversion.config,
                 extra_metadata={"source_checkpoint": args.checkpoint.name, "text_encoder": report.text_encoder})
    size_mb = out.stat().st_size / 2**20
    print(f"wrote {out} ({len(conversion.state_dict)} tensors, {size_mb:.1f} MiB) and {report_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
