"""Scorers of the video tasks: SOT (OPE), R-VOS / VOS (J&F), MOT / MOTS (CLEAR, IDF1, HOTA), VIS (video AP).

Conventions beyond the metric modules':
* SOT: boxes become [x, y, w, h] (w = x2 - x1); a frame where the target is not annotated counts as absent
  (`target_visible` False, a failure on every curve, as pytracking counts it); frame 0 is the initialisation frame.
* VOS: every object annotated anywhere in the sequence is scored; on the first frame the prediction is the ground
  truth (the template frame, reference §7), and DAVIS leaves the first and last frames out when T >= 3. R-VOS scores
  every frame of the referred track (Ref-YouTube-VOS style), the top instance's mask being the prediction.
* MOT / MOTS are class-agnostic CLEAR MOT / HOTA over all tracks (MOTChallenge style).
* VIS: a video is scored as one COCO "image" made of its frames stacked vertically, so pycocotools' mask IoU of two
  stacked masks is Σ_t |A_t ∩ B_t| / Σ_t |A_t ∪ B_t|, the spatio-temporal IoU of the YouTube-VIS evaluation;
  each clip result's per-frame masks are the session's outputs carrying its track id; the ground-truth area (used
  only by the small / medium / large ranges, not reported) is the mean area over the frames where the track shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from uninext_core.data.records import Category
from uninext_core.eval.coco_ap import evaluate_coco
from uninext_core.eval.davis import DavisObjectResult, evaluate_davis_sequence, summarize_davis
from uninext_core.eval.hota import ALPHAS, HotaStats, hota_scores, hota_sequence_stats
from uninext_core.eval.mot import evaluate_clear_mot
from uninext_core.eval.runner import UnitRun
from uninext_core.eval.scoring import Scores, coco_metrics, encode_coco_mask, pr_curve, top_instance
from uninext_core.eval.sot import (
    CENTER_THRESHOLDS_PX,
    OVERLAP_THRESHOLDS,
    SotSequenceResult,
    evaluate_sot_sequence,
    summarize_sot,
)
from uninext_core.eval.track_frames import IouType, TrackFrame


def _xywh(box_xyxy: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64)


class SotScorer:
    """One-pass evaluation over SOT units (each unit one target)."""

    def __init__(self) -> None:
        self._sequences: list[SotSequenceResult] = []

    def add(self, run: UnitRun) -> None:
        (target,) = run.unit.referent_ids
        gt, pred, visible = [], [], []
        for truth, output in zip(run.truths, run.outputs, strict=True):
            row = truth.index_of(target)
            gt.append(np.zeros(4) if row is None else _xywh(truth.boxes_xyxy_px[row]))
            visible.append(row is not None)
            instances = output.instances
            best = top_instance(instances)
            pred.append(np.zeros(4) if best is None else _xywh(instances.boxes_xyxy[best]))
        self._sequences.append(evaluate_sot_sequence(pred_boxes_xywh_px=np.stack(pred), gt_boxes_xywh_px=np.stack(gt),
                                                     target_visible=np.array(visible, dtype=bool)))

    def result(self) -> Scores:
        summary = summarize_sot(self._sequences)
        metrics = {"success_auc": summary.auc, "precision_20px": summary.precision,
                   "normalized_precision": summary.normalized_precision, "sequences": float(len(self._sequences))}
        curves = {"sot_success": {"x": OVERLAP_THRESHOLDS.tolist(), "y": summary.success_curve.tolist()},
                  "sot_precision": {"x": CENTER_THRESHOLDS_PX.tolist(), "y": summary.precision_curve.tolist()}}
        return Scores(metrics, curves)


class DavisScorer:
    """J&F of R-VOS (the referred track) or VOS (every object of the sequence)."""

    def __init__(self, *, task: str) -> None:
        self._task = task
        self._objects: list[DavisObjectResult] = []

    def add(self, run: UnitRun) -> None:
        if self._task == "rvos":
            object_ids = list(run.unit.referent_ids)
        else:
            object_ids = sorted({int(i) for truth in run.truths for i in truth.ids.tolist()})
        if not object_ids:
            return
        frames = len(run.truths)
        height, width = run.truths[0].image_size
        gt = np.zeros((len(object_ids), frames, height, width), dtype=bool)
        pred = np.zeros_like(gt)
        for t, (truth, output) in enumerate(zip(run.truths, run.outputs, strict=True)):
            instances = output.instances
            for k, object_id in enumerate(object_ids):
                gt[k, t] = truth.mask_of(object_id)
                if self._task == "vos" and t == 0:
                    pred[k, t] = gt[k, t]  # the template frame answers with the ground truth
                    continue
                if instances.masks is None or not len(instances):
                    continue
                if self._task == "rvos":
                    pred[k, t] = instances.masks[top_instance(instances)]
                else:
                    rows = np.flatnonzero(instances.track_ids == object_id)
                    if rows.size:
                        pred[k, t] = instances.masks[rows[0]]
        self._objects += evaluate_davis_sequence(gt_masks=gt, pred_masks=pred,
                                                 exclude_first_and_last=self._task == "vos" and frames >= 3)

    def result(self) -> Scores:
        summary = summarize_davis(self._objects)
        metrics = {name: float(getattr(summary, name)) for name in summary._fields}
        metrics["objects"] = float(len(self._objects))
        j_means = np.sort([o.j.mean for o in self._objects])
        curves = {"j_mean_per_object": {"x": j_means.tolist(),
                                        "y": (np.arange(1, j_means.size + 1) / j_means.size).tolist()}}
        return Scores(metrics, curves)


class MotScorer:
    """CLEAR MOT, IDF1 and HOTA over all MOT (boxes) or MOTS (masks) units, class-agnostic."""

    def __init__(self, *, iou_type: IouType) -> None:
        self._iou_type = iou_type
        self._gt: dict[str, list[TrackFrame]] = {}
        self._pred: dict[str, list[TrackFrame]] = {}
        self._hota: list[HotaStats] = []

    def add(self, run: UnitRun) -> None:
        masks = self._iou_type == "mask"
        gt_frames, pred_frames = [], []
        for truth, output in zip(run.truths, run.outputs, strict=True):
            instances = output.instances
            pred_masks = instances.masks
            if masks and pred_masks is None:
                pred_masks = np.zeros((len(instances), *instances.image_size), dtype=bool)
            gt_frames.append(TrackFrame(ids=truth.ids, boxes_xyxy_px=truth.boxes_xyxy_px,
                                        masks=truth.masks if masks else None))
            pred_frames.append(TrackFrame(ids=instances.track_ids, boxes_xyxy_px=instances.boxes_xyxy,
                                          masks=pred_masks if masks else None))
        name = f"{len(self._gt):04d} {run.unit.name}"
        self._gt[name], self._pred[name] = gt_frames, pred_frames
        self._hota.append(hota_sequence_stats(gt_frames, pred_frames, iou_type=self._iou_type))

    def result(self) -> Scores:
        report = evaluate_clear_mot(gt=self._gt, pred=self._pred, iou_type=self._iou_type)
        overall = report.overall
        hota = hota_scores(self._hota)
        metrics = {name: float(getattr(overall, name)) for name in overall._fields}
        metrics |= {"hota": hota.hota, "deta": hota.deta, "assa": hota.assa, "loca": hota.loca,
                    "sequences": float(len(self._gt))}
        if self._iou_type == "mask":
            metrics["smotsa"] = metrics["soft_mota"]
        curves = {"hota_per_alpha": {"x": ALPHAS.tolist(), "y": hota.hota_per_alpha.tolist()}}
        return Scores(metrics, curves)


class VisScorer:
    """Video-level mask AP of VIS clip results (see the module docstring for the stacked-frames IoU)."""

    def __init__(self, *, categories: Sequence[Category]) -> None:
        self._categories = list(categories)
        self._category_ids = np.array([c.id for c in categories], dtype=np.int64)
        self._images: list[dict[str, Any]] = []
        self._annotations: list[dict[str, Any]] = []
        self._predictions: list[dict[str, Any]] = []

    def add(self, run: UnitRun) -> None:
        frames = len(run.truths)
        height, width = run.truths[0].image_size
        image_id = len(self._images) + 1
        self._images.append({"id": image_id, "height": frames * height, "width": width})
        track_ids = sorted({int(i) for truth in run.truths for i in truth.ids.tolist()})
        for track_id in track_ids:
            stacked = np.concatenate([truth.mask_of(track_id) for truth in run.truths], axis=0)  # (T*H, W)
            rows = [(truth.index_of(track_id), truth) for truth in run.truths]
            present = [(row, truth) for row, truth in rows if row is not None]
            category = int(present[0][1].category_ids[present[0][0]])
            areas = [float(truth.masks[row].sum()) if truth.masks is not None else 0.0 for row, truth in present]
            ys, xs = np.nonzero(stacked)
            box = ([float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]
                   if xs.size else [0.0, 0.0, 0.0, 0.0])
            self._annotations.append({"id": len(self._annotations) + 1, "image_id": image_id,
                                      "category_id": category, "bbox": box, "iscrowd": 0,
                                      "area": float(np.mean(areas)), "segmentation": encode_coco_mask(stacked)})
        for clip in run.clip_results:
            per_frame = []
            for output in run.outputs:
                instances = output.instances
                rows = np.flatnonzero(instances.track_ids == clip.track_id)
                if rows.size and instances.masks is not None:
                    per_frame.append(instances.masks[rows[0]])
                else:
                    per_frame.append(np.zeros((height, width), dtype=bool))
            self._predictions.append({"image_id": image_id, "category_id": int(self._category_ids[clip.label]),
                                      "score": float(clip.score),
                                      "segmentation": encode_coco_mask(np.concatenate(per_frame, axis=0))})

    def result(self) -> Scores:
        ground_truth = {"images": self._images, "annotations": self._annotations,
                        "categories": [{"id": c.id, "name": c.name} for c in self._categories]}
        result = evaluate_coco(ground_truth=ground_truth, predictions=self._predictions, iou_type="segm")
        metrics = {k: v for k, v in coco_metrics("video", result).items() if not k.endswith(("small", "medium",
                                                                                              "large"))}
        metrics["videos"] = float(len(self._images))
        return Scores(metrics, {"precision_recall_video": pr_curve(result)})
