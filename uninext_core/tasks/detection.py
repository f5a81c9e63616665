"""Object detection and instance segmentation from a category prompt (reference §7, COCO rule).

score = sqrt(sigmoid(class logit) · sigmoid(iou logit)) per (query, class); class-aware NMS (0.7) on each query's best
class; then top-k (100) over the remaining (query, class) pairs — a query may appear with several classes. Masks
(instance segmentation) come from the dynamic mask head on the chosen queries only, thresholded at probability 0.5
at the frame size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from uninext_core.deploy.backend import Backend
from uninext_core.model.outputs import RawOutputs
from uninext_core.model.prompt_features import PromptFeatures
from uninext_core.tasks.preprocess import PreparedFrame
from uninext_core.tasks.scoring import TaskResult, class_scores, nms_on_best_class
from uninext_core.tasks.session_config import SessionConfig
from uninext_core.tasks.timing import FrameCost


def decode_detection(raw: RawOutputs, *, prepared: PreparedFrame, backend: Backend, class_token_matrix: torch.Tensor,
                     names: Sequence[str], max_instances: int, nms_threshold: float, score_threshold: float,
                     with_masks: bool, best_class_only: bool = False) -> TaskResult:
    """Instances of one frame for detection (with_masks False) or instance segmentation (True).

    Args:
        raw: batch-1 network outputs for a category prompt.
        prepared: the frame's geometry (boxes and masks are mapped back to frame pixels).
        backend: runs the mask head on the chosen queries.
        class_token_matrix: (C, T) token-averaging matrix of the prompt.
        names: the C class names (labels).
        max_instances: k of the top-k over (query, class) pairs.
        nms_threshold: class-aware NMS IoU.
        score_threshold: pairs scoring below this are dropped after the top-k (0 keeps all).
        with_masks: compute (N, H, W) bool masks.
        best_class_only: keep only each query's best class before the top-k (one label per object); False is the
            official rule, where every (query, class) pair competes.

    Returns:
        TaskResult in descending score order; class_indices index `names`; track_ids -1.
    """
    scores = class_scores(raw, class_token_matrix, use_iou=True)  # (Q, C)
    num_classes = scores.shape[1]
    boxes = prepared.boxes_to_frame(raw.boxes_cxcywh[0])  # (Q, 4) frame pixels
    kept, _, _ = nms_on_best_class(boxes, scores, iou_threshold=nms_threshold)
    # Candidate pairs p = (kept[p // C], p % C): every (query, class) pair, or each query's best class only.
    kept_scores = scores[kept]  # (K, C)
    if best_class_only:
        pair_scores, best = kept_scores.max(dim=1)
        pair_ids = torch.arange(len(kept), device=kept_scores.device) * num_classes + best
    else:
        pair_scores = kept_scores.flatten()
        pair_ids = torch.arange(pair_scores.numel(), device=kept_scores.device)
    top_scores, order = pair_scores.topk(min(max_instances, pair_scores.numel()))
    top_pairs = pair_ids[order]
    chosen = top_scores >= score_threshold
    top_scores, top_pairs = top_scores[chosen], top_pairs[chosen]
    queries = kept[top_pairs // num_classes]
    classes = (top_pairs % num_classes).cpu().numpy().astype(np.int64)
    masks = None
    if with_masks:
        unique_queries, inverse = torch.unique(queries, return_inverse=True)
        probs = prepared.mask_probs_to_frame(backend.mask_logits(raw, unique_queries))
        masks = (probs > 0.5)[inverse].cpu().numpy()
    return TaskResult(
        boxes_xyxy=boxes[queries].cpu().numpy().astype(np.float32),
        scores=top_scores.cpu().numpy().astype(np.float32),
        class_indices=classes,
        labels=[names[c] for c in classes],
        track_ids=np.full(len(classes), -1, np.int64),
        masks=masks,
    )


class DetectionRunner:
    """Detection / instance-segmentation task rule for one category prompt (stateless across frames).

    Args:
        task: "detection" or "instance_segmentation" (masks also need config.masks).
        backend: runs the network and the mask head.
        prompt: encoded category caption (1, T, C_l).
        class_token_matrix: (C, T) token-averaging matrix.
        names: the C class names.
    """

    stateful = False

    def __init__(self, *, task: str, backend: Backend, prompt: PromptFeatures, class_token_matrix: torch.Tensor,
                 names: Sequence[str]) -> None:
        if task not in ("detection", "instance_segmentation"):
            raise ValueError(f"task must be 'detection' or 'instance_segmentation', got {task!r}")
        self.task = task
        self._backend = backend
        self._prompt = prompt
        self._matrix = class_token_matrix
        self._names = tuple(names)

    def reset(self) -> None:
        """Nothing is carried between frames."""

    def apply_config(self, config: SessionConfig) -> None:
        """Thresholds are read from the config at every step."""

    def step(self, prepared: PreparedFrame, stamp_ns: int, *, config: SessionConfig, cost: FrameCost) -> TaskResult:
        """Decode one frame."""
        with cost.measure("network_ms"):
            raw = self._backend.infer(prepared.images, prepared.pixel_mask, self._prompt)
        with cost.measure("postprocess_ms"):
            return decode_detection(raw, prepared=prepared, backend=self._backend, class_token_matrix=self._matrix,
                                    names=self._names, max_instances=config.max_instances,
                                    nms_threshold=config.nms_threshold, score_threshold=config.score_threshold,
                                    with_masks=config.masks and self.task == "instance_segmentation",
                                    best_class_only=config.best_class_only)
