from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from uninext_core.data.errors import DataFormatError
from uninext_core.data.refcoco import read_refcoco, write_refcoco

INSTANCES = {
    "images": [{"id": 581857, "file_name": "COCO_train2014_000000581857.jpg", "height": 640, "width": 427}],
    "annotations": [
        {"id": 1719310, "image_id": 581857, "category_id": 1, "bbox": [103.93, 299.99, 134.22, 177.42],
         "area": 14000.0, "iscrowd": 0, "segmentation": [[110.0, 300.0, 230.0, 300.0, 230.0, 470.0, 110.0, 470.0]]},
        {"id": 1719311, "image_id": 581857, "category_id": 1, "bbox": [10.0, 10.0, 50.0, 80.0],
         "area": 4000.0, "iscrowd": 0},
    ],
    "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
}
# A ref as the `refer` toolkit's refs(unc).p stores it.
REF = {
    "sent_ids": [0, 1], "file_name": "COCO_train2014_000000581857_16.jpg", "ann_id": 1719310, "ref_id": 0,
    "image_id": 581857, "split": "train", "category_id": 1,
    "sentences": [
        {"tokens": ["the", "lady", "with", "the", "blue", "shirt"], "raw": "THE LADY WITH THE BLUE SHIRT",
         "sent_id": 0, "sent": "the lady with the blue shirt"},
        {"tokens": ["lady", "on", "left"], "raw": "lady on left", "sent_id": 1, "sent": "lady on left"},
    ],
}


def _files(tmp_path: Path, refs: list, *, as_pickle: bool) -> tuple[Path, Path]:
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps(INSTANCES))
    refs_path = tmp_path / ("refs(unc).p" if as_pickle else "refs.json")
    if as_pickle:
        refs_path.write_bytes(pickle.dumps(refs, protocol=2))
    else:
        refs_path.write_text(json.dumps(refs))
    return refs_path, instances


@pytest.mark.parametrize("as_pickle", [True, False])
def test_reads_hand_written_refs(tmp_path, as_pickle):
    data = read_refcoco(*_files(tmp_path, [REF], as_pickle=as_pickle))
    (ref,) = data.refs
    assert (ref.ref_id, ref.image_id, ref.ann_id, ref.category_id, ref.split) == (0, 581857, 1719310, 1, "train")
    assert ref.sentences == ["THE LADY WITH THE BLUE SHIRT", "lady on left"]
    assert len(data.detection.images[0].annotations) == 2


def test_pickle_with_objects_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    refs_path = tmp_path / "refs(unc).p"
    refs_path.write_bytes(pickle.dumps([Evil()]))
    (tmp_path / "instances.json").write_text(json.dumps(INSTANCES))
    with pytest.raises(DataFormatError, match=r"refs\(unc\).p: not a plain-data refs pickle"):
        read_refcoco(refs_path, tmp_path / "instances.json")


@pytest.mark.parametrize(
    ("change", "message"),
    [({"ann_id": 5}, "ref_id 0: ann_id 5 is not in instances.json"),
     ({"image_id": 1}, "ref_id 0: image_id 1 but annotation 1719310 is on image 581857"),
     ({"category_id": 2}, "ref_id 0: category_id 2 but annotation 1719310 has 1"),
     ({"sentences": []}, "ref_id 0: no sentences"),
     ({"sentences": [{"raw": " "}]}, "ref_id 0 sentence 0: needs a non-empty 'raw' or 'sent'")],
)
def test_bad_refs_name_file_and_ref(tmp_path, change, message):
    refs_path, instances = _files(tmp_path, [{**REF, **change}], as_pickle=False)
    with pytest.raises(DataFormatError, match=r"refs.json: " + message.replace("(", r"\(").replace(")", r"\)")):
        read_refcoco(refs_path, instances)


def test_write_then_read_is_identical(tmp_path):
    data = read_refcoco(*_files(tmp_path, [REF], as_pickle=False))
    write_refcoco(data, tmp_path / "out" / "refs.json", tmp_path / "out" / "instances.json")
    again = read_refcoco(tmp_path / "out" / "refs.json", tmp_path / "out" / "instances.json")
    assert again == data
    stored = json.loads((tmp_path / "out" / "refs.json").read_text())[0]["sentences"][0]
    assert stored["sent"] == "the lady with the blue shirt" and stored["tokens"][1] == "lady"
