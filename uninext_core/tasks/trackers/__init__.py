"""Trackers of the perception session: QDTrack-style (BDD100K MOT/MOTS) and IDOL (VIS), pure numpy.

Contract: `tracker.update(FrameDetections) -> TrackedInstances` once per frame, `tracker.reset()` between videos.
"""

from __future__ import annotations

from uninext_core.tasks.trackers.clip_scoring import ClipInstance, ClipRecorder
from uninext_core.tasks.trackers.config import IdolTrackerConfig, QuasiDenseTrackerConfig
from uninext_core.tasks.trackers.detections import FrameDetections, TrackedInstances
from uninext_core.tasks.trackers.idol import IdolTracker, build_idol_tracker
from uninext_core.tasks.trackers.qdtrack import QuasiDenseTracker, build_quasi_dense_tracker

__all__ = [
    "ClipInstance",
    "ClipRecorder",
    "FrameDetections",
    "IdolTracker",
    "IdolTrackerConfig",
    "QuasiDenseTracker",
    "QuasiDenseTrackerConfig",
    "TrackedInstances",
    "build_idol_tracker",
    "build_quasi_dense_tracker",
]
