from __future__ import annotations

import numpy as np
import pytest

from uninext_core.eval.davis import (
    boundary_f_measure,
    boundary_map,
    boundary_tolerance_px,
    davis_statistics,
    evaluate_davis_sequence,
    objects_from_label_maps,
    region_similarity,
    summarize_davis,
)


def _square(size: int, rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[rows, cols] = True
    return mask


def test_boundary_map_is_the_ring_offset_towards_the_origin():
    boundary = boundary_map(_square(6, slice(2, 4), slice(2, 4)))
    expected = np.zeros((6, 6), dtype=bool)
    expected[1:4, 1:4] = True
    expected[2, 2] = False  # the only pixel whose east, south and south-east neighbours are all inside
    np.testing.assert_array_equal(boundary, expected)


def test_boundary_map_edge_rows_and_columns():
    # Last column compares south only, last row east only, the bottom-right pixel never counts.
    assert not boundary_map(np.ones((3, 3), dtype=bool)).any()  # a full frame has no boundary
    boundary = boundary_map(_square(3, slice(0, 3), slice(2, 3)))  # right column set
    np.testing.assert_array_equal(boundary, [[0, 1, 0], [0, 1, 0], [0, 1, 0]])


def test_f_measure_of_a_square_shifted_by_two_pixels():
    # 8×8 image: tolerance ceil(0.008 · sqrt(128)) = 1 px (a plus-shaped disk). The 2×2 square shifted two columns:
    # 5 of the 8 predicted boundary pixels lie within 1 px of the true boundary and vice versa → P = R = F = 5/8.
    gt = _square(8, slice(2, 4), slice(2, 4))
    pred = _square(8, slice(2, 4), slice(4, 6))
    assert boundary_tolerance_px(8, 8) == 1
    assert float(boundary_f_measure(gt, pred)) == pytest.approx(5 / 8)
    assert float(region_similarity(gt, pred)) == 0.0
    # With a 2 px tolerance every boundary pixel finds a partner.
    assert float(boundary_f_measure(gt, pred, bound_th=2)) == pytest.approx(1.0)


def test_empty_mask_conventions():
    empty = np.zeros((5, 5), dtype=bool)
    some = _square(5, slice(1, 3), slice(1, 3))
    assert float(region_similarity(empty, empty)) == 1.0
    assert float(boundary_f_measure(empty, empty)) == 1.0
    assert float(boundary_f_measure(some, empty)) == 0.0  # no predicted boundary: P 1, R 0
    assert float(boundary_f_measure(empty, some)) == 0.0  # no true boundary: P 0, R 1


def test_statistics_mean_recall_decay_by_hand():
    values = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
    # Bin edges round(linspace(1, 8, 5)) - 1 = [0, 2, 4, 5, 7]: first bin values[0:3], last bin values[5:8].
    stats = davis_statistics(values)
    assert stats.mean == pytest.approx(0.65)
    assert stats.recall == pytest.approx(5 / 8)  # 0.5 itself is not above 0.5
    assert stats.decay == pytest.approx(0.9 - 0.4)


def test_sequence_protocol_skips_first_and_last_frames_and_pads_missing_objects():
    labels = np.zeros((4, 8, 8), dtype=np.int64)
    labels[:, 1:4, 1:4] = 1
    labels[:, 5:7, 5:7] = 2
    gt = objects_from_label_maps(labels, num_objects=2)
    assert gt.shape == (2, 4, 8, 8)
    pred = gt[:1].copy()
    pred[0, 0] = False  # a wrong first frame does not count
    pred[0, 3] = False  # nor does a wrong last frame
    results = evaluate_davis_sequence(gt_masks=gt, pred_masks=pred)
    np.testing.assert_allclose(results[0].j_per_frame, [1.0, 1.0])
    np.testing.assert_allclose(results[1].j_per_frame, [0.0, 0.0])  # object 2 missing: empty prediction
    summary = summarize_davis(results)
    assert summary.j_mean == pytest.approx(0.5)
    assert summary.f_mean == pytest.approx(0.5)
    assert summary.jf_mean == pytest.approx(0.5)
    assert summary.j_decay == pytest.approx(0.0)


def test_davis_validates_inputs():
    with pytest.raises(TypeError, match="bool"):
        region_similarity(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="more predicted objects"):
        evaluate_davis_sequence(gt_masks=np.zeros((1, 3, 4, 4), bool), pred_masks=np.zeros((2, 3, 4, 4), bool))
    with pytest.raises(ValueError, match="T ≥ 3"):
        evaluate_davis_sequence(gt_masks=np.zeros((1, 2, 4, 4), bool), pred_masks=np.zeros((1, 2, 4, 4), bool))
