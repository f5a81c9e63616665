"""Detection and referring exports: one synthetic image per item, written as COCO (+ RefCOCO refs)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from uninext_core.data.coco import write_coco_instances
from uninext_core.data.image_io import write_image_rgb
from uninext_core.data.records import (
    BoxXyxy,
    DetectionDataset,
    ImageRecord,
    InstanceAnnotation,
    ReferringDataset,
    RefExpression,
)
from uninext_core.data.refcoco import write_refcoco
from uninext_core.data.segmentation import Segmentation, mask_to_polygons
from uninext_core.data.synthetic.options import ExportOptions, ExportResult, MaskFormat
from uninext_core.data.synthetic.scene import SceneObject
from uninext_core.data.synthetic.world import CATEGORIES, CATEGORY_ID, synth_image
from uninext_core.masks import encode_mask


def mask_segmentation(mask: np.ndarray, mask_format: MaskFormat) -> tuple[Segmentation, BoxXyxy]:
    """A visible mask as a file segmentation and its tight box (x2/y2 exclusive pixels).

    Polygons are used when asked for and possible (no holes); the box always comes from the exact mask.
    """
    rle = encode_mask(mask)
    segmentation: Segmentation = rle
    if mask_format == "polygon":
        polygons = mask_to_polygons(mask)
        if polygons is not None:
            segmentation = polygons
    return segmentation, rle.box_xyxy_px()


class ImageItem(NamedTuple):
    """One written image and its per-object annotations (ids are assigned when items are gathered)."""

    file_name: str
    height: int
    width: int
    objects: tuple[SceneObject, ...]
    segmentations: tuple[Segmentation, ...]
    boxes: tuple[BoxXyxy, ...]
    expressions: dict[int, list[str]]


def make_image_item(options: ExportOptions, index: int) -> ImageItem:
    """Draw image `index`, write its JPEG under `out/images/` and return its annotations."""
    synth = synth_image(seed=options.seed, index=index, height=options.size, width=options.size,
                        difficulty=options.difficulty, task=options.task,
                        with_expressions=options.task == "referring", max_expressions=options.max_expressions)
    file_name = f"{index:06d}.jpg"
    write_image_rgb(options.out / "images" / file_name, synth.image, jpeg_quality=options.jpeg_quality)
    segs, boxes = zip(*(mask_segmentation(m, options.mask_format) for m in synth.masks), strict=True) \
        if len(synth.objects) else ((), ())
    expressions = {k: [e.text for e in v] for k, v in synth.expressions.items()}
    return ImageItem(file_name, options.size, options.size, synth.objects, tuple(segs), tuple(boxes), expressions)


def gather_images(items: list[ImageItem], *, image_root: Path) -> tuple[DetectionDataset, dict[tuple[int, int], int]]:
    """COCO records of the items (image ids 1.., annotation ids 1.. in order) and (image index, object id) → ann id."""
    images = []
    ann_ids: dict[tuple[int, int], int] = {}
    next_ann = 1
    for index, item in enumerate(items):
        record = ImageRecord(index + 1, item.file_name, item.height, item.width)
        for obj, seg, box in zip(item.objects, item.segmentations, item.boxes, strict=True):
            record.annotations.append(InstanceAnnotation(next_ann, CATEGORY_ID[obj.kind], box, seg,
                                                         attributes=obj.to_attributes()))
            ann_ids[(index, obj.id)] = next_ann
            next_ann += 1
        images.append(record)
    return DetectionDataset(list(CATEGORIES), images, image_root), ann_ids


def write_image_task(options: ExportOptions, items: list[ImageItem]) -> ExportResult:
    """Write annotations/instances.json (and annotations/refs.json for referring)."""
    dataset, ann_ids = gather_images(items, image_root=options.out / "images")
    instances = options.out / "annotations" / "instances.json"
    if options.task == "detection":
        write_coco_instances(dataset, instances)
        return ExportResult(options.task, (instances,), dataset)
    refs = []
    for index, item in enumerate(items):
        kinds = {o.id: o.kind for o in item.objects}
        for object_id, sentences in item.expressions.items():
            refs.append(RefExpression(len(refs) + 1, index + 1, ann_ids[(index, object_id)],
                                      CATEGORY_ID[kinds[object_id]], list(sentences), options.split))
    referring = ReferringDataset(dataset, refs)
    refs_path = options.out / "annotations" / "refs.json"
    write_refcoco(referring, refs_path, instances)
    return ExportResult(options.task, (instances, refs_path), referring)
