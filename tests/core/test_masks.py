"""uninext_core.masks: RLE identical to pycocotools' own encoder, and lossless."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from uninext_core.masks import Rle, decode_rle, encode_mask, encode_masks


def _reference_counts(mask: np.ndarray) -> str:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


@pytest.mark.parametrize("seed", range(5))
def test_encoding_equals_pycocotools_on_random_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(200):
        height, width = rng.integers(1, 30, size=2)
        mask = rng.random((height, width)) < rng.random()
        rle = encode_mask(mask)
        assert (rle.height, rle.width) == (height, width)
        assert rle.counts == _reference_counts(mask)
        assert np.array_equal(decode_rle(rle), mask)


@pytest.mark.parametrize("fill", ["empty", "full", "first_pixel", "last_pixel", "bottom_row", "top_row"])
def test_edge_cases(fill: str) -> None:
    mask = np.zeros((6, 5), dtype=bool)
    if fill == "full":
        mask[:] = True
    elif fill == "first_pixel":
        mask[0, 0] = True
    elif fill == "last_pixel":
        mask[-1, -1] = True
    elif fill == "bottom_row":  # runs touch the column boundary: bottom of one column, top of the next stays zero
        mask[-1, :] = True
    elif fill == "top_row":
        mask[0, :] = True
    rle = encode_mask(mask)
    assert rle.counts == _reference_counts(mask)
    assert np.array_equal(decode_rle(rle), mask)


def test_runs_crossing_columns_merge_like_pycocotools() -> None:
    mask = np.zeros((4, 3), dtype=bool)
    mask[2:, 0] = True  # bottom of column 0 ...
    mask[:2, 1] = True  # ... continues at the top of column 1: one run in column-major order
    rle = encode_mask(mask)
    assert rle.counts == _reference_counts(mask)
    assert decode_rle(rle).sum() == 4


def test_batch_and_hand_computed_counts() -> None:
    mask = np.array([[0, 1], [1, 1], [0, 0]], dtype=bool)  # column-major: 0 1 0 | 1 1 0 -> runs 1,1,1,2,1
    assert mask_utils.frPyObjects({"counts": [1, 1, 1, 2, 1], "size": [3, 2]}, 3, 2)["counts"].decode() == \
        encode_mask(mask).counts
    both = encode_masks(np.stack([mask, ~mask]))
    assert [decode_rle(r).tolist() for r in both] == [mask.tolist(), (~mask).tolist()]


def test_empty_counts_decode_to_empty_mask_and_bad_shapes_are_rejected() -> None:
    assert not decode_rle(Rle(3, 4, "")).any()
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        encode_mask(np.zeros((2, 3, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        encode_masks(np.zeros((2, 3), dtype=bool))
