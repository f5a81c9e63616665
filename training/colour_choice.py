"""Does the model tell colours apart? The 8-way colour choice on a synthetic detection set.

    python -m training.colour_choice --checkpoint uninext_core/assets/uninext_tiny.safetensors \
        --data data/synth_eval/det --images 30 --out runs/colour_choice.json

For every shape kind in an image, the perception session detects with the 8 phrases "<colour> <kind>" of that kind
as the class list (score threshold 0, best class per query). For each object of that kind, the detection on it is
the best-scored one whose box overlaps the object's box with IoU ≥ 0.5, and the choice is right when its phrase
names the object's colour. Chance is 1/8. Objects that no detection overlaps are left out and counted.

Why it exists: REC expressions mostly tell objects apart by colour and position, and the `tiny` model's query
features carried hardly any colour (`training.diagnose_rec` probes). This measures the same thing through the
prompt, as REC uses it, and is quick enough to run on checkpoints during training.
Synthetic annotations only (it reads each object's `attributes`: kind, colour).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from training.report_cli import add_common_arguments, inputs_exist, write_report
from uninext_core.data.synthetic.scene import COLOURS
from uninext_core.eval.overlaps import box_iou_xyxy

MATCH_IOU = 0.5


def chosen_index(boxes_xyxy: np.ndarray, scores: np.ndarray, target_xyxy: np.ndarray) -> int | None:
    """Index of the best-scored detection overlapping `target_xyxy` with IoU ≥ 0.5, or None when none does."""
    if len(boxes_xyxy) == 0:
        return None
    overlaps = box_iou_xyxy(boxes_xyxy.astype(np.float64), target_xyxy.astype(np.float64)[None])[:, 0]
    candidates = np.flatnonzero(overlaps >= MATCH_IOU)
    if not len(candidates):
        return None
    return int(candidates[np.argmax(scores[candidates])])


def colour_choice(checkpoint: Path, data: Path, *, images: int, threads: int) -> dict:
    """Run the choice on the first `images` images of `data` (COCO layout with object attributes)."""
    from uninext_core.checkpoint.safetensors_io import read_config
    from uninext_core.data.image_io import read_image_rgb
    from uninext_core.deploy.loading import load_backend
    from uninext_core.prompts import CategoryPrompt
    from uninext_core.tasks.session import Session
    from uninext_core.tasks.session_config import SessionConfig

    torch.set_num_threads(threads)
    coco = json.loads((data / "annotations" / "instances.json").read_text())
    by_image: dict[int, list[dict]] = defaultdict(list)
    for annotation in coco["annotations"]:
        if "kind" not in annotation.get("attributes", {}):
            raise ValueError(f"{data}: annotation {annotation['id']} has no attributes.kind (a synthetic set?)")
        by_image[annotation["image_id"]].append(annotation)
    loaded = load_backend(preset=read_config(checkpoint).name, checkpoint=str(checkpoint))
    session = Session(loaded.backend, tokenizer=loaded.tokenizer,
                      config=SessionConfig(score_threshold=0.0, best_class_only=True))
    colours = list(COLOURS)
    hits: dict[str, list[bool]] = defaultdict(list)
    unmatched = 0
    for record in coco["images"][:images]:
        frame = read_image_rgb(data / "images" / record["file_name"], source=str(data), record=str(record["id"]))
        annotations = by_image.get(record["id"], [])
        for kind in sorted({a["attributes"]["kind"] for a in annotations}):
            session.set_prompt(CategoryPrompt(tuple(f"{colour} {kind}" for colour in colours)), task="detection")
            found = session.process(frame, 0)
            for annotation in (a for a in annotations if a["attributes"]["kind"] == kind):
                x, y, w, h = annotation["bbox"]
                index = chosen_index(found.boxes_xyxy, found.scores, np.array([x, y, x + w, y + h]))
                if index is None:
                    unmatched += 1
                    continue
                truth = annotation["attributes"]["colour"]
                hits[truth].append(colours[int(found.class_indices[index])] == truth)
    everything = [hit for colour_hits in hits.values() for hit in colour_hits]
    return {"checkpoint": str(checkpoint), "data": str(data), "images": min(images, len(coco["images"])),
            "objects_chosen": len(everything), "objects_without_detection": unmatched,
            "accuracy": float(np.mean(everything)) if everything else None, "chance": 1.0 / len(colours),
            "accuracy_by_colour": {c: float(np.mean(v)) for c, v in sorted(hits.items())}}


def main(argv: list[str] | None = None) -> int:
    """CLI entry. Exit 0, or 2 for bad input."""
    parser = argparse.ArgumentParser(prog="python -m training.colour_choice", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, data_help="synthetic detection set (COCO layout)")
    parser.add_argument("--images", type=int, default=30, help="images to run (first N)")
    args = parser.parse_args(argv)
    if not inputs_exist(args):
        return 2
    if args.images < 1 or args.threads < 1:
        print("error: --images and --threads must be >= 1", file=sys.stderr)
        return 2
    try:
        report = colour_choice(args.checkpoint, args.data, images=args.images, threads=args.threads)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_report(report, args.out)
    accuracy = "n/a" if report["accuracy"] is None else f"{report['accuracy']:.3f}"
    print(f"colour choice {accuracy} over {report['objects_chosen']} objects (chance {report['chance']:.3f}; "
          f"{report['objects_without_detection']} objects had no detection with IoU >= {MATCH_IOU})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
