"""COCO box and mask AP through pycocotools, on in-memory dicts (no JSON files).

pycocotools computes every number; this module only feeds it, silences its prints (they go to the debug log)
and names the twelve summary values. The COCO conventions stand: AP averages 101-point interpolated precision over
IoU 0.50:0.05:0.95; area ranges small < 32², medium < 96², large above; maxDets 1/10/100; -1.0 marks a value
pycocotools leaves undefined (no ground truth in that area range).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

logger = logging.getLogger(__name__)

IouType = Literal["bbox", "segm"]
_AREA_LABELS = ("all", "small", "medium", "large")


@dataclass(frozen=True)
class CocoApResult:
    """The COCOeval summary (its `stats` in order) plus the accumulated precision array for curves.

    AP/AR values are fractions in [0, 1], or -1.0 where pycocotools leaves them undefined.
    `precision` is COCOeval's `eval["precision"]`: (T, R, K, A, M) = (IoU thresholds, 101 recall thresholds,
    categories, area ranges all/small/medium/large, maxDets 1/10/100), -1 where a category has no ground truth.
    """

    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    ar1: float
    ar10: float
    ar100: float
    ar_small: float
    ar_medium: float
    ar_large: float
    precision: np.ndarray
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    category_ids: tuple[int, ...]
    max_dets: tuple[int, ...]

    @property
    def stats(self) -> np.ndarray:
        """(12,) float64 in COCOeval.stats order."""
        return np.array([self.ap, self.ap50, self.ap75, self.ap_small, self.ap_medium, self.ap_large,
                         self.ar1, self.ar10, self.ar100, self.ar_small, self.ar_medium, self.ar_large])


class PrecisionRecallCurve(NamedTuple):
    """Interpolated precision at COCO's 101 recall thresholds (for plots).

    recall: (101,) float64 in [0, 1]; precision: (101,) float64 in [0, 1], NaN where no selected category has
    ground truth.
    """

    recall: np.ndarray
    precision: np.ndarray


def _silenced(call: Any, *args: Any) -> Any:
    """Run a pycocotools call, moving what it prints to the debug log."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        result = call(*args)
    if buffer.getvalue():
        logger.debug("pycocotools: %s", buffer.getvalue().strip())
    return result


def _ground_truth_api(ground_truth: Mapping[str, Any]) -> COCO:
    missing = {"images", "annotations", "categories"} - set(ground_truth)
    if missing:
        raise ValueError(f"ground_truth needs the COCO keys images, annotations, categories; missing {sorted(missing)}")
    for annotation in ground_truth["annotations"]:
        for key in ("id", "image_id", "category_id", "bbox", "area", "iscrowd"):
            if key not in annotation:
                raise ValueError(f"ground-truth annotation {annotation.get('id')} lacks {key!r}; expected COCO fields")
    api = COCO()
    api.dataset = copy.deepcopy(dict(ground_truth))
    _silenced(api.createIndex)
    return api


def _results_api(gt_api: COCO, predictions: Sequence[Mapping[str, Any]], iou_type: IouType) -> COCO:
    key = "bbox" if iou_type == "bbox" else "segmentation"
    results = []
    for prediction in predictions:
        for field in ("image_id", "category_id", "score", key):
            if field not in prediction:
                raise ValueError(f"prediction {dict(prediction)!r} lacks {field!r} needed for iou_type {iou_type!r}")
        result = copy.deepcopy(dict(prediction))
        if iou_type == "segm":
            # Without a box pycocotools takes the area from the mask, as detectron2's COCOEvaluator arranges.
            result.pop("bbox", None)
        results.append(result)
    if results:
        return _silenced(gt_api.loadRes, results)
    # loadRes cannot take an empty list; an empty result set is an index with no annotations.
    empty = COCO()
    empty.dataset = {"images": list(gt_api.dataset["images"]), "categories": list(gt_api.dataset["categories"]),
                     "annotations": []}
    _silenced(empty.createIndex)
    return empty


