from __future__ import annotations

import copy
import json

import pytest

from uninext_core.data.cocovid import read_cocovid, write_cocovid
from uninext_core.data.errors import DataFormatError

# BDD100K box-tracking "cocofmt": frames out of order in the file on purpose, instance ids persist.
COCOVID = {
    "categories": [{"id": 1, "name": "pedestrian"}, {"id": 3, "name": "car"}],
    "videos": [{"id": 1, "name": "b1c66a42-6f7d68ca"}],
    "images": [
        {"id": 11, "video_id": 1, "frame_id": 1, "file_name": "b1c66a42-6f7d68ca/b1c66a42-6f7d68ca-0000002.jpg",
         "height": 720, "width": 1280},
        {"id": 10, "video_id": 1, "frame_id": 0, "file_name": "b1c66a42-6f7d68ca/b1c66a42-6f7d68ca-0000001.jpg",
         "height": 720, "width": 1280},
    ],
    "annotations": [
        {"id": 1, "image_id": 10, "category_id": 3, "instance_id": 5, "bbox": [100, 200, 50, 40], "area": 2000,
         "iscrowd": 0, "ignore": 0},
        {"id": 2, "image_id": 11, "category_id": 3, "instance_id": 5, "bbox": [104, 201, 50, 40], "area": 2000,
         "iscrowd": 0, "ignore": 0},
        {"id": 3, "image_id": 11, "category_id": 1, "instance_id": 9, "bbox": [10, 20, 5, 15], "area": 75,
         "iscrowd": 0, "ignore": 0},
    ],
}


def test_reads_hand_written_cocovid(tmp_path):
    path = tmp_path / "box_track_train_cocofmt.json"
    path.write_text(json.dumps(COCOVID))
    data = read_cocovid(path)
    (video,) = data.videos
    assert video.file_names[0].endswith("0000001.jpg") and (video.height, video.width) == (720, 1280)
    car, person = video.tracks
    assert (car.id, car.category_id, person.id, person.category_id) == (5, 3, 9, 1)
    assert car.boxes_xyxy_px == [(100.0, 200.0, 150.0, 240.0), (104.0, 201.0, 154.0, 241.0)]
    assert person.boxes_xyxy_px == [None, (10.0, 20.0, 15.0, 35.0)]


def test_write_then_read_is_identical(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps(COCOVID))
    data = read_cocovid(path)
    write_cocovid(data, tmp_path / "out.json")
    assert read_cocovid(tmp_path / "out.json") == data


@pytest.mark.parametrize(
    ("edit", "message"),
    [(lambda d: d["annotations"][1].update(category_id=1), "annotation id 2: instance 5 changes category from 3 to 1"),
     (lambda d: d["images"][0].update(frame_id=0), "frame_id 0 repeats in video 1"),
     (lambda d: d["images"][0].update(height=360), "image id 11: size 360×1280 differs from the video's 720×1280"),
     (lambda d: d["annotations"][2].update(image_id=10, instance_id=5, category_id=3),
      "annotation id 3: instance 5 appears twice on image 10"),
     (lambda d: d["annotations"][0].pop("instance_id"), "annotation id 1: missing field 'instance_id'")],
)
def test_bad_records_name_file_and_record(tmp_path, edit, message):
    data = copy.deepcopy(COCOVID)
    edit(data)
    path = tmp_path / "in.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError) as err:
        read_cocovid(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)
