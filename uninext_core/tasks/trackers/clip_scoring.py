"""Clip-level results of online VIS (IDOL recipe as UNINEXT runs it for YouTube-VIS and OVIS).

Each track id owns a clip record: which detection it was in every frame (or absent), the sum of its per-frame
class-score vectors and its hit count. After frame `early_delete_after_frame` (8; i.e. from the 10th frame on), a
record whose last two frames are both missing and that has fewer than `early_delete_min_hits` (3) hits is deleted
(official `inference_vis`); the tracker may still hold the track, and a later hit starts a fresh record.
At the end of the clip every record yields one result per class whose mean score over the record's hits exceeds
`class_score_thr` (0.05; official `MULTI_CLS_ON` with the mean temporal score), in record order, then class order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class ClipInstance(NamedTuple):
    """One video-level VIS result.

    track_id: the tracker's id (≥ 1); label: class index; score: mean class score over the record's hits;
    detection_indices: (T,) int64, per processed frame the index into that frame's FrameDetections, -1 where the
    track is absent (frames before the record started included).
    """

    track_id: int
    label: int
    score: float
    detection_indices: np.ndarray


@dataclass
class _ClipRecord:
    detection_indices: list[int]
    score_sum: np.ndarray  # (C,) float64
    hits: int


class ClipRecorder:
    """Accumulates per-track clip records frame by frame (see the module docstring).

    Args:
        early_delete_after_frame: frame index after which short, lost records are deleted.
        early_delete_min_hits: records with fewer hits (and the last two frames missing) are deleted.
        class_score_thr: a class enters the results when its mean score exceeds this.
    """

    def __init__(self, *, early_delete_after_frame: int = 8, early_delete_min_hits: int = 3,
                 class_score_thr: float = 0.05) -> None:
        if early_delete_after_frame < 1:
            raise ValueError(f"early_delete_after_frame must be ≥ 1, got {early_delete_after_frame}")
        if not 0.0 <= class_score_thr <= 1.0:
            raise ValueError(f"class_score_thr must be in [0, 1], got {class_score_thr}")
        self.early_delete_after_frame = early_delete_after_frame
        self.early_delete_min_hits = early_delete_min_hits
        self.class_score_thr = class_score_thr
        self._records: dict[int, _ClipRecord] = {}
        self._num_frames = 0
        self._num_classes: int | None = None

    @property
    def num_frames(self) -> int:
        """Frames recorded so far."""
        return self._num_frames

    @property
    def record_ids(self) -> list[int]:
        """Track ids that currently own a clip record, in record order."""
        return list(self._records)

    def reset(self) -> None:
        """Drop every record and restart at frame 0."""
        self._records.clear()
        self._num_frames = 0
        self._num_classes = None

    def record(self, *, track_ids: np.ndarray, detection_indices: np.ndarray, class_scores: np.ndarray) -> None:
        """Record one frame.

        Args:
            track_ids: (K,) int64 ids of the tracks kept this frame.
            detection_indices: (K,) int64 their indices into the frame's detections.
            class_scores: (K, C) float per-class scores of those detections.
        """
        class_scores = np.asarray(class_scores, dtype=np.float64)
        num = len(track_ids)
        if class_scores.ndim != 2 or class_scores.shape[0] != num or len(detection_indices) != num:
            raise ValueError(f"need (K,) ids, (K,) indices and (K, C) class scores, got {len(track_ids)}, "
                             f"{len(detection_indices)} and {class_scores.shape}")
        if self._num_classes is None:
            self._num_classes = class_scores.shape[1]
        elif class_scores.shape[1] != self._num_classes:
            raise ValueError(f"class_scores must keep C = {self._num_classes} classes, got {class_scores.shape[1]}")
        frame = self._num_frames
        ids_and_indices = zip(np.asarray(track_ids).tolist(), np.asarray(detection_indices).tolist(), strict=True)
        for (track_id, index), scores in zip(ids_and_indices, class_scores, strict=True):
            record = self._records.get(track_id)
            if record is None:
                record = self._records[track_id] = _ClipRecord([-1] * frame, np.zeros(scores.shape[0]), 0)
            record.detection_indices.append(index)
            record.score_sum += scores
            record.hits += 1
        for record in self._records.values():
            if len(record.detection_indices) < frame + 1:
                record.detection_indices.append(-1)
        if frame > self.early_delete_after_frame:
            for track_id in [k for k, r in self._records.items()
                             if r.detection_indices[-1] < 0 and r.detection_indices[-2] < 0
                             and r.hits < self.early_delete_min_hits]:
                del self._records[track_id]
        self._num_frames += 1

    def mean_class_scores(self, track_ids: np.ndarray) -> np.ndarray:
        """(K, C) float32 mean class-score vectors of the given ids' records ((K, 0) before any frame)."""
        num_classes = self._num_classes or 0
        means = np.zeros((len(track_ids), num_classes), dtype=np.float32)
        for row, track_id in enumerate(np.asarray(track_ids).tolist()):
            record = self._records.get(track_id)
            if record is None:
                raise ValueError(f"track {track_id} has no clip record; records exist for {self.record_ids}")
            means[row] = record.score_sum / record.hits
        return means

    def results(self) -> list[ClipInstance]:
        """Video-level results: one per (record, class with mean score > class_score_thr)."""
        results = []
        for track_id, record in self._records.items():
            mean = record.score_sum / record.hits
            indices = np.array(record.detection_indices, dtype=np.int64)
            for label in np.flatnonzero(mean > self.class_score_thr):
                results.append(ClipInstance(track_id, int(label), float(mean[label]), indices.copy()))
        return results
