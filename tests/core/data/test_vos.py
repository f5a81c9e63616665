from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uninext_core.data.errors import DataFormatError
from uninext_core.data.vos import load_label_map, read_davis, read_youtube_vos


def _jpeg(path: Path, hw: tuple[int, int] = (6, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((*hw, 3), np.uint8)).save(path)


def write_palette_png(path: Path, labels: np.ndarray) -> None:
    """A palette PNG made with PIL directly (not our writer), as DAVIS ships them: index 1 red, 2 green."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels).convert("L")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (253 * 3))
    image.save(path)


def _davis(root: Path) -> None:
    for t in range(3):
        _jpeg(root / "JPEGImages" / "480p" / "bear" / f"{t:05d}.jpg")
        labels = np.zeros((6, 8), np.uint8)
        labels[1:3, 1:3] = 1
        if t >= 1:
            labels[4:6, 5:8] = 2  # object 2 appears on frame 1
        write_palette_png(root / "Annotations" / "480p" / "bear" / f"{t:05d}.png", labels)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "train.txt").write_text("bear\n")


def test_reads_hand_made_davis_sequence(tmp_path):
    _davis(tmp_path)
    (seq,) = read_davis(tmp_path)
    assert seq.name == "bear" and len(seq.frame_paths) == 3 and sorted(seq.mask_paths) == [0, 1, 2]
    assert seq.objects == {1: "", 2: ""} and seq.first_frames == {1: 0, 2: 1}
    assert int(load_label_map(seq, 2)[5, 6]) == 2


def test_davis_mask_of_wrong_size_names_png_and_frame(tmp_path):
    _davis(tmp_path)
    write_palette_png(tmp_path / "Annotations" / "480p" / "bear" / "00001.png", np.zeros((5, 8), np.uint8))
    with pytest.raises(DataFormatError, match=r"00001.png: sequence bear frame 00001: mask is 5×8, the frame is 6×8"):
        read_davis(tmp_path)


def test_davis_stray_mask_and_missing_split(tmp_path):
    _davis(tmp_path)
    write_palette_png(tmp_path / "Annotations" / "480p" / "bear" / "00009.png", np.zeros((6, 8), np.uint8))
    with pytest.raises(DataFormatError, match=r"00009.png: sequence bear: mask without a matching JPEG frame"):
        read_davis(tmp_path)
    with pytest.raises(DataFormatError, match=r"val.txt: file not found"):
        read_davis(tmp_path, split="val")


def test_reads_hand_made_youtube_vos_meta(tmp_path):
    for stem in ("00000", "00005", "00010"):
        _jpeg(tmp_path / "train" / "JPEGImages" / "003234408d" / f"{stem}.jpg")
    write_palette_png(tmp_path / "train" / "Annotations" / "003234408d" / "00005.png", np.ones((6, 8), np.uint8))
    meta = {"videos": {"003234408d": {"objects": {"1": {"category": "penguin", "frames": ["00005", "00010"]}}}}}
    (tmp_path / "train" / "meta.json").write_text(json.dumps(meta))
    (seq,) = read_youtube_vos(tmp_path)
    assert seq.objects == {1: "penguin"} and seq.first_frames == {1: 1} and list(seq.mask_paths) == [1]
    meta["videos"]["003234408d"]["objects"]["1"]["frames"] = ["00015"]
    (tmp_path / "train" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=r"meta.json: video 003234408d object 1: frame '00015' has no JPEG"):
        read_youtube_vos(tmp_path)
