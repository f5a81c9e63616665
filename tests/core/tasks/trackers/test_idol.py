from __future__ import annotations

import numpy as np
import pytest

from uninext_core.tasks.trackers import FrameDetections, IdolTracker, IdolTrackerConfig, build_idol_tracker
from uninext_core.tasks.trackers.idol import mask_nms, memory_embedding

DIM = 8
HEIGHT, WIDTH = 60, 120
NUM_CLASSES = 3


def _unit(k: int, scale: float = 3.0) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[k] = scale
    return vector


def _frame(objects: list[tuple[list[int], float, np.ndarray]], class_scores: list[list[float]] | None = None
           ) -> FrameDetections:
    """objects: (box [x1, y1, x2, y2] in mask pixels, score, embedding); the mask fills the box."""
    masks = np.zeros((len(objects), HEIGHT, WIDTH), dtype=bool)
    for i, (box, _, _) in enumerate(objects):
        masks[i, box[1] : box[3], box[0] : box[2]] = True
    scores = np.array([o[1] for o in objects], dtype=np.float32)
    if class_scores is None:
        class_scores = [[s, 0.0, 0.0] for s in scores.tolist()]
    return FrameDetections(
        boxes_xyxy=np.array([o[0] for o in objects], dtype=np.float32).reshape(-1, 4),
        scores=scores,
        labels=np.zeros(len(objects), dtype=np.int64),
        embeddings=np.stack([o[2] for o in objects]).astype(np.float32) if objects else np.zeros((0, DIM), np.float32),
        masks=masks,
        class_scores=np.array(class_scores, dtype=np.float32).reshape(-1, NUM_CLASSES),
    )


def _ids_by_index(tracked) -> dict[int, int]:
    return dict(zip(tracked.indices.tolist(), tracked.track_ids.tolist(), strict=True))


BOX = [10, 10, 30, 30]
FAR_BOX = [80, 30, 100, 50]


def test_defaults_are_the_official_vis_values():
    tracker = build_idol_tracker(IdolTrackerConfig())
    assert (tracker.init_score_thr, tracker.addnew_score_thr, tracker.match_score_thr) == (0.2, 0.2, 0.5)
    assert (tracker.mask_nms_thr, tracker.backdrop_mask_iou_thr, tracker.memo_tracklet_frames) == (0.5, 0.05, 10)
    assert (tracker.memory_len, tracker.temporal_weight, tracker.frame_weight) == (3, True, True)
    assert (tracker.clips.early_delete_after_frame, tracker.clips.early_delete_min_hits) == (8, 3)
    assert tracker.clips.class_score_thr == 0.05


def test_memory_embedding_is_score_and_ramp_weighted():
    # Weights: score + k/3 → 0.9 + 1/3, 0.6 + 2/3, 0.3 + 1 (sum 3.8).
    memory = memory_embedding(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), np.array([0.9, 0.6, 0.3]))
    np.testing.assert_allclose(memory, [(0.9 + 1 / 3 + 1.3) / 3.8, (0.6 + 2 / 3 + 1.3) / 3.8])
    plain = memory_embedding(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0.75, 0.25]), temporal_weight=False)
    np.testing.assert_allclose(plain, [0.75, 0.25])


def test_memory_keeps_the_last_three_embeddings():
    tracker = IdolTracker()
    embeddings = [_unit(0, 1.0), _unit(1, 1.0), _unit(2, 1.0), _unit(3, 1.0)]
    for frame, embedding in enumerate(embeddings):
        # Same box; the single detection always matches (bi-softmax of one pair is 1).
        assert tracker.update(_frame([(BOX, 0.5, embedding)])).track_ids.tolist() == [1], frame
    weights = np.array([0.5 + 1 / 3, 0.5 + 2 / 3, 0.5 + 1.0])
    expected = np.zeros(DIM)
    expected[1:4] = weights / weights.sum()  # the first embedding has left the memory
    np.testing.assert_allclose(tracker.memory_embeddings()[1], expected, rtol=1e-6)
    assert tracker.track_lengths() == {1: 4}


