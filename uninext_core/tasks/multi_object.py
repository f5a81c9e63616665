"""MOT, MOTS and VIS: candidate selection from a category prompt, then the trackers (reference §7).

* MOT / MOTS (BDD100K rule): IoU branch off, score = sigmoid(class logit); queries whose best class score exceeds
  `mot_candidate_threshold` (0.1; else the single best query), class-aware NMS `mot_nms_threshold` (0.7) on the best
  class; the QDTrack-style tracker (trackers/qdtrack.py) keeps, matches and starts tracks. MOTS adds the masks of
  the kept detections.
* VIS (YouTube-VIS rule): same selection with `vis_candidate_threshold` (0.1) and `vis_nms_threshold` (0.9); the
  mask head runs on every candidate and the IDOL tracker (trackers/idol.py) compares their stride-4 masks; each kept
  track is reported with its clip-level label and score (argmax and max of the mean class-score vector of its
  clip record so far), and `clip_results()` gives the video-level results.

Tracker thresholds live in the tracker objects; `apply_config` copies new values onto them without touching their
tracks, so thresholds can change while tracking.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from uninext_core.deploy.backend import Backend
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.tasks.preprocess import PreparedFrame
from uninext_core.tasks.scoring import TaskResult, class_scores, select_candidates
from uninext_core.tasks.session_config import SessionConfig
from uninext_core.tasks.timing import FrameCost
from uninext_core.tasks.trackers import (
    ClipInstance,
    FrameDetections,
    IdolTracker,
    QuasiDenseTracker,
    build_idol_tracker,
    build_quasi_dense_tracker,
)

MULTI_OBJECT_TASKS = ("mot", "mots", "vis")
# IdolTrackerConfig fields held by the tracker's clip recorder under other names.
class MultiObjectRunner:
    """MOT / MOTS / VIS task rule for one category prompt.

    Args:
        task: "mot", "mots" or "vis".
        backend: runs the network and the mask head.
        prompt: encoded category caption (1, T, C_l).
        class_token_matrix: (C, T) token-averaging matrix.
        names: the C class names.
        config: initial thresholds (trackers are built from config.quasi_dense / config.idol).
    """

    stateful = True

    def __init__(self, *, task: str, backend: Backend, prompt: PromptFeatures, class_token_matrix: torch.Tensor,
                 names: Sequence[str], config: SessionConfig) -> None:
        if task not in MULTI_OBJECT_TASKS:
            raise ValueError(f"task must be one of {MULTI_OBJECT_TASKS}, got {task!r}")
        self.task = task
        self._backend = backend
        self._prompt = prompt
        self._matrix = class_token_matrix
        self._names = tuple(names)
        self.tracker: QuasiDenseTracker | IdolTracker = (
            build_idol_tracker(config.idol) if task == "vis" else build_quasi_dense_tracker(config.quasi_dense))

    def reset(self) -> None:
        """Forget every track (ids keep counting up)."""
        self.tracker.reset()

    def apply_config(self, config: SessionConfig) -> None:
        """Give the live tracker the thresholds of `config` (tracks are kept)."""
        self.tracker.update_config(config.idol if self.task == "vis" else config.quasi_dense)

    def clip_results(self) -> list[ClipInstance]:
        """VIS: video-level results since the prompt or the last reset; other tasks: []."""
        return self.tracker.clip_results() if isinstance(self.tracker, IdolTracker) else []

    def step(self, prepared: PreparedFrame, stamp_ns: int, *, config: SessionConfig, cost: FrameCost) -> TaskResult:
        """Detect candidates on one frame and track them."""
        with cost.measure("network_ms"):
            raw = self._backend.infer(prepared.images, prepared.pixel_mask, self._prompt)
        vis = self.task == "vis"
        with cost.measure("postprocess_ms"):
            scores = class_scores(raw, self._matrix, use_iou=False)  # (Q, C)
            boxes = prepared.boxes_to_frame(raw.boxes_cxcywh[0])
            candidate_threshold = config.vis_candidate_threshold if vis else config.mot_candidate_threshold
            candidates = select_candidates(boxes, scores, score_threshold=candidate_threshold,
                                           iou_threshold=config.vis_nms_threshold if vis else config.mot_nms_threshold)
            best_scores, best_classes = scores[candidates].max(dim=1)
            logits = self._backend.mask_logits(raw, candidates) if vis else None
            detections = FrameDetections(
                boxes_xyxy=boxes[candidates].cpu().numpy(), scores=best_scores.cpu().numpy(),
                labels=best_classes.cpu().numpy().astype(np.int64),
                embeddings=raw.embeddings[0, candidates].cpu().numpy(),
                masks=prepared.low_res_masks(logits) if vis else None,
                class_scores=scores[candidates].cpu().numpy() if vis else None)
        with cost.measure("tracking_ms"):
            tracked = self.tracker.update(detections)
        with cost.measure("postprocess_ms"):
            kept = torch.from_numpy(tracked.indices).to(candidates.device)
            if vis:
                labels = tracked.clip_scores.argmax(axis=1).astype(np.int64) if len(kept) else np.zeros(0, np.int64)
                out_scores = tracked.clip_scores.max(axis=1) if len(kept) else np.zeros(0, np.float32)
            else:
                labels, out_scores = detections.labels[tracked.indices], detections.scores[tracked.indices]
            masks = None
            if config.masks and self.task != "mot":
                kept_logits = logits[kept] if vis else self._backend.mask_logits(raw, candidates[kept])
                masks = (prepared.mask_probs_to_frame(kept_logits) > 0.5).cpu().numpy()
            result = TaskResult(boxes_xyxy=detections.boxes_xyxy[tracked.indices],
                                scores=np.asarray(out_scores, np.float32), class_indices=labels,
                                labels=[self._names[c] for c in labels], track_ids=tracked.track_ids.astype(np.int64),
                                masks=masks)
            return result.keep(result.scores >= config.score_threshold)
