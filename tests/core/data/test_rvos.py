from __future__ import annotations

import json

import pytest

from uninext_core.data.errors import DataFormatError
from uninext_core.data.records import Category, VideoDataset, VideoExpression, VideoRecord, VideoTrack
from uninext_core.data.rvos import attach_expressions, read_rvos_expressions, write_rvos_expressions

META = {"videos": {"003234408d": {
    "expressions": {"0": {"exp": "a penguin is on the left in the front with many others on the hill", "obj_id": "1"},
                    "1": {"exp": "a penguin standing on the right", "obj_id": "2"}},
    "frames": ["00000", "00005"]}}}


def _dataset() -> VideoDataset:
    tracks = [VideoTrack(k, 1, [None, None], [None, None]) for k in (1, 2)]
    return VideoDataset([Category(1, "penguin")], [VideoRecord(1, "003234408d", ["003234408d/00000.jpg",
                                                                              "003234408d/00005.jpg"], 4, 4, tracks)])


def test_reads_hand_written_meta_expressions(tmp_path):
    path = tmp_path / "meta_expressions.json"
    path.write_text(json.dumps(META))
    expressions = read_rvos_expressions(path)
    assert expressions == [
        VideoExpression("003234408d", "0", "a penguin is on the left in the front with many others on the hill", 1),
        VideoExpression("003234408d", "1", "a penguin standing on the right", 2),
    ]
    dataset = _dataset()
    attach_expressions(dataset, expressions, source=path)
    write_rvos_expressions(dataset, tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == META


def test_unknown_track_and_bad_id_name_the_expression(tmp_path):
    path = tmp_path / "meta_expressions.json"
    with pytest.raises(DataFormatError, match=r"meta_expressions.json: video 003234408d expression 1: obj_id 2 is not"):
        attach_expressions(VideoDataset([Category(1, "penguin")], [VideoRecord(1, "003234408d", ["a"], 4, 4, [
            VideoTrack(1, 1, [None], [None])])]), read_rvos_expressions(_write(path, META)), source=path)
    bad = json.loads(json.dumps(META))
    bad["videos"]["003234408d"]["expressions"]["0"]["obj_id"] = "one"
    with pytest.raises(DataFormatError, match=r"video 003234408d expression 0: obj_id must be an integer"):
        read_rvos_expressions(_write(path, bad))


def _write(path, obj):
    path.write_text(json.dumps(obj))
    return path
