from __future__ import annotations

import numpy as np
import pytest

from uninext_core.data.errors import DataFormatError
from uninext_core.data.segmentation import (
    PolygonMask,
    RleMask,
    compressed_counts,
    mask_to_polygons,
    segmentation_from_coco,
)
from uninext_core.masks import encode_mask


def test_rle_round_trip_area_and_box():
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:5] = True
    rle = encode_mask(mask)
    assert np.array_equal(rle.decode(), mask)
    assert rle.area() == 6
    assert rle.box_xyxy_px() == (2.0, 1.0, 5.0, 3.0)


def test_uncompressed_rle_is_column_major():
    # 5×6 image; column 1 rows 2-3 and column 2 rows 2-3 are set: runs 7 zeros, 2 ones, 3 zeros, 2 ones, 16 zeros.
    seg = segmentation_from_coco({"size": [5, 6], "counts": [7, 2, 3, 2, 16]}, height=5, width=6, path="a.json",
                                 record="annotation id 1")
    expected = np.zeros((5, 6), bool)
    expected[2:4, 1:3] = True
    assert isinstance(seg, RleMask)
    assert np.array_equal(seg.decode(), expected)


def test_polygon_rasterises_a_rectangle():
    seg = segmentation_from_coco([[1.0, 1.0, 4.0, 1.0, 4.0, 3.0, 1.0, 3.0]], height=5, width=6, path="a.json",
                                 record="annotation id 1")
    assert isinstance(seg, PolygonMask)
    assert seg.area() == 6  # 3 × 2 pixels whose centres lie inside
    assert seg.to_coco() == [[1.0, 1.0, 4.0, 1.0, 4.0, 3.0, 1.0, 3.0]]


def test_mask_to_polygons_none_for_holes_and_close_otherwise():
    ring = np.zeros((20, 20), bool)
    ring[4:16, 4:16] = True
    ring[8:12, 8:12] = False
    assert mask_to_polygons(ring) is None
    square = np.zeros((20, 20), bool)
    square[4:16, 4:16] = True
    poly = mask_to_polygons(square)
    decoded = poly.decode()
    assert (decoded & square).sum() / (decoded | square).sum() > 0.8


def test_rle_of_wrong_size_names_file_record_and_image():
    with pytest.raises(DataFormatError) as err:
        segmentation_from_coco({"size": [10, 20], "counts": "abc"}, height=480, width=640, path="instances_train.json",
                               record="annotation id 17", image_label="image 3")
    assert str(err.value) == ("instances_train.json: annotation id 17: segmentation RLE size [10, 20] does not match "
                              "image 3 (480×640)")


@pytest.mark.parametrize("bad", [[[1.0, 2.0, 3.0]], [], {"size": [2, 2], "counts": [1, 1]}, "x",
                                 {"size": [2, 2], "counts": 5}])
def test_malformed_segmentations_raise(bad):
    with pytest.raises(DataFormatError, match=r"a.json: annotation id 4"):
        segmentation_from_coco(bad, height=2, width=2, path="a.json", record="annotation id 4")


def test_compressed_counts_match_the_mask_runs():
    rng = np.random.default_rng(0)
    for _ in range(50):
        mask = rng.random((7, 9)) < rng.random()
        flat = mask.T.reshape(-1)  # COCO runs are column-major and start with background
        change = np.flatnonzero(np.diff(flat.astype(int))) + 1
        bounds = [0, *change.tolist(), flat.size]
        runs = np.diff(bounds).tolist()
        expected = runs if not flat[0] else [0, *runs]
        assert compressed_counts(encode_mask(mask).counts) == expected


@pytest.mark.parametrize("counts", ["", "0", "!!", "zz", "PP"])
def test_truncated_or_garbled_rle_strings_are_refused(counts):
    with pytest.raises(DataFormatError, match=r"a.json: annotation id 4: RLE counts string"):
        segmentation_from_coco({"size": [4, 5], "counts": counts}, height=4, width=5, path="a.json",
                               record="annotation id 4")
