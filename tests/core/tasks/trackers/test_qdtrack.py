from __future__ import annotations

import numpy as np
import pytest

from uninext_core.tasks.trackers import (
    FrameDetections,
    QuasiDenseTracker,
    QuasiDenseTrackerConfig,
    build_quasi_dense_tracker,
)
from uninext_core.tasks.trackers.similarity import bisoftmax_similarity

DIM = 8


def _unit(k: int, scale: float = 3.0) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[k] = scale
    return vector


def _frame(objects: list[tuple[list[float], float, np.ndarray]], labels: list[int] | None = None) -> FrameDetections:
    """objects: (box_xyxy, score, embedding) per detection."""
    if not objects:
        return FrameDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64),
                               np.zeros((0, DIM), np.float32))
    return FrameDetections(
        boxes_xyxy=np.array([o[0] for o in objects], dtype=np.float32),
        scores=np.array([o[1] for o in objects], dtype=np.float32),
        labels=np.array(labels if labels is not None else [0] * len(objects), dtype=np.int64),
        embeddings=np.stack([o[2] for o in objects]).astype(np.float32),
    )


def _ids_by_index(tracked) -> dict[int, int]:
    return dict(zip(tracked.indices.tolist(), tracked.track_ids.tolist(), strict=True))


BOX = [10.0, 10.0, 50.0, 50.0]
FAR_BOX = [150.0, 150.0, 190.0, 190.0]


def test_bisoftmax_hand_computed():
    # One detection, two memories with logits 0 and ln 3: row softmax (1/4, 3/4), column softmax (1, 1).
    det = np.array([[1.0, 0.0]])
    memory = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    np.testing.assert_allclose(bisoftmax_similarity(det, memory), [[0.625, 0.875]])
    # Two detections, one memory: row softmax 1 each, column softmax (1/4, 3/4).
    np.testing.assert_allclose(bisoftmax_similarity(memory, det), [[0.625], [0.875]])


def test_defaults_are_the_official_bdd_values():
    cfg = QuasiDenseTrackerConfig()
    tracker = build_quasi_dense_tracker(cfg)
    assert (tracker.init_score_thr, tracker.obj_score_thr, tracker.match_score_thr) == (0.4, 0.3, 0.5)
    assert (tracker.memo_tracklet_frames, tracker.memo_backdrop_frames, tracker.memo_momentum) == (10, 1, 1.0)
    assert (tracker.nms_backdrop_iou_thr, tracker.nms_class_iou_thr, tracker.with_cats) == (0.3, 0.7, True)


def test_crossing_pair_keeps_ids():
    # A moves right, B moves left; they cross at frame 4 (box IoU 1/3, below the 0.7 duplicate threshold).
    # Box overlap alone could not tell them apart; the embeddings (with noise) do. Scores alternate so the
    # processing order changes from frame to frame.
    rng = np.random.default_rng(0)
    tracker = QuasiDenseTracker()
    ids_a, ids_b = [], []
    for frame in range(9):
        x_a, x_b = 10.0 + 20.0 * frame, 170.0 - 20.0 * frame
        emb_a = _unit(0) + rng.normal(0, 0.3, DIM).astype(np.float32)
        emb_b = _unit(1) + rng.normal(0, 0.3, DIM).astype(np.float32)
        score_a, score_b = (0.9, 0.8) if frame % 2 else (0.8, 0.9)
        tracked = tracker.update(_frame([([x_a, 20, x_a + 40, 60], score_a, emb_a),
                                         ([x_b, 40, x_b + 40, 80], score_b, emb_b)]))
        ids = _ids_by_index(tracked)
        ids_a.append(ids[0])
        ids_b.append(ids[1])
    assert set(ids_a) == {ids_a[0]} and set(ids_b) == {ids_b[0]} and ids_a[0] != ids_b[0]
    assert sorted([ids_a[0], ids_b[0]]) == [1, 2]


@pytest.mark.parametrize(("gap", "same_id"), [(9, True), (10, False)])
def test_track_survives_short_occlusion_and_memory_expires(gap, same_id):
    # Seen at frame 0, absent for `gap` frames. Memory is 10 frames: a track last seen at frame t can still be
    # matched at frame t + 10, so a 9-frame gap keeps the id and a 10-frame gap does not.
    tracker = QuasiDenseTracker()
    first = tracker.update(_frame([(BOX, 0.9, _unit(0))]))
    for _ in range(gap):
        assert len(tracker.update(_frame([])).track_ids) == 0
    assert tracker.live_track_ids == ([1] if same_id else [])
    again = tracker.update(_frame([(BOX, 0.9, _unit(0))]))
    assert bool(again.track_ids[0] == first.track_ids[0]) is same_id
    assert again.track_ids.tolist() == ([1] if same_id else [2])


def test_low_score_detections_do_not_start_tracks():
    tracker = QuasiDenseTracker()
    tracked = tracker.update(_frame([(BOX, 0.39, _unit(0)), (FAR_BOX, 0.41, _unit(1))]))
    assert tracked.indices.tolist() == [1] and tracked.track_ids.tolist() == [1]
    # A track continues with a score between obj_score_thr (0.3) and init_score_thr (0.4) ...
    assert tracker.update(_frame([(FAR_BOX, 0.35, _unit(1))])).track_ids.tolist() == [1]
    # ... is not continued (the detection is ignored) at or below obj_score_thr, but stays in memory ...
    assert tracker.update(_frame([(FAR_BOX, 0.25, _unit(1))])).track_ids.tolist() == []
    assert tracker.num_backdrops == 0  # an ignored detection is no backdrop either
    # ... and resumes with its id.
    assert tracker.update(_frame([(FAR_BOX, 0.8, _unit(1))])).track_ids.tolist() == [1]


