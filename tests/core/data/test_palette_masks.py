from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from uninext_core.data.errors import DataFormatError
from uninext_core.data.palette_masks import (
    davis_palette,
    label_map_to_masks,
    masks_to_label_map,
    read_palette_png,
    write_palette_png,
)


def test_davis_palette_first_entries():
    # The PASCAL VOC / DAVIS colour map: 0 black, 1 dark red, 2 dark green, 3 olive, 4 navy ... 255 (224, 224, 192).
    palette = davis_palette()
    assert palette[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert palette[255].tolist() == [224, 224, 192]


def test_reads_palette_png_written_by_pil(tmp_path):
    labels = np.array([[0, 1, 1], [2, 2, 0]], np.uint8)
    image = Image.fromarray(labels)
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
    image.save(tmp_path / "00000.png")
    assert np.array_equal(read_palette_png(tmp_path / "00000.png"), labels)


def test_write_read_round_trip_keeps_indices_and_palette(tmp_path):
    labels = np.zeros((4, 5), np.uint8)
    labels[1:3, 1:4] = 3
    labels[0, 0] = 255
    write_palette_png(tmp_path / "m.png", labels)
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "P"
        assert image.getpalette()[3 * 3:3 * 3 + 3] == [128, 128, 0]
    assert np.array_equal(read_palette_png(tmp_path / "m.png"), labels)


def test_masks_and_label_maps_convert_both_ways():
    masks = np.zeros((2, 3, 3), bool)
    masks[0, 0, :] = True
    masks[1, :, 0] = True  # overlaps mask 0 at (0, 0): the later mask wins
    label_map = masks_to_label_map(masks, [4, 9])
    assert label_map.tolist() == [[9, 4, 4], [9, 0, 0], [9, 0, 0]]
    back = label_map_to_masks(label_map, [4, 9, 7])
    assert back[0].sum() == 2 and back[1].sum() == 3 and not back[2].any()
    with pytest.raises(ValueError, match=r"object ids must be in 1..255"):
        masks_to_label_map(masks, [0, 1])


def test_wrong_size_rgb_and_missing_mask_name_the_file(tmp_path):
    write_palette_png(tmp_path / "m.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(DataFormatError, match=r"m.png: sequence bear frame 00000: mask is 4×5, the frame is 480×854"):
        read_palette_png(tmp_path / "m.png", record="sequence bear frame 00000", expected_hw=(480, 854))
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DataFormatError, match=r"rgb.png: expected a palette"):
        read_palette_png(tmp_path / "rgb.png")
    with pytest.raises(DataFormatError, match=r"gone.png: mask file not found"):
        read_palette_png(tmp_path / "gone.png")
