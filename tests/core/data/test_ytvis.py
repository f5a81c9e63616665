from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from uninext_core.data.errors import DataFormatError
from uninext_core.data.ytvis import read_ytvis, write_ytvis

# YouTube-VIS 2019 style: uncompressed RLE, null on frames where the object is absent.
YTVIS = {
    "info": {}, "licenses": [],
    "videos": [{"id": 1, "width": 4, "height": 3, "length": 2, "date_captured": "", "license": 1,
                "file_names": ["0043f083b5/00000.jpg", "0043f083b5/00005.jpg"], "flickr_url": "", "coco_url": ""}],
    "annotations": [{"id": 7, "video_id": 1, "category_id": 26, "iscrowd": 0, "height": 3, "width": 4, "length": 1,
                     "segmentations": [{"size": [3, 4], "counts": [4, 2, 6]}, None],
                     "bboxes": [[1.0, 1.0, 1.0, 2.0], None], "areas": [2.0, None]}],
    "categories": [{"supercategory": "object", "id": 26, "name": "person"}],
}


def test_reads_hand_written_ytvis(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(YTVIS))
    data = read_ytvis(path)
    (video,) = data.videos
    assert (video.id, video.name, video.height, video.width) == (1, "0043f083b5", 3, 4)
    (track,) = video.tracks
    assert (track.id, track.category_id) == (7, 26)
    assert track.boxes_xyxy_px == [(1.0, 1.0, 2.0, 3.0), None]
    expected = np.zeros((3, 4), bool)
    expected[1:3, 1] = True  # column-major runs: 4 off, 2 on, 6 off
    assert np.array_equal(track.segmentations[0].decode(), expected)
    assert track.segmentations[1] is None


def test_write_then_read_is_identical(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(YTVIS))
    data = read_ytvis(path)
    write_ytvis(data, tmp_path / "again.json")
    assert read_ytvis(tmp_path / "again.json") == data


@pytest.mark.parametrize(
    ("edit", "message"),
    [(lambda d: d["annotations"][0].update(bboxes=[None]), "annotation id 7: segmentations and bboxes need one entry"),
     (lambda d: d["annotations"][0]["segmentations"][0].update(size=[6, 8]),
      "annotation id 7 frame 0: segmentation RLE size [6, 8] does not match video 1 (3×4)"),
     (lambda d: d["videos"][0].update(length=3), "video id 1: length 3 but 2 file_names"),
     (lambda d: d.update(categories=[]), "categories: empty category list"),
     (lambda d: d["annotations"][0].update(video_id=2), "annotation id 7: video_id 2 is not among the videos")],
)
def test_bad_records_name_file_and_record(tmp_path, edit, message):
    data = copy.deepcopy(YTVIS)
    edit(data)
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError) as err:
        read_ytvis(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_missing_frame_file(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps(YTVIS))
    with pytest.raises(DataFormatError, match=r"train.json: video id 1: frame file .*00000.jpg not found"):
        read_ytvis(path, image_root=tmp_path)