def test_duplicate_removal_thresholds():
    tracker = QuasiDenseTracker()
    overlapping_0875 = [10.0, 10.0, 50.0, 45.0]  # IoU 0.875 with BOX
    overlapping_06 = [150.0, 166.0, 190.0, 190.0]  # IoU 0.6 with FAR_BOX
    tracked = tracker.update(_frame([(BOX, 0.9, _unit(0)), (overlapping_0875, 0.8, _unit(1)),
                                     (FAR_BOX, 0.9, _unit(2)), (overlapping_06, 0.8, _unit(3))]))
    assert sorted(tracked.indices.tolist()) == [0, 2, 3]  # 0.875 > 0.7 removed, 0.6 kept


def test_backdrops_are_negatives_that_block_ambiguous_matches():
    # Frame 0: track T (embedding t = 3·u0) and an unmatched low-score detection B (b = 3·u1) → backdrop.
    # Frame 1: D (score 0.9) with d·t = 2, d·b = 5, and E (score 0.5, orthogonal to both).
    #   With the backdrop: row softmax of D over [t, b] = 0.047, column softmax of t over [D, E] = 0.88
    #   → similarity 0.46 ≤ 0.5: D does not take T's id (it matches the backdrop and starts a new track).
    #   Without backdrops: row softmax 1 → similarity 0.94: D continues T.
    d = (2.0 / 3.0) * _unit(0, 1.0) + (5.0 / 3.0) * _unit(1, 1.0)
    frame_0 = _frame([(BOX, 0.9, _unit(0)), (FAR_BOX, 0.35, _unit(1))])
    frame_1 = _frame([(BOX, 0.9, d), ([100.0, 10.0, 140.0, 50.0], 0.5, _unit(2))])
    with_backdrops = QuasiDenseTracker()
    with_backdrops.update(frame_0)
    assert with_backdrops.num_backdrops == 1
    ids = _ids_by_index(with_backdrops.update(frame_1))
    assert ids[0] != 1 and 1 not in ids.values()

    without = QuasiDenseTracker(memo_backdrop_frames=0)
    without.update(frame_0)
    assert without.num_backdrops == 0
    assert _ids_by_index(without.update(frame_1))[0] == 1


def test_backdrops_skip_overlapping_detections_and_last_one_frame():
    tracker = QuasiDenseTracker()
    # 0.35 is above obj_score_thr, so duplicate removal uses 0.7 and keeps it at IoU 0.6; backdrop NMS (IoU > 0.3
    # with a higher-scored detection) then keeps it out of the backdrops. The far one becomes a backdrop.
    tracker.update(_frame([(BOX, 0.9, _unit(0)), ([10.0, 26.0, 50.0, 50.0], 0.35, _unit(1)),
                           (FAR_BOX, 0.35, _unit(2))]))
    assert tracker.num_backdrops == 1
    tracker.update(_frame([(BOX, 0.9, _unit(0))]))
    assert tracker.num_backdrops == 0  # one frame of backdrops: the new (empty) frame replaces the old one


def test_matching_needs_the_same_label():
    tracker = QuasiDenseTracker()
    tracker.update(_frame([(BOX, 0.9, _unit(0))], labels=[2]))
    assert tracker.update(_frame([(BOX, 0.9, _unit(0))], labels=[3])).track_ids.tolist() == [2]
    assert QuasiDenseTracker(with_cats=False).update(_frame([(BOX, 0.9, _unit(0))], labels=[2])).track_ids.tolist() \
        == [1]


def test_ids_are_never_reused_after_reset():
    tracker = QuasiDenseTracker()
    tracker.update(_frame([(BOX, 0.9, _unit(0)), (FAR_BOX, 0.9, _unit(1))]))
    tracker.reset()
    assert tracker.live_track_ids == [] and tracker.frame_index == 0
    assert tracker.update(_frame([(BOX, 0.9, _unit(0))])).track_ids.tolist() == [3]


def test_contract_validation():
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        FrameDetections(np.zeros((2, 3), np.float32), np.zeros(2, np.float32), np.zeros(2, np.int64),
                        np.zeros((2, DIM), np.float32))
    with pytest.raises(TypeError, match="labels"):
        FrameDetections(np.zeros((1, 4), np.float32), np.zeros(1, np.float32), np.zeros(1, np.float32),
                        np.zeros((1, DIM), np.float32))
    with pytest.raises(TypeError, match="masks"):
        FrameDetections(np.zeros((1, 4), np.float32), np.zeros(1, np.float32), np.zeros(1, np.int64),
                        np.zeros((1, DIM), np.float32), masks=np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="init_score_thr"):
        QuasiDenseTracker(init_score_thr=1.5)


def test_update_config_changes_thresholds_and_keeps_tracks_and_rejects_bad_values():
    from uninext_core.tasks.trackers.config import QuasiDenseTrackerConfig
    from uninext_core.tasks.trackers.qdtrack import build_quasi_dense_tracker

    tracker = build_quasi_dense_tracker(QuasiDenseTrackerConfig())
    boxes = np.array([[0, 0, 10, 10]], np.float32)
    first = tracker.update(FrameDetections(boxes_xyxy=boxes, scores=np.array([0.9], np.float32),
                                           labels=np.array([0]), embeddings=np.eye(1, 8, dtype=np.float32)))
    tracker.update_config(QuasiDenseTrackerConfig(init_score_thr=0.95, match_score_thr=0.6))
    assert (tracker.init_score_thr, tracker.match_score_thr) == (0.95, 0.6)
    assert tracker.live_track_ids == list(first.track_ids)
    with pytest.raises(ValueError, match="init_score_thr"):
        tracker.update_config(QuasiDenseTrackerConfig(init_score_thr=1.5))
    assert tracker.init_score_thr == 0.95
