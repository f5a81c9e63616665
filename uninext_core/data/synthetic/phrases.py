"""Phrase-grounding labels for synthetic images: every object's category becomes its "colour kind" phrase.

Why: the shape-kind categories of the detection data ask nothing of colour, so training on them makes the query
features colour-blind — a linear probe on the shipped model's last-decoder-layer query features recovered an
object's kind (0.62) and size (0.69) but barely its colour (0.27 against 0.21 for the majority class), and
expressions that name a colour then pick a same-kind object of another colour (MODEL.md). Grounding data whose phrases
carry attributes (GLIP's GoldG / Flickr30k-style phrase grounding; UNINEXT's own recipe has no such set) make every
object of every image a colour-bound positive for the token-level alignment loss, ten or so per image against the one
referent of a referring image. The images stay those of the source file; only the labels change, so the converted
file is a standard COCO instances file that the `coco` reader and the `detection` task read as they are.

    python -m uninext_core.data.synthetic.phrases --instances data/synth/det/annotations/instances.json \\
        --out data/synth/det/annotations/phrases.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from uninext_core.data.coco import read_coco_instances, write_coco_instances
from uninext_core.data.records import Category, DetectionDataset, ImageRecord, InstanceAnnotation
from uninext_core.data.synthetic.scene import COLOURS, KINDS

PHRASE_CATEGORIES: tuple[Category, ...] = tuple(
    Category(1 + c * len(KINDS) + k, f"{colour} {kind}", kind)
    for c, colour in enumerate(COLOURS) for k, kind in enumerate(KINDS))
_PHRASE_ID: dict[tuple[str, str], int] = {(c.name.split(" ", 1)[0], c.supercategory): c.id for c in PHRASE_CATEGORIES}


def phrase_category_id(attributes: dict) -> int:
    """Category id of an object's "colour kind" phrase, from its synthetic `attributes`.

    Raises:
        ValueError: attributes without a known colour and kind (not a synthetic-world annotation).
    """
    key = (attributes.get("colour"), attributes.get("kind"))
    if key not in _PHRASE_ID:
        raise ValueError(f"annotation attributes need a colour in {list(COLOURS)} and a kind in {list(KINDS)}, "
                         f"got colour={key[0]!r}, kind={key[1]!r}")
    return _PHRASE_ID[key]


def to_phrases(dataset: DetectionDataset) -> DetectionDataset:
    """The same images and objects, each object labelled with its "colour kind" phrase category."""
    images = []
    for image in dataset.images:
        relabelled = ImageRecord(image.id, image.file_name, image.height, image.width)
        for ann in image.annotations:
            try:
                category = phrase_category_id(ann.attributes)
            except ValueError as exc:
                raise ValueError(f"image {image.file_name}, annotation {ann.id}: {exc}") from None
            relabelled.annotations.append(InstanceAnnotation(ann.id, category, ann.box_xyxy_px, ann.segmentation,
                                                             ann.iscrowd, dict(ann.attributes)))
        images.append(relabelled)
    return DetectionDataset(list(PHRASE_CATEGORIES), images, dataset.image_root)


def main(argv: list[str] | None = None) -> int:
    """Convert one synthetic COCO file; prints what it wrote. Exit status 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m uninext_core.data.synthetic.phrases", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=Path, required=True, help="synthetic COCO instances file (with attributes)")
    parser.add_argument("--out", type=Path, required=True, help="COCO instances file to write")
    args = parser.parse_args(argv)
    try:
        converted = to_phrases(read_coco_instances(args.instances, check_images=False))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_coco_instances(converted, args.out)
    objects = sum(len(i.annotations) for i in converted.images)
    print(f"wrote {args.out}: {len(converted.images)} images, {objects} objects, {len(PHRASE_CATEGORIES)} phrases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
