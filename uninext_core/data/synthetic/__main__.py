"""Command line: generate a synthetic dataset for one task.

    python -m uninext_core.data.synthetic --out data/synth_det --task detection --seed 0 --num-images 1000 \\
        --size 320 --difficulty medium
    python -m uninext_core.data.synthetic --out data/synth_mot --task mot --num-videos 20 --num-frames 48
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from uninext_core.data.synthetic.export import export_world
from uninext_core.data.synthetic.options import ExportOptions
from uninext_core.data.synthetic.scene import DIFFICULTIES
from uninext_core.data.synthetic.world import TASKS

_IMAGE_TASKS = ("detection", "referring")


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(prog="python -m uninext_core.data.synthetic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-images", type=int, default=None, help="images (detection, referring); default 100")
    parser.add_argument("--num-videos", type=int, default=None, help="videos (other tasks); default 10")
    parser.add_argument("--num-frames", type=int, default=24, help="frames per video")
    parser.add_argument("--size", type=int, default=320, help="square frame side in pixels")
    parser.add_argument("--difficulty", choices=sorted(DIFFICULTIES), default="medium")
    parser.add_argument("--mask-format", choices=("rle", "polygon"), default="rle",
                        help="COCO-family masks (detection, referring, video)")
    parser.add_argument("--sot-layout", choices=("lasot", "got10k"), default="lasot")
    parser.add_argument("--vos-layout", choices=("davis", "youtube_vos"), default="davis")
    parser.add_argument("--max-expressions", type=int, default=3, help="expressions per object / track")
    parser.add_argument("--split", default="train", help="RefCOCO split name written into refs")
    parser.add_argument("--workers", type=int, default=1, help="processes")
    parser.add_argument("--jpeg-quality", type=int, default=90)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; prints one JSON summary line. Returns the exit status."""
    args = build_parser().parse_args(argv)
    is_image = args.task in _IMAGE_TASKS
    given = args.num_images if is_image else args.num_videos
    other = args.num_videos if is_image else args.num_images
    if other is not None:
        wanted, unwanted = ("--num-images", "--num-videos") if is_image else ("--num-videos", "--num-images")
        print(f"error: task {args.task} takes {wanted}, not {unwanted}", file=sys.stderr)
        return 2
    count = given if given is not None else (100 if is_image else 10)
    try:
        options = ExportOptions(out=args.out, task=args.task, count=count, seed=args.seed, size=args.size,
                                difficulty=args.difficulty, num_frames=args.num_frames, mask_format=args.mask_format,
                                sot_layout=args.sot_layout, vos_layout=args.vos_layout,
                                max_expressions=args.max_expressions, split=args.split, workers=args.workers,
                                jpeg_quality=args.jpeg_quality)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    with tqdm(total=count, unit="image" if is_image else "video", desc=args.task) as bar:
        result = export_world(options, progress=bar.update)
    seconds = time.perf_counter() - start
    print(json.dumps({"task": args.task, "count": count, "seconds": round(seconds, 2),
                      "files": [str(p) for p in result.files[:3]], "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
