"""Phrase-grounding relabelling of synthetic detection files: every object named by its colour and kind."""

from __future__ import annotations

import json

import numpy as np

from uninext_core.data.coco import read_coco_instances
from uninext_core.data.synthetic.export import export_world
from uninext_core.data.synthetic.options import ExportOptions
from uninext_core.data.synthetic.phrases import PHRASE_CATEGORIES, main, phrase_category_id
from uninext_core.data.synthetic.scene import COLOURS, KINDS


def test_eighty_distinct_phrases_with_their_kind_as_supercategory():
    names = [c.name for c in PHRASE_CATEGORIES]
    assert len(set(names)) == len(COLOURS) * len(KINDS) == 80
    assert [c.id for c in PHRASE_CATEGORIES] == list(range(1, 81))
    assert all(c.name.endswith(" " + c.supercategory) for c in PHRASE_CATEGORIES)
    assert PHRASE_CATEGORIES[phrase_category_id({"colour": "purple", "kind": "heart"}) - 1].name == "purple heart"


def test_converted_file_keeps_images_boxes_masks_and_ids_and_names_each_object(tmp_path):
    source = export_world(ExportOptions(out=tmp_path / "det", task="detection", count=3, size=128,
                                        difficulty="hard")).files[0]
    out = tmp_path / "phrases.json"
    assert main(["--instances", str(source), "--out", str(out)]) == 0
    before = read_coco_instances(source, check_images=False)
    after = read_coco_instances(out, image_root=tmp_path / "det" / "images")
    names = {c.id: c.name for c in after.categories}
    assert [i.file_name for i in after.images] == [i.file_name for i in before.images]
    objects = 0
    for old, new in zip(before.images, after.images, strict=True):
        for a, b in zip(old.annotations, new.annotations, strict=True):
            assert (b.id, b.box_xyxy_px, b.attributes) == (a.id, a.box_xyxy_px, a.attributes)
            assert np.array_equal(b.segmentation.decode(), a.segmentation.decode())
            assert names[b.category_id] == f"{a.attributes['colour']} {a.attributes['kind']}"
            objects += 1
    assert objects > 3


def test_file_without_synthetic_attributes_is_refused_with_the_annotation_named(tmp_path, capsys):
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "height": 10, "width": 10}],
            "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 3, 3], "area": 9,
                             "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person"}]}
    source = tmp_path / "instances.json"
    source.write_text(json.dumps(coco))
    assert main(["--instances", str(source), "--out", str(tmp_path / "out.json")]) == 2
    error = capsys.readouterr().err
    assert "annotation 7" in error and "colour" in error
    assert not (tmp_path / "out.json").exists()
