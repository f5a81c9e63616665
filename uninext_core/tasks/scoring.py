"""Scores of queries from RawOutputs (reference §2.1, §5.3, §7, §12.3) and the per-frame result every task returns.

* Category prompts: class logit = mean of the class's token logits (one (C, T) averaging matrix), score =
  sigmoid(class logit).
* Expressions and templates: score = sigmoid(pooled logit).
* With the IoU branch (detection, segmentation, REC/RES, R-VOS, SOT, VOS): score = sqrt(score · sigmoid(iou logit));
  MOT/MOTS/VIS switch it off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import batched_nms

from uninext_core.model.outputs import RawOutputs


@dataclass(frozen=True)
class TaskResult:
    """One frame's instances in frame pixels, before they become `Instances` (numpy, N instances).

    Attributes:
        boxes_xyxy: (N, 4) float32 pixels of the frame.
        scores: (N,) float32 in [0, 1].
        class_indices: (N,) int64 (category index; template target index; -1 for expressions).
        labels: N strings.
        track_ids: (N,) int64 (-1 when untracked).
        masks: (N, H, W) bool at the frame size, or None.
    """

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    class_indices: np.ndarray
    labels: list[str]
    track_ids: np.ndarray
    masks: np.ndarray | None

    @staticmethod
    def empty(frame_hw: tuple[int, int], *, with_masks: bool) -> TaskResult:
        """No instance."""
        return TaskResult(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), [],
                          np.zeros(0, np.int64), np.zeros((0, *frame_hw), bool) if with_masks else None)

    def keep(self, selected: np.ndarray) -> TaskResult:
        """The instances at `selected` ((K,) indices or (N,) bool), in that order."""
        return TaskResult(self.boxes_xyxy[selected], self.scores[selected], self.class_indices[selected],
                          [self.labels[i] for i in np.arange(len(self.labels))[selected]], self.track_ids[selected],
                          None if self.masks is None else self.masks[selected])


def class_scores(raw: RawOutputs, class_token_matrix: torch.Tensor, *, use_iou: bool) -> torch.Tensor:
    """(Q, C) per-class scores of a batch-1 output for a category prompt.

    Args:
        raw: RawOutputs of batch 1 (token_logits (1, Q, T)).
        class_token_matrix: (C, T) float32; row c averages the token logits of class c.
        use_iou: multiply by sigmoid(iou) and take the square root.
    """
    logits = raw.token_logits[0].float() @ class_token_matrix.to(raw.token_logits.device).T  # (Q, C)
    scores = logits.sigmoid()
    if use_iou:
        scores = torch.sqrt(scores * raw.iou_logits[0].float().sigmoid())
    return scores


def pooled_scores(raw: RawOutputs, *, use_iou: bool = True) -> torch.Tensor:
    """(Q,) scores against the pooled prompt (expressions and templates) of a batch-1 output."""
    scores = raw.pooled_logits[0, :, 0].float().sigmoid()
    if use_iou:
        scores = torch.sqrt(scores * raw.iou_logits[0, :, 0].float().sigmoid())
    return scores


def nms_on_best_class(boxes_xyxy: torch.Tensor, scores: torch.Tensor, *, iou_threshold: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class-aware NMS on each query's best class.

    Args:
        boxes_xyxy: (Q, 4) boxes (any unit).
        scores: (Q, C) per-class scores.
        iou_threshold: boxes of the same best class overlapping more than this with a higher-scored one are dropped.

    Returns:
        (kept query indices (K,) int64 in descending best-score order, their best scores (K,), best classes (K,)).
    """
    best_scores, best_classes = scores.max(dim=1)
    kept = batched_nms(boxes_xyxy.float(), best_scores, best_classes, iou_threshold)
    return kept, best_scores[kept], best_classes[kept]


def select_candidates(boxes_xyxy: torch.Tensor, scores: torch.Tensor, *, score_threshold: float,
                      iou_threshold: float) -> torch.Tensor:
    """MOT/VIS candidate selection: queries whose best score exceeds score_threshold (else the single best one),
    then class-aware NMS on the best class.

    Returns:
        (K,) int64 query indices in descending best-score order (K >= 1 when Q >= 1).
    """
    best_scores = scores.max(dim=1).values
    candidates = torch.nonzero(best_scores > score_threshold).flatten()
    if candidates.numel() == 0:
        candidates = best_scores.argmax()[None]
    kept, _, _ = nms_on_best_class(boxes_xyxy[candidates], scores[candidates], iou_threshold=iou_threshold)
    return candidates[kept]
