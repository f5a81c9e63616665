"""From evaluated units (ground truth + session outputs) to metrics, through the metric modules of uninext_core.eval.

One scorer per task family, fed unit by unit (`add`) and read once (`result`); `make_scorer` picks it by task:

| task                          | scorer          | metrics (module)                                                   |
|-------------------------------|-----------------|--------------------------------------------------------------------|
| detection, instance_seg.      | CocoScorer      | box (and mask) AP / AR (coco_ap), PR curve at IoU 0.5              |
| rec, res                      | ReferringScorer | REC accuracy and P@0.5..0.9; RES oIoU and mIoU (rec)               |
| sot                           | SotScorer       | success AUC, precision @20 px, normalised precision (sot)          |
| rvos, vos                     | DavisScorer     | J&F, J and F mean / recall / decay (davis)                         |
| mot, mots                     | MotScorer       | MOTA, MOTP, IDF1, ... (mot) and HOTA, DetA, AssA (hota)            |
| vis                           | VisScorer       | video mask AP / AR of the clip results (coco_ap, stacked frames) |

Predictions of one frame are its `Instances`; where a task scores one prediction per frame (REC/RES, R-VOS, SOT) it is
the highest-scoring instance, and a frame without one scores as an empty box / mask. The video scorers live in
track_scoring.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
from pycocotools import mask as mask_utils

from uninext_core.data.records import Category
from uninext_core.eval.coco_ap import (
    CocoApResult,
    coco_results_from_arrays,
    evaluate_coco,
    precision_recall_curve,
)
from uninext_core.eval.rec import evaluate_rec, evaluate_res
from uninext_core.eval.runner import UnitRun
from uninext_core.instances import Instances

Curve = dict[str, list[float]]  # {"x": [...], "y": [...]}


class Scores(NamedTuple):
    """Metrics by name (fractions in [0, 1] unless the name says a count) and curves for plots by name."""

    metrics: dict[str, float]
    curves: dict[str, Curve]


class Scorer(Protocol):
    """Accumulates units and computes the task's metrics."""

    def add(self, run: UnitRun) -> None:
        """Take one evaluated unit."""
        ...

    def result(self) -> Scores:
        """Metrics over every unit added."""
        ...


def top_instance(instances: Instances) -> int | None:
    """Row of the highest-scoring instance, or None when there is none."""
    return int(np.argmax(instances.scores)) if len(instances) else None


