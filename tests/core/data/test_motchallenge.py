from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from uninext_core.data.errors import DataFormatError
from uninext_core.data.motchallenge import read_mot_sequence, write_mot_rows, write_mot_sequence

SEQINFO = """[Sequence]
name=MOT17-02-FRCNN
imDir=img1
frameRate=30
seqLength=3
imWidth=1920
imHeight=1080
imExt=.jpg
"""
# MOT17 gt.txt: frame, id, bb_left, bb_top, bb_width, bb_height, conf (consider), class, visibility.
GT = """1,1,912,484,97,109,0,7,1
2,1,912,484,97,109,0,7,1
1,2,1338,418,167,379,1,1,0.86555
3,2,1342,417,168,380,1,1,0.8
"""


def _sequence(tmp_path: Path, gt: str = GT, *, frames: int = 3) -> Path:
    folder = tmp_path / "MOT17-02-FRCNN"
    (folder / "gt").mkdir(parents=True)
    (folder / "img1").mkdir()
    for k in range(1, frames + 1):
        (folder / "img1" / f"{k:06d}.jpg").write_bytes(b"")
    (folder / "seqinfo.ini").write_text(SEQINFO)
    (folder / "gt" / "gt.txt").write_text(gt)
    return folder


def test_reads_hand_written_sequence(tmp_path):
    seq = read_mot_sequence(_sequence(tmp_path))
    assert (seq.name, seq.frame_rate, seq.length, seq.width, seq.height) == ("MOT17-02-FRCNN", 30.0, 3, 1920, 1080)
    assert seq.frames.tolist() == [1, 2, 1, 3]
    assert seq.track_ids.tolist() == [1, 1, 2, 2]
    # 1-based MOTChallenge pixels become 0-based: bb_left 912 → x1 911, x2 = 911 + 97.
    assert seq.boxes_xyxy_px[0].tolist() == [911.0, 483.0, 1008.0, 592.0]
    assert seq.consider.tolist() == [False, False, True, True]
    assert seq.class_ids.tolist() == [7, 7, 1, 1]
    assert seq.visibility[2] == pytest.approx(0.86555)
    assert seq.frame_path(3).name == "000003.jpg"


def test_write_then_read_is_identical(tmp_path):
    seq = read_mot_sequence(_sequence(tmp_path))
    seq.folder = tmp_path / "copy"
    write_mot_sequence(seq)
    for k in range(1, 4):
        (seq.folder / "img1").mkdir(exist_ok=True)
        (seq.folder / "img1" / f"{k:06d}.jpg").write_bytes(b"")
    again = read_mot_sequence(seq.folder)
    for name in ("frames", "track_ids", "boxes_xyxy_px", "consider", "class_ids", "visibility"):
        assert np.array_equal(getattr(again, name), getattr(seq, name)), name
    assert (seq.folder / "gt" / "gt.txt").read_text() == GT


def test_tracker_results_use_placeholders(tmp_path):
    write_mot_rows(tmp_path / "res.txt", frames=np.array([4]), track_ids=np.array([7]),
                   boxes_xyxy_px=np.array([[9.0, 19.0, 19.5, 39.0]]), confidences=np.array([0.5]))
    assert (tmp_path / "res.txt").read_text() == "4,7,10,20,10.5,20,0.5,-1,-1,-1\n"


@pytest.mark.parametrize(
    ("gt", "message"),
    [("1,1,912,484,97\n", "gt.txt: line 1: expected ≥ 7 comma-separated columns, got 5"),
     ("1,1,912,484,97,109,0,7,1\n4,1,9,4,9,1,1,1,1\n", "gt.txt: line 2: frame 4 outside 1..3"),
     ("1,1,a,484,97,109,0,7,1\n", "gt.txt: line 1: non-numeric column"),
     ("1,1,912,484,-97,109,0,7,1\n", "gt.txt: line 1: negative box size"),
     (GT + "1,2,1,1,1,1,1,1,1\n", "gt.txt: line 5: id 2 appears twice in frame 1")],
)
def test_bad_lines_name_file_and_line(tmp_path, gt, message):
    with pytest.raises(DataFormatError, match=message):
        read_mot_sequence(_sequence(tmp_path, gt))


def test_missing_frame_and_seqinfo(tmp_path):
    folder = _sequence(tmp_path, frames=2)
    with pytest.raises(DataFormatError, match=r"seqinfo.ini: frame 3: image file .*000003.jpg not found"):
        read_mot_sequence(folder)
    (folder / "seqinfo.ini").write_text(SEQINFO.replace("seqLength=3\n", ""))
    with pytest.raises(DataFormatError, match=r"seqinfo.ini: \[Sequence\]: missing key 'seqLength'"):
        read_mot_sequence(folder)
