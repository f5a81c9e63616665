from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uninext_core.data.coco import read_coco_instances, write_coco_instances
from uninext_core.data.errors import DataFormatError
from uninext_core.data.records import Category, DetectionDataset, ImageRecord, InstanceAnnotation
from uninext_core.masks import encode_mask

# The shape of cocodataset.org/#format-data: a polygon instance and an uncompressed-RLE crowd region.
HAND_WRITTEN = """{
  "info": {"description": "tiny"},
  "images": [{"id": 3, "file_name": "000000000003.jpg", "height": 4, "width": 5, "license": 1}],
  "annotations": [
    {"id": 17, "image_id": 3, "category_id": 18, "bbox": [1.0, 0.5, 2.5, 2.0], "area": 4.0, "iscrowd": 0,
     "segmentation": [[1.0, 1.0, 3.0, 1.0, 3.0, 3.0, 1.0, 3.0]]},
    {"id": 18, "image_id": 3, "category_id": 1, "bbox": [0, 0, 1, 2], "area": 2, "iscrowd": 1,
     "segmentation": {"size": [4, 5], "counts": [0, 2, 18]}},
    {"id": 19, "image_id": 3, "category_id": 1, "bbox": [2, 2, 1, 1], "area": 1, "iscrowd": 0}
  ],
  "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                 {"id": 18, "name": "dog", "supercategory": "animal"}]
}"""


def _write(tmp_path: Path, text: str, name: str = "instances.json") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_hand_written_coco_file(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "000000000003.jpg").write_bytes(b"")
    data = read_coco_instances(_write(tmp_path, HAND_WRITTEN), image_root=tmp_path / "images")
    categories = [(c.id, c.name, c.supercategory) for c in data.categories]
    assert categories == [(1, "person", "person"), (18, "dog", "animal")]
    (image,) = data.images
    assert (image.id, image.file_name, image.height, image.width) == (3, "000000000003.jpg", 4, 5)
    dog, crowd, boxonly = image.annotations
    assert dog.box_xyxy_px == (1.0, 0.5, 3.5, 2.5)
    assert dog.segmentation.decode().sum() == 4  # pixel centres (1..2, 1..2) inside the 2×2 square
    assert crowd.iscrowd
    expected = np.zeros((4, 5), bool)
    expected[0:2, 0] = True  # column-major: first two pixels of column 0
    assert np.array_equal(crowd.segmentation.decode(), expected)
    assert boxonly.segmentation is None


def test_write_then_read_is_identical(tmp_path):
    mask = np.zeros((6, 8), bool)
    mask[2:5, 1:4] = True
    rle = encode_mask(mask)
    dataset = DetectionDataset(
        [Category(1, "circle", "shape"), Category(2, "star", "shape")],
        [ImageRecord(1, "a.jpg", 6, 8, [InstanceAnnotation(5, 2, rle.box_xyxy_px(), rle, attributes={"colour": "red"}),
                                        InstanceAnnotation(6, 1, (0.0, 0.0, 2.0, 1.0))]),
         ImageRecord(2, "b.jpg", 6, 8)],
    )
    path = tmp_path / "out.json"
    write_coco_instances(dataset, path)
    assert read_coco_instances(path) == dataset
    stored = json.loads(path.read_text())["annotations"][0]
    assert stored["bbox"] == [1.0, 2.0, 3.0, 3.0] and stored["area"] == 9.0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["annotations"][0].update(segmentation={"size": [10, 20], "counts": "PPYo0"}),
         "annotation id 17: segmentation RLE size [10, 20] does not match image 3 (4×5)"),
        (lambda d: d.update(categories=[]), "categories: empty category list"),
        (lambda d: d["annotations"][0].update(category_id=99), "annotation id 17: category_id 99 is not among"),
        (lambda d: d["annotations"][1].update(image_id=4), "annotation id 18: image_id 4 is not among the images"),
        (lambda d: d["annotations"][2].update(bbox=[1, 2, -1, 3]), "annotation id 19: bbox width and height"),
        (lambda d: d["annotations"][2].update(id=17), "annotation id 17: duplicate annotation id"),
        (lambda d: d["images"][0].pop("height"), "image id 3: missing field 'height'"),
        (lambda d: d["annotations"][2].update(bbox="1,2,3,4"), "annotation id 19: field 'bbox' must be list"),
    ],
)
def test_bad_records_name_file_and_record(tmp_path, edit, message):
    data = json.loads(HAND_WRITTEN)
    edit(data)
    path = _write(tmp_path, json.dumps(data))
    with pytest.raises(DataFormatError) as err:
        read_coco_instances(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_malformed_json_names_line(tmp_path):
    path = _write(tmp_path, HAND_WRITTEN.replace('"iscrowd": 0,\n     "segmentation"', '"iscrowd": 0\n "segmentation"'))
    with pytest.raises(DataFormatError, match=r"instances.json: line 6 column \d+: invalid JSON"):
        read_coco_instances(path)


def test_missing_image_names_file_and_image(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataFormatError, match=r"instances.json: image id 3: image file .*000000000003.jpg not found"):
        read_coco_instances(_write(tmp_path, HAND_WRITTEN), image_root=tmp_path / "images")
    assert read_coco_instances(_write(tmp_path, HAND_WRITTEN), image_root=tmp_path / "images", check_images=False)


def test_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match=r"nope.json: file not found"):
        read_coco_instances(tmp_path / "nope.json")
