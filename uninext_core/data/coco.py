"""COCO instances JSON (detection / instance segmentation): reader and writer.

Format (cocodataset.org/#format-data): {"images": [{"id", "file_name", "height", "width"}], "annotations":
[{"id", "image_id", "category_id", "bbox": [x, y, w, h], "area", "iscrowd", "segmentation"}], "categories":
[{"id", "name", "supercategory"}]}. `segmentation` is a polygon list, or an RLE dict (uncompressed integer counts for
crowd regions, or a compressed string). Box-only datasets (Objects365) omit it. An optional per-annotation
"attributes" object is kept (the synthetic world writes scene attributes there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uninext_core.data.errors import DataFormatError
from uninext_core.data.json_fields import (
    box_from_xywh,
    box_to_xywh,
    categories_to_json,
    field_of,
    known_id,
    load_json,
    parse_categories,
    positive_int,
    unique_records,
    write_json,
)
from uninext_core.data.records import DetectionDataset, ImageRecord, InstanceAnnotation
from uninext_core.data.segmentation import segmentation_from_coco


def read_coco_instances(
    path: str | Path, *, image_root: str | Path | None = None, check_images: bool = True
) -> DetectionDataset:
    """Read a COCO instances file.

    Args:
        path: the JSON file.
        image_root: folder the `file_name`s are relative to; when given and `check_images`, every file must exist.
        check_images: verify the image files exist (a stat per image; no decoding).

    Returns:
        DetectionDataset with images in file order and each image's annotations in file order.

    Raises:
        DataFormatError: malformed JSON or records, unknown image/category ids, duplicate ids, an empty category
            list, an RLE whose size differs from its image, or a missing image file.
    """
    path = Path(path)
    data = load_json(path)
    categories = parse_categories(data, path=path)
    category_ids = {c.id for c in categories}
    images: list[ImageRecord] = []
    by_id: dict[int, ImageRecord] = {}
    for image_id, record, item in unique_records(data, "images", path=path, singular="image"):
        image = ImageRecord(
            id=image_id,
            file_name=field_of(item, "file_name", str, path=path, record=record),
            height=positive_int(item, "height", path=path, record=record),
            width=positive_int(item, "width", path=path, record=record),
        )
        if image_root is not None and check_images and not (Path(image_root) / image.file_name).is_file():
            raise DataFormatError(path, record, f"image file {Path(image_root) / image.file_name} not found")
        by_id[image_id] = image
        images.append(image)
    for _, record, item in unique_records(data, "annotations", path=path, singular="annotation"):
        image_id = known_id(item, "image_id", by_id, among="images", path=path, record=record)
        image = by_id[image_id]
        image.annotations.append(parse_instance(item, height=image.height, width=image.width, path=path,
                                                record=record, category_ids=category_ids,
                                                image_label=f"image {image_id}"))
    return DetectionDataset(categories, images, Path(image_root) if image_root is not None else None)


def parse_instance(
    item: dict[str, Any], *, height: int, width: int, path: Path, record: str, category_ids: set[int],
    image_label: str,
) -> InstanceAnnotation:
    """One COCO annotation object (bbox, category, optional segmentation, iscrowd, attributes)."""
    ann_id = field_of(item, "id", int, path=path, record=record)
    category_id = known_id(item, "category_id", category_ids, among="categories", path=path, record=record)
    box = box_from_xywh(field_of(item, "bbox", list, path=path, record=record), path=path, record=record)
    segmentation = None
    if item.get("segmentation") is not None:
        segmentation = segmentation_from_coco(item["segmentation"], height=height, width=width, path=path,
                                              record=record, image_label=image_label)
    iscrowd = item.get("iscrowd", 0)
    if iscrowd not in (0, 1):
        raise DataFormatError(path, record, f"iscrowd must be 0 or 1, got {iscrowd!r}")
    attributes = item.get("attributes", {})
    if not isinstance(attributes, dict):
        raise DataFormatError(path, record, f"attributes must be an object, got {attributes!r:.60}")
    return InstanceAnnotation(ann_id, category_id, box, segmentation, bool(iscrowd), dict(attributes))


def instance_to_json(ann: InstanceAnnotation, *, image_id: int) -> dict[str, Any]:
    """One annotation in COCO form (area = mask area when there is a mask, else box area)."""
    x, y, w, h = box_to_xywh(ann.box_xyxy_px)
    out: dict[str, Any] = {
        "id": ann.id,
        "image_id": image_id,
        "category_id": ann.category_id,
        "bbox": [x, y, w, h],
        "area": float(ann.segmentation.area()) if ann.segmentation is not None else w * h,
        "iscrowd": int(ann.iscrowd),
    }
    if ann.segmentation is not None:
        out["segmentation"] = ann.segmentation.to_coco()
    if ann.attributes:
        out["attributes"] = ann.attributes
    return out


def coco_instances_to_json(dataset: DetectionDataset) -> dict[str, Any]:
    """The whole dataset as a COCO instances object (annotations ordered by image, then as stored)."""
    images = [{"id": im.id, "file_name": im.file_name, "height": im.height, "width": im.width} for im in dataset.images]
    annotations = [instance_to_json(ann, image_id=im.id) for im in dataset.images for ann in im.annotations]
    return {"images": images, "annotations": annotations, "categories": categories_to_json(dataset.categories)}


def write_coco_instances(dataset: DetectionDataset, path: str | Path) -> None:
    """Write a COCO instances file that `read_coco_instances` reads back to an equal dataset."""
    if not dataset.categories:
        raise ValueError(f"cannot write {path}: empty category list")
    write_json(coco_instances_to_json(dataset), path)