def test_crossing_pair_keeps_ids():
    rng = np.random.default_rng(1)
    tracker = IdolTracker()
    ids_a, ids_b = [], []
    for frame in range(9):
        x_a, x_b = 5 + 11 * frame, 93 - 11 * frame
        emb_a = _unit(0) + rng.normal(0, 0.3, DIM).astype(np.float32)
        emb_b = _unit(1) + rng.normal(0, 0.3, DIM).astype(np.float32)
        score_a, score_b = (0.9, 0.8) if frame % 2 else (0.8, 0.9)
        # Vertical offset: mask IoU at the crossing is 10/30 (below the 0.5 mask NMS).
        ids = _ids_by_index(tracker.update(_frame([([x_a, 10, x_a + 20, 30], score_a, emb_a),
                                                   ([x_b, 20, x_b + 20, 40], score_b, emb_b)])))
        ids_a.append(ids[0])
        ids_b.append(ids[1])
    assert set(ids_a) == {ids_a[0]} and set(ids_b) == {ids_b[0]} and ids_a[0] != ids_b[0]


@pytest.mark.parametrize(("gap", "same_id"), [(3, True), (9, True), (10, False)])
def test_track_survives_short_occlusion_and_memory_expires(gap, same_id):
    tracker = IdolTracker()
    # A second, always-visible (higher-scored, so matched first) object keeps the tracker non-empty: the returning
    # object is matched against the live memories rather than starting a track because none is alive.
    tracker.update(_frame([(BOX, 0.9, _unit(0)), (FAR_BOX, 0.95, _unit(1))]))
    for _ in range(gap):
        tracker.update(_frame([(FAR_BOX, 0.95, _unit(1))]))
    ids = _ids_by_index(tracker.update(_frame([(BOX, 0.9, _unit(0)), (FAR_BOX, 0.95, _unit(1))])))
    assert ids[1] == 1  # ids are handed out in score order: FAR_BOX 1, BOX 2
    assert ids[0] == (2 if same_id else 3)


def test_low_score_detections_do_not_start_tracks():
    tracker = IdolTracker()
    tracked = tracker.update(_frame([(BOX, 0.19, _unit(0)), (FAR_BOX, 0.21, _unit(1))]))
    assert tracked.indices.tolist() == [1] and tracked.track_ids.tolist() == [1]
    # While a track is alive the add-new threshold (also 0.2) applies.
    tracked = tracker.update(_frame([(FAR_BOX, 0.9, _unit(1)), (BOX, 0.2, _unit(0))]))
    assert tracked.indices.tolist() == [0] and tracked.track_ids.tolist() == [1]


def test_mask_nms_drops_duplicates_above_half():
    masks = np.zeros((4, 20, 20), dtype=bool)
    masks[0, 0:10, 0:10] = True
    masks[1, 0:10, 0:6] = True  # IoU 0.6 with mask 0: dropped
    masks[2, 0:10, 5:15] = True  # IoU 50/150 with mask 0, 10/140 with mask 1: kept
    masks[3, 0:10, 6:14] = True  # IoU 0.8·… with mask 2 (80/100 = 0.8): dropped
    np.testing.assert_array_equal(mask_nms(masks, iou_thr=0.5), [True, False, True, False])

    tracker = IdolTracker()
    tracked = tracker.update(_frame([(BOX, 0.9, _unit(0)), ([10, 10, 30, 22], 0.8, _unit(1))]))  # IoU 0.6
    assert tracked.indices.tolist() == [0]


def test_backdrops_are_unmatched_low_score_detections_apart_from_others():
    tracker = IdolTracker()
    # Scores 0.15 are below the new-track threshold. The far one overlaps nothing → backdrop; the near one
    # overlaps the tracked detection with mask IoU 40/440 ≈ 0.09 ≥ 0.05 → neither track nor backdrop.
    tracker.update(_frame([(BOX, 0.9, _unit(0)), ([28, 10, 48, 30], 0.15, _unit(1)), (FAR_BOX, 0.15, _unit(2))]))
    (backdrops,) = tracker.backdrops
    assert backdrops.embeddings.shape == (1, DIM)
    np.testing.assert_array_equal(backdrops.boxes_xyxy, [FAR_BOX])
    tracker.update(_frame([(BOX, 0.9, _unit(0))]))
    assert tracker.backdrops[0].embeddings.shape == (0, DIM)  # one frame of backdrops kept