def encode_coco_mask(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool mask -> COCO compressed RLE {"size": [h, w], "counts": str} (non-empty counts even when empty)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coco_metrics(prefix: str, result: CocoApResult) -> dict[str, float]:
    """The COCO summary numbers under `<prefix>_ap`, `<prefix>_ap50`, ... (-1 where undefined)."""
    names = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar1", "ar10", "ar100")
    return {f"{prefix}_{name}": float(getattr(result, name)) for name in names}


def pr_curve(result: CocoApResult) -> Curve:
    """Precision at COCO's 101 recall points at IoU 0.5 (NaN becomes 0 for plotting: no ground truth)."""
    curve = precision_recall_curve(result, iou_threshold=0.5)
    return {"x": curve.recall.tolist(), "y": np.nan_to_num(curve.precision, nan=0.0).tolist()}


class CocoScorer:
    """COCO box AP (and mask AP for instance segmentation) over every frame of every unit.

    Args:
        categories: the dataset categories; prompt class index k is categories[k].
        with_masks: also score masks (segm).
    """

    def __init__(self, *, categories: Sequence[Category], with_masks: bool) -> None:
        self._categories = list(categories)
        self._category_ids = np.array([c.id for c in categories], dtype=np.int64)
        self._with_masks = with_masks
        self._images: list[dict[str, Any]] = []
        self._annotations: list[dict[str, Any]] = []
        self._predictions: list[dict[str, Any]] = []

    def add(self, run: UnitRun) -> None:
        for truth, output in zip(run.truths, run.outputs, strict=True):
            image_id = len(self._images) + 1
            height, width = truth.image_size
            self._images.append({"id": image_id, "height": height, "width": width})
            for row in range(len(truth)):
                x1, y1, x2, y2 = (float(v) for v in truth.boxes_xyxy_px[row])
                annotation: dict[str, Any] = {"id": len(self._annotations) + 1, "image_id": image_id,
                                              "category_id": int(truth.category_ids[row]),
                                              "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0,
                                              "area": (x2 - x1) * (y2 - y1)}
                if truth.masks is not None:
                    annotation["segmentation"] = encode_coco_mask(truth.masks[row])
                    annotation["area"] = float(truth.masks[row].sum())
                self._annotations.append(annotation)
            instances = output.instances
            masks = instances.masks if self._with_masks else None
            if self._with_masks and masks is None:
                masks = np.zeros((len(instances), height, width), dtype=bool)
            self._predictions += coco_results_from_arrays(
                image_id=image_id, boxes_xyxy_px=instances.boxes_xyxy, scores=instances.scores,
                category_ids=self._category_ids[instances.class_indices], masks=masks)

    def ground_truth(self) -> dict[str, Any]:
        """The COCO dataset dict built so far."""
        return {"images": self._images, "annotations": self._annotations,
                "categories": [{"id": c.id, "name": c.name} for c in self._categories]}

    def result(self) -> Scores:
        box = evaluate_coco(ground_truth=self.ground_truth(), predictions=self._predictions, iou_type="bbox")
        metrics = coco_metrics("box", box)
        curves = {"precision_recall_box": pr_curve(box)}
        if self._with_masks:
            mask = evaluate_coco(ground_truth=self.ground_truth(), predictions=self._predictions, iou_type="segm")
            metrics |= coco_metrics("mask", mask)
            curves["precision_recall_mask"] = pr_curve(mask)
        metrics["images"] = float(len(self._images))
        return Scores(metrics, curves)


class ReferringScorer:
    """REC box accuracy and, with masks (RES), overall / mean mask IoU; one prediction per frame and expression."""

    def __init__(self, *, with_masks: bool) -> None:
        self._with_masks = with_masks
        self._pred_boxes: list[np.ndarray] = []
        self._gt_boxes: list[np.ndarray] = []
        self._pred_masks: list[np.ndarray] = []
        self._gt_masks: list[np.ndarray] = []

    def add(self, run: UnitRun) -> None:
        (referent,) = run.unit.referent_ids
        for truth, output in zip(run.truths, run.outputs, strict=True):
            row = truth.index_of(referent)
            if row is None:
                continue  # the referred object is not on this frame
            instances = output.instances
            best = top_instance(instances)
            self._gt_boxes.append(truth.boxes_xyxy_px[row])
            self._pred_boxes.append(np.zeros(4) if best is None else instances.boxes_xyxy[best].astype(np.float64))
            if self._with_masks:
                self._gt_masks.append(truth.mask_of(referent))
                empty = best is None or instances.masks is None
                self._pred_masks.append(np.zeros(truth.image_size, bool) if empty else instances.masks[best])

    def result(self) -> Scores:
        if not self._gt_boxes:
            raise ValueError("no referred object was annotated on any evaluated frame")
        rec = evaluate_rec(pred_boxes_xyxy_px=np.stack(self._pred_boxes), gt_boxes_xyxy_px=np.stack(self._gt_boxes))
        metrics = {"accuracy": rec.accuracy, **{f"precision@{t:.1f}": v for t, v in rec.precision_at.items()},
                   "expressions": float(len(self._gt_boxes))}
        if self._with_masks:
            res = evaluate_res(pred_masks=self._pred_masks, gt_masks=self._gt_masks)
            metrics |= {"overall_iou": res.overall_iou, "mean_iou": res.mean_iou}
        ious = np.sort(rec.ious)
        curves = {"rec_iou_cdf": {"x": ious.tolist(), "y": (np.arange(1, ious.size + 1) / ious.size).tolist()}}
        return Scores(metrics, curves)


def make_scorer(task: str, *, categories: Sequence[Category]) -> Scorer:
    """The scorer of `task` (see the module table)."""
    from uninext_core.eval.track_scoring import DavisScorer, MotScorer, SotScorer, VisScorer

    match task:
        case "detection" | "instance_segmentation":
            return CocoScorer(categories=categories, with_masks=task == "instance_segmentation")
        case "rec" | "res":
            return ReferringScorer(with_masks=task == "res")
        case "sot":
            return SotScorer()
        case "rvos" | "vos":
            return DavisScorer(task=task)
        case "mot" | "mots":
            return MotScorer(iou_type="mask" if task == "mots" else "bbox")
        case "vis":
            return VisScorer(categories=categories)
    raise ValueError(f"unknown task {task!r}")
