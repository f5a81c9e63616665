"""`training.colour_choice`: which detection an object's colour choice reads (constructed cases), a session run's
report adds up, bad input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.colour_choice import chosen_index, main
from uninext_core.data.synthetic.__main__ import main as synth_main


def test_the_best_scored_overlapping_detection_is_chosen() -> None:
    target = np.array([10.0, 10.0, 30.0, 30.0])
    boxes = np.array([[10, 10, 30, 30], [11, 11, 31, 31], [50, 50, 70, 70], [10, 10, 18, 18]], dtype=np.float32)
    assert chosen_index(boxes, np.array([0.2, 0.6, 0.9, 0.95]), target) == 1  # 2 and 3 do not overlap enough
    assert chosen_index(boxes[2:], np.array([0.9, 0.95]), target) is None
    assert chosen_index(np.zeros((0, 4), np.float32), np.zeros(0), target) is None


@pytest.fixture(scope="module")
def det_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "det"
    assert synth_main(["--out", str(out), "--task", "detection", "--seed", "3", "--size", "96", "--num-images",
                       "3"]) == 0
    return out


def test_report_of_a_session_run_adds_up(det_data, random_tiny_checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "colour.json"
    assert main(["--checkpoint", str(random_tiny_checkpoint), "--data", str(det_data), "--images", "2", "--out",
                 str(out)]) == 0
    report = json.loads(out.read_text())
    coco = json.loads((det_data / "annotations" / "instances.json").read_text())
    first_two = {image["id"] for image in coco["images"][:2]}
    objects = sum(a["image_id"] in first_two for a in coco["annotations"])
    assert report["images"] == 2 and objects > 0
    assert report["objects_chosen"] + report["objects_without_detection"] == objects
    assert (report["accuracy"] is None) == (report["objects_chosen"] == 0)
    assert report["chance"] == pytest.approx(1 / 8)
    assert "colour choice" in capsys.readouterr().out


def test_bad_input_is_refused(det_data, random_tiny_checkpoint, tmp_path, capsys) -> None:
    assert main(["--checkpoint", str(tmp_path / "none.safetensors"), "--data", str(det_data)]) == 2
    assert main(["--checkpoint", str(random_tiny_checkpoint), "--data", str(det_data), "--images", "0"]) == 2
    plain = tmp_path / "plain"
    (plain / "annotations").mkdir(parents=True)
    coco = json.loads((det_data / "annotations" / "instances.json").read_text())
    for annotation in coco["annotations"]:
        annotation.pop("attributes", None)
    (plain / "annotations" / "instances.json").write_text(json.dumps(coco))
    assert main(["--checkpoint", str(random_tiny_checkpoint), "--data", str(plain)]) == 2
    assert "has no attributes.kind" in capsys.readouterr().err
