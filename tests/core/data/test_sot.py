from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from uninext_core.data.errors import DataFormatError
from uninext_core.data.sot import list_sot_sequences, read_sot_sequence, write_sot_sequence


def _frames(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(1, n + 1):
        (folder / f"{k:08d}.jpg").write_bytes(b"")


def _lasot(root: Path) -> Path:
    seq = root / "airplane" / "airplane-1"
    _frames(seq / "img", 3)
    (seq / "groundtruth.txt").write_text("367,101,41,16\n366,101,42,16\n0,0,0,0\n")
    (seq / "full_occlusion.txt").write_text("0,0,1")
    (seq / "out_of_view.txt").write_text("0,0,0")
    (seq / "nlp.txt").write_text("white airplane landing on the ground\n")
    return seq


def _got10k(root: Path) -> Path:
    seq = root / "train" / "GOT-10k_Train_000001"
    _frames(seq, 3)
    (seq / "groundtruth.txt").write_text("347.0000,443.0000,429.0000,272.0000\n"
                                         "388.0000,448.0000,388.0000,260.0000\n"
                                         "425.0000,460.0000,349.0000,240.0000\n")
    (seq / "absence.label").write_text("0\n1\n0\n")
    (seq / "cover.label").write_text("8\n0\n7\n")
    (seq / "meta_info.ini").write_text("[METAINFO]\nurl: https://youtu.be/x\nbegin: 00:00:00\n"
                                       "object_class: ichneumon\nmotion_class: walking\nmajor_class: viverrine\n"
                                       "root_class: animal\nmotion_adverb: slowly\nresolution: (1920, 1080)\n")
    (root / "train" / "list.txt").write_text("GOT-10k_Train_000001\n")
    return seq


def test_reads_hand_written_lasot(tmp_path):
    seq = read_sot_sequence(_lasot(tmp_path))
    assert (seq.name, seq.category) == ("airplane-1", "airplane")
    assert seq.expression == "white airplane landing on the ground"
    assert [p.name for p in seq.frame_paths] == ["00000001.jpg", "00000002.jpg", "00000003.jpg"]
    assert seq.boxes_xyxy_px[0].tolist() == [367.0, 101.0, 408.0, 117.0]
    assert seq.visible.tolist() == [True, True, False]
    assert list_sot_sequences(tmp_path, layout="lasot") == [tmp_path / "airplane" / "airplane-1"]


def test_reads_hand_written_got10k(tmp_path):
    seq = read_sot_sequence(_got10k(tmp_path))
    assert (seq.name, seq.category) == ("GOT-10k_Train_000001", "ichneumon")
    assert seq.boxes_xyxy_px[1].tolist() == [388.0, 448.0, 776.0, 708.0]
    assert seq.visible.tolist() == [True, False, True]
    assert list_sot_sequences(tmp_path / "train", layout="got10k") == [tmp_path / "train" / "GOT-10k_Train_000001"]


@pytest.mark.parametrize("layout", ["lasot", "got10k"])
def test_write_then_read_is_identical(tmp_path, layout):
    seq = read_sot_sequence(_lasot(tmp_path / "in") if layout == "lasot" else _got10k(tmp_path / "in"))
    out = tmp_path / "out" / seq.category / seq.name
    image_dir = out / "img" if layout == "lasot" else out
    _frames(image_dir, 3)
    write_sot_sequence(seq, out, layout=layout)
    again = read_sot_sequence(out)
    assert np.array_equal(again.boxes_xyxy_px, seq.boxes_xyxy_px)
    assert np.array_equal(again.visible, seq.visible)
    assert np.array_equal(again.out_of_view, seq.out_of_view)
    assert (again.name, again.category, again.expression) == (seq.name, seq.category, seq.expression)


def test_bad_groundtruth_names_file_and_line(tmp_path):
    seq = _lasot(tmp_path)
    (seq / "groundtruth.txt").write_text("367,101,41,16\n366,101,42\n0,0,0,0\n")
    with pytest.raises(DataFormatError, match=r"groundtruth.txt: line 2: expected 4 numbers x,y,w,h"):
        read_sot_sequence(seq)
    (seq / "groundtruth.txt").write_text("367,101,41,16\n")
    with pytest.raises(DataFormatError, match=r"groundtruth.txt: 1 boxes for 3 frames"):
        read_sot_sequence(seq)
    (seq / "groundtruth.txt").write_text("1,1,1,1\n1,1,1,1\n1,1,1,1\n")
    (seq / "out_of_view.txt").write_text("0,0")
    with pytest.raises(DataFormatError, match=r"out_of_view.txt: expected 3 flags of 0/1"):
        read_sot_sequence(seq)


def test_missing_frames_and_list_entries(tmp_path):
    (tmp_path / "empty" / "img").mkdir(parents=True)
    with pytest.raises(DataFormatError, match=r"img: no frames"):
        read_sot_sequence(tmp_path / "empty")
    _got10k(tmp_path)
    (tmp_path / "train" / "list.txt").write_text("GOT-10k_Train_000001\nGOT-10k_Train_000002\n")
    with pytest.raises(DataFormatError, match=r"list.txt: sequence GOT-10k_Train_000002: folder .* not found"):
        list_sot_sequences(tmp_path / "train", layout="got10k")