def test_frame_weighting_prefers_the_longer_track():
    # Track A (a = 3·u0) is matched in frames 0-4 (length 5), track B (b = 3·u1) starts at frame 4 (length 1).
    # Frame 5 has one detection with d·a = 1, d·b = 2: bi-softmax (0.63, 0.87) — both above 0.5, so they are
    # multiplied by the track lengths: 3.17 vs 0.87 → A. Without frame weighting B wins.
    def run(frame_weight: bool) -> int:
        tracker = IdolTracker(frame_weight=frame_weight)
        for frame in range(5):
            objects = [(BOX, 0.9, _unit(0))] + ([(FAR_BOX, 0.9, _unit(1))] if frame == 4 else [])
            tracker.update(_frame(objects))
        assert tracker.track_lengths() == {1: 5, 2: 1}
        d = (1.0 / 3.0) * _unit(0, 1.0) + (2.0 / 3.0) * _unit(1, 1.0)
        return int(tracker.update(_frame([([50, 10, 70, 30], 0.9, d)])).track_ids[0])

    assert run(frame_weight=True) == 1
    assert run(frame_weight=False) == 2


def test_early_deletion_and_clip_level_scores():
    tracker = IdolTracker()
    box_x, box_y, box_z = [0, 0, 10, 10], [40, 0, 50, 10], [80, 0, 90, 10]
    scores_y = [[0.6, 0.0, 0.3], [0.4, 0.0, 0.0], [0.5, 0.0, 0.0]]
    for frame in range(10):
        objects, class_scores = [(box_z, 0.8, _unit(2))], [[0.8, 0.1, 0.02]]
        if frame < 2:  # X: two hits, then lost
            objects.append((box_x, 0.7, _unit(0)))
            class_scores.append([0.0, 0.7, 0.0])
        if frame < 3:  # Y: three hits, then lost
            objects.append((box_y, 0.6, _unit(1)))
            class_scores.append(scores_y[frame])
        tracked = tracker.update(_frame(objects, class_scores))
        if frame == 8:
            assert tracker.clips.record_ids == [1, 2, 3]  # no deletion up to frame 8
        if frame == 2:
            # clip_scores are the running means of each kept track's record.
            np.testing.assert_allclose(tracked.clip_scores[tracked.track_ids.tolist().index(3)], [0.5, 0.0, 0.1],
                                       rtol=1e-6)
    # Frame 9: X (ids: Z=1, X=2, Y=3) misses frames 8 and 9 with 2 < 3 hits → its record is deleted; Y stays.
    assert tracker.clips.record_ids == [1, 3]
    assert 2 in tracker.live_track_ids  # the tracker itself still remembers X

    results = {(r.track_id, r.label): r for r in tracker.clip_results()}
    assert sorted(results) == [(1, 0), (1, 1), (3, 0), (3, 2)]  # class 2 of Z (0.02) is below 0.05
    assert results[(1, 0)].score == pytest.approx(0.8) and results[(1, 1)].score == pytest.approx(0.1)
    assert results[(3, 0)].score == pytest.approx(0.5) and results[(3, 2)].score == pytest.approx(0.1)
    np.testing.assert_array_equal(results[(3, 0)].detection_indices, [2, 2, 1, -1, -1, -1, -1, -1, -1, -1])
    np.testing.assert_array_equal(results[(1, 0)].detection_indices, [0] * 10)

    # X returns at frame 10 (still in the tracker's memory): same id, fresh record padded with -1.
    tracker.update(_frame([(box_z, 0.8, _unit(2)), (box_x, 0.7, _unit(0))], [[0.8, 0.1, 0.02], [0.0, 0.7, 0.0]]))
    record_x = [r for r in tracker.clip_results() if r.track_id == 2]
    assert len(record_x) == 1 and record_x[0].detection_indices.tolist() == [-1] * 10 + [1]


def test_reset_clears_clips_but_not_the_id_counter():
    tracker = IdolTracker()
    tracker.update(_frame([(BOX, 0.9, _unit(0))]))
    tracker.reset()
    assert tracker.clip_results() == [] and tracker.live_track_ids == []
    assert tracker.update(_frame([(BOX, 0.9, _unit(0))])).track_ids.tolist() == [2]


def test_idol_needs_masks_and_class_scores():
    detections = FrameDetections(np.zeros((1, 4), np.float32), np.ones(1, np.float32), np.zeros(1, np.int64),
                                 np.ones((1, DIM), np.float32))
    with pytest.raises(ValueError, match="masks and class_scores"):
        IdolTracker().update(detections)


def test_empty_frames_are_fine():
    tracker = IdolTracker()
    tracked = tracker.update(_frame([]))
    assert tracked.track_ids.shape == (0,) and tracked.clip_scores.shape == (0, NUM_CLASSES)