def evaluate_coco(
    *,
    ground_truth: Mapping[str, Any],
    predictions: Sequence[Mapping[str, Any]],
    iou_type: IouType = "bbox",
) -> CocoApResult:
    """COCO AP/AR of predictions against ground truth, both as in-memory COCO dicts.

    Args:
        ground_truth: COCO dataset dict with "images" (id, height, width), "annotations" (id, image_id,
            category_id, bbox [x, y, w, h] pixels, area, iscrowd; "segmentation" polygons or RLE for segm) and
            "categories" (id, name).
        predictions: COCO result dicts: image_id, category_id, score, and "bbox" [x, y, w, h] pixels (bbox) or
            "segmentation" RLE {"size": [h, w], "counts": str | bytes} (segm). Not modified.
        iou_type: "bbox" for box AP, "segm" for mask AP.

    Returns:
        The twelve COCO summary numbers and the precision array.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    gt_api = _ground_truth_api(ground_truth)
    results_api = _results_api(gt_api, predictions, iou_type)
    evaluator = COCOeval(gt_api, results_api, iou_type)
    _silenced(evaluator.evaluate)
    _silenced(evaluator.accumulate)
    _silenced(evaluator.summarize)
    stats = [float(value) for value in evaluator.stats]
    params = evaluator.params
    return CocoApResult(
        *stats,
        precision=np.asarray(evaluator.eval["precision"], dtype=np.float64),
        iou_thresholds=np.asarray(params.iouThrs, dtype=np.float64),
        recall_thresholds=np.asarray(params.recThrs, dtype=np.float64),
        category_ids=tuple(int(c) for c in params.catIds),
        max_dets=tuple(int(m) for m in params.maxDets),
    )


def precision_recall_curve(
    result: CocoApResult,
    *,
    iou_threshold: float | None = 0.5,
    category_id: int | None = None,
    area: Literal["all", "small", "medium", "large"] = "all",
    max_dets: int = 100,
) -> PrecisionRecallCurve:
    """Precision-recall curve out of a COCO evaluation, averaged as COCOeval.summarize averages.

    Args:
        result: output of `evaluate_coco`.
        iou_threshold: one of result.iou_thresholds (0.5, 0.55, ..., 0.95), or None to average over all of them.
        category_id: one category, or None to average over categories that have ground truth.
        area: area range label.
        max_dets: one of result.max_dets.

    Returns:
        Precision at the 101 recall thresholds.
    """
    precision = result.precision
    if iou_threshold is not None:
        matches = np.flatnonzero(np.isclose(result.iou_thresholds, iou_threshold))
        if matches.size != 1:
            raise ValueError(f"iou_threshold must be one of {result.iou_thresholds.tolist()}, got {iou_threshold}")
        precision = precision[matches]
    if category_id is not None:
        if category_id not in result.category_ids:
            raise ValueError(f"category_id must be one of {list(result.category_ids)}, got {category_id}")
        precision = precision[:, :, [result.category_ids.index(category_id)]]
    if area not in _AREA_LABELS:
        raise ValueError(f"area must be one of {_AREA_LABELS}, got {area!r}")
    if max_dets not in result.max_dets:
        raise ValueError(f"max_dets must be one of {list(result.max_dets)}, got {max_dets}")
    selected = precision[:, :, :, _AREA_LABELS.index(area), result.max_dets.index(max_dets)]  # (T, R, K)
    valid = selected > -1
    counts = valid.sum(axis=(0, 2))
    sums = np.where(valid, selected, 0.0).sum(axis=(0, 2))
    curve = np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)
    return PrecisionRecallCurve(recall=result.recall_thresholds.copy(), precision=curve)


def coco_results_from_arrays(
    *,
    image_id: int,
    boxes_xyxy_px: np.ndarray,
    scores: np.ndarray,
    category_ids: np.ndarray,
    masks: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """COCO result dicts for one image's detections.

    Args:
        image_id: COCO image id.
        boxes_xyxy_px: (N, 4) x1, y1, x2, y2 in pixels.
        scores: (N,) confidences.
        category_ids: (N,) COCO category ids (dataset ids, not contiguous labels).
        masks: optional (N, H, W) bool masks, encoded as compressed RLE with str counts.

    Returns:
        N dicts with image_id, category_id, score, bbox [x, y, w, h] and, with masks, segmentation.
    """
    boxes = np.asarray(boxes_xyxy_px, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    category_ids = np.asarray(category_ids)
    num = boxes.shape[0]
    if boxes.shape != (num, 4) or scores.shape != (num,) or category_ids.shape != (num,):
        raise ValueError(f"need boxes (N, 4), scores (N,), category_ids (N,); got {boxes.shape}, {scores.shape}, "
                         f"{category_ids.shape}")
    rles: list[dict[str, Any]] = []
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[0] != num or masks.dtype != np.bool_:
            raise ValueError(f"masks must be ({num}, H, W) bool, got {masks.shape} {masks.dtype}")
        if num:
            rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    results = []
    for i in range(num):
        x1, y1, x2, y2 = boxes[i].tolist()
        result: dict[str, Any] = {"image_id": int(image_id), "category_id": int(category_ids[i]),
                                  "score": float(scores[i]), "bbox": [x1, y1, x2 - x1, y2 - y1]}
        if masks is not None:
            result["segmentation"] = {"size": list(rles[i]["size"]), "counts": rles[i]["counts"].decode("ascii")}
        results.append(result)
    return results
