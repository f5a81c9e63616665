from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from uninext_core.eval.coco_ap import coco_results_from_arrays, evaluate_coco, precision_recall_curve


def _one_box_ground_truth(box_xywh: list[float]) -> dict:
    return {
        "images": [{"id": 1, "height": 200, "width": 200}],
        "categories": [{"id": 3, "name": "car"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": box_xywh,
                         "area": box_xywh[2] * box_xywh[3], "iscrowd": 0}],
    }


def test_perfect_detection_gives_ap_one_and_undefined_area_ranges():
    gt = _one_box_ground_truth([10.0, 10.0, 40.0, 40.0])  # area 1600: medium
    result = evaluate_coco(ground_truth=gt, predictions=[
        {"image_id": 1, "category_id": 3, "bbox": [10.0, 10.0, 40.0, 40.0], "score": 0.9}])
    np.testing.assert_allclose([result.ap, result.ap50, result.ap75, result.ap_medium, result.ar100], 1.0)
    assert result.ap_small == -1.0 and result.ap_large == -1.0


def test_higher_scored_false_positive_halves_ap():
    # Ranked: FP (0.95) then TP (0.9): precision at recall 1 is 1/2, so the interpolated curve is 0.5 everywhere.
    gt = _one_box_ground_truth([10.0, 10.0, 40.0, 40.0])
    predictions = [{"image_id": 1, "category_id": 3, "bbox": [120.0, 120.0, 40.0, 40.0], "score": 0.95},
                   {"image_id": 1, "category_id": 3, "bbox": [10.0, 10.0, 40.0, 40.0], "score": 0.9}]
    result = evaluate_coco(ground_truth=gt, predictions=predictions)
    assert result.ap == pytest.approx(0.5) and result.ap50 == pytest.approx(0.5)
    curve = precision_recall_curve(result, iou_threshold=0.5)
    np.testing.assert_allclose(curve.precision, 0.5)
    np.testing.assert_allclose(curve.recall, np.linspace(0, 1, 101))


def test_iou_062_counts_at_three_of_ten_thresholds():
    gt = _one_box_ground_truth([0.0, 0.0, 100.0, 100.0])
    result = evaluate_coco(ground_truth=gt, predictions=[
        {"image_id": 1, "category_id": 3, "bbox": [0.0, 0.0, 100.0, 62.0], "score": 0.8}])
    assert result.ap == pytest.approx(0.3)  # TP at IoU thresholds 0.50, 0.55, 0.60
    assert result.ap50 == pytest.approx(1.0) and result.ap75 == pytest.approx(0.0)


def test_no_predictions_give_zero_ap():
    result = evaluate_coco(ground_truth=_one_box_ground_truth([0.0, 0.0, 50.0, 50.0]), predictions=[])
    assert result.ap == 0.0 and result.ar100 == 0.0


def _random_dataset(seed: int) -> tuple[dict, list[dict]]:
    """Three 64×80 images, two categories, rectangle masks; predictions are jittered copies plus clutter."""
    rng = np.random.default_rng(seed)
    height, width = 64, 80
    images = [{"id": i, "height": height, "width": width} for i in (1, 2, 3)]
    annotations, predictions = [], []
    for image in images:
        for _ in range(3):
            x0, y0 = rng.integers(0, 50), rng.integers(0, 40)
            mask = np.zeros((height, width), dtype=bool)
            mask[y0 : y0 + rng.integers(4, 24), x0 : x0 + rng.integers(4, 30)] = True
            category = int(rng.choice([1, 2]))
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": category,
                                "bbox": mask_utils.toBbox(rle).tolist(), "area": float(mask.sum()), "iscrowd": 0,
                                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")}})
            for _ in range(2):
                jittered = np.roll(mask, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
                rows, cols = np.nonzero(jittered)
                box = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
                predictions.extend(coco_results_from_arrays(
                    image_id=image["id"], boxes_xyxy_px=np.array([box], dtype=np.float64),
                    scores=np.array([rng.uniform(0.05, 1.0)]), category_ids=np.array([category]),
                    masks=jittered[None]))
    ground_truth = {"images": images, "annotations": annotations,
                    "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    return ground_truth, predictions


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_matches_pycocotools_run_from_json_files(tmp_path, iou_type):
    ground_truth, predictions = _random_dataset(seed=0)
    ours = evaluate_coco(ground_truth=ground_truth, predictions=predictions, iou_type=iou_type)

    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(ground_truth))
    file_results = [{k: v for k, v in p.items() if not (iou_type == "segm" and k == "bbox")} for p in predictions]
    results_path.write_text(json.dumps(file_results))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        reference = COCOeval(coco_gt, coco_gt.loadRes(str(results_path)), iou_type)
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    np.testing.assert_array_equal(ours.stats, reference.stats)
    np.testing.assert_array_equal(ours.precision, reference.eval["precision"])
    assert 0.0 < ours.ap < 1.0


def test_predictions_are_not_modified():
    ground_truth, predictions = _random_dataset(seed=1)
    before = json.dumps(predictions)
    evaluate_coco(ground_truth=ground_truth, predictions=predictions, iou_type="segm")
    assert json.dumps(predictions) == before


def test_bad_inputs_raise():
    gt = _one_box_ground_truth([0.0, 0.0, 10.0, 10.0])
    with pytest.raises(ValueError, match="iou_type"):
        evaluate_coco(ground_truth=gt, predictions=[], iou_type="keypoints")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score"):
        evaluate_coco(ground_truth=gt, predictions=[{"image_id": 1, "category_id": 3, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="missing"):
        evaluate_coco(ground_truth={"images": []}, predictions=[])
    result = evaluate_coco(ground_truth=gt, predictions=[])
    with pytest.raises(ValueError, match="iou_threshold"):
        precision_recall_curve(result, iou_threshold=0.52)
