"""Tracker thresholds as frozen dataclasses, with the official UNINEXT test-time values as defaults.

Sources (uninext-reference.md §7; official `uninext_vid.py` and `models/tracker.py`):
* BDD100K MOT/MOTS: `QuasiDenseEmbedTracker(init_score_thr=TRACK.INIT_SCORE_THR, obj_score_thr=0.3,
  match_score_thr=0.5, memo_tracklet_frames=10, memo_backdrop_frames=1, memo_momentum=1.0, nms_conf_thr=0.5,
  nms_backdrop_iou_thr=0.3, nms_class_iou_thr=0.7, with_cats=True, match_metric="bisoftmax")`; init 0.4 is the
  grid-searched value used for the reported numbers (the config default is 0.5).
* YouTube-VIS/OVIS: `IDOL_Tracker(init_score_thr=0.2, obj_score_thr=0.1, nms_thr_pre=0.5, nms_thr_post=0.05,
  addnew_score_thr=0.2, memo_tracklet_frames=10, long_match=True, frame_weight=True, temporal_weight=True,
  memory_len=3)` plus clip-level scoring (`MULTI_CLS_ON`, `APPLY_CLS_THRES` 0.05, mean temporal score).

`build_quasi_dense_tracker` and `build_idol_tracker` (next to each tracker) are the only readers of these objects.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuasiDenseTrackerConfig:
    """QDTrack-style tracker for BDD100K MOT/MOTS (all scores in [0, 1], IoUs in [0, 1])."""

    init_score_thr: float = 0.4  # a detection above this may start a track
    obj_score_thr: float = 0.3  # a detection must be above this to continue a track
    match_score_thr: float = 0.5  # bi-softmax similarity needed to match
    memo_tracklet_frames: int = 10  # a track unseen for this many frames is dropped
    memo_backdrop_frames: int = 1  # frames of unmatched detections kept as negatives
    memo_momentum: float = 1.0  # new embedding weight when a track is updated (1.0 = replace)
    nms_conf_thr: float = 0.5  # a low-score detection matching a track this well is suppressed, not a backdrop
    nms_backdrop_iou_thr: float = 0.3  # duplicate-removal IoU for detections below obj_score_thr; backdrop NMS
    nms_class_iou_thr: float = 0.7  # duplicate-removal IoU for detections above obj_score_thr
    with_cats: bool = True  # only same-label detections and memories may match


@dataclass(frozen=True)
class IdolTrackerConfig:
    """IDOL tracker for video instance segmentation (scores in [0, 1], mask IoUs in [0, 1])."""

    init_score_thr: float = 0.2  # start a track when no track is alive
    addnew_score_thr: float = 0.2  # start a track while others are alive
    match_score_thr: float = 0.5  # (frame-weighted) bi-softmax similarity needed to match
    mask_nms_thr: float = 0.5  # mask NMS among the frame's candidates (official nms_thr_pre)
    backdrop_mask_iou_thr: float = 0.05  # unmatched detections overlapping all higher-scored ones less than this
    memo_tracklet_frames: int = 10  # a track unseen for this many frames is dropped
    memo_backdrop_frames: int = 1  # frames of backdrops kept
    memory_len: int = 3  # embeddings averaged into a track's memory
    temporal_weight: bool = True  # add the linear ramp k / L to the score weights of the memory average
    frame_weight: bool = True  # weight similarities by track length when several exceed match_score_thr
    early_delete_after_frame: int = 8  # from the next frame on, drop short clip records (see ClipRecorder)
    early_delete_min_hits: int = 3  # clip records with fewer hits and the last two frames missing are dropped
    clip_class_score_thr: float = 0.05  # every class whose clip-mean score exceeds this yields a VIS result
