"""uninext-eval end to end on tiny synthetic sets (random tiny weights: the mechanics, not the scores), and its
refusals of bad input with a clear message and a non-zero exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from uninext_core.checkpoint.safetensors_io import save_weights
from uninext_core.config import tiny
from uninext_core.data.synthetic.__main__ import main as synth_main
from uninext_core.eval.cli import main, parse_overrides
from uninext_core.model.build import build_model

SIZE = ["--short-side", "96", "--max-size", "128", "--threads", "1"]
MOT_CLASSES = "circle,square,triangle,star,hexagon,cross,heart,ring,ellipse,diamond"


def _synth(root: Path, task: str, *args: str) -> Path:
    out = root / task
    assert synth_main(["--out", str(out), "--task", task, "--seed", "5", "--size", "96", *args]) == 0
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synth")
    video = ["--num-videos", "1", "--num-frames", "4"]
    return {"detection": _synth(root, "detection", "--num-images", "2"),
            "referring": _synth(root, "referring", "--num-images", "1", "--max-expressions", "1"),
            "sot": _synth(root, "sot", *video), "vos": _synth(root, "vos", *video),
            "mot": _synth(root, "mot", *video), "vis": _synth(root, "vis", *video)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = tiny()
    path = tmp_path_factory.mktemp("weights") / "tiny_random.safetensors"
    return save_weights(path, build_model(config).state_dict(), config=config)


CASES = [
    ("detection", "detection", [], ["box_ap", "box_ap50", "box_ar100"], ["precision_recall_box"]),
    ("instance_segmentation", "detection", ["--limit", "1"], ["box_ap", "mask_ap"],
     ["precision_recall_box", "precision_recall_mask"]),
    ("res", "referring", ["--limit", "2"], ["accuracy", "overall_iou", "mean_iou"], ["rec_iou_cdf"]),
    ("sot", "sot", [], ["success_auc", "precision_20px", "normalized_precision"], ["sot_success", "sot_precision"]),
    ("vos", "vos", [], ["jf_mean", "j_mean", "f_mean"], ["j_mean_per_object"]),
    ("mot", "mot", ["--categories", MOT_CLASSES], ["mota", "idf1", "hota"], ["hota_per_alpha"]),
    ("vis", "vis", [], ["video_ap", "video_ap50"], ["precision_recall_video"]),
]


@pytest.mark.parametrize(("task", "dataset", "extra", "metric_keys", "plots"), CASES, ids=[c[0] for c in CASES])
def test_cli_end_to_end(data, checkpoint, tmp_path, capsys, task, dataset, extra, metric_keys, plots) -> None:
    out = tmp_path / "out"
    code = main(["--task", task, "--data", str(data[dataset]), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--seed", "7", *SIZE, *extra])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    evaluated = result["evaluated"]
    assert evaluated["task"] == task and evaluated["preset"] == "tiny" and evaluated["backend"] == "torch"
    assert evaluated["checkpoint"] == str(checkpoint) and evaluated["seed"] == 7
    assert evaluated["frames"] >= 1 and evaluated["units"] == len(result["units"])
    for key in metric_keys:
        value = result["metrics"][key]
        assert value is None or -1.0 <= value <= 1.0, (key, value)
    latency = result["latency"]
    assert latency["frames"] >= 1 and latency["wall_ms_mean"] > 0 and latency["inference_ms_mean"] > 0
    assert latency["wall_ms_p90"] >= latency["wall_ms_median"] > 0
    for name in [*plots, "latency_histogram"]:
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    report = (out / "report.md").read_text()
    assert f"![{plots[0]}]({plots[0]}.png)" in report and "| wall_ms_mean |" in report
    assert f"{task}:" in capsys.readouterr().out


def test_sot_evaluates_every_frame_from_the_first_visible_one(data, checkpoint, tmp_path) -> None:
    assert main(["--task", "sot", "--data", str(data["sot"]), "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path), *SIZE]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["evaluated"]["frames"] == 4  # one 4-frame sequence whose target shows on frame 0
    assert result["latency"]["frames"] == 3  # frame 0 is the template frame, answered before the prompt
    assert result["evaluated"]["reader"] == "lasot"


def test_session_settings_are_set_from_the_command_line_and_recorded(data, checkpoint, tmp_path) -> None:
    assert main(["--task", "sot", "--data", str(data["sot"]), "--checkpoint", str(checkpoint), "--out",
                 str(tmp_path), "--set", "sot_motion_weight=0.5", "--set", "template_update_interval=10", *SIZE]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["evaluated"]["session_overrides"] == "sot_motion_weight=0.5, template_update_interval=10"


def test_parse_overrides_converts_to_the_field_type_and_refuses_the_rest() -> None:
    assert parse_overrides(["sot_motion_weight=0.25", "masks=false", "max_instances=50",
                            "input_short_side=320"]) == {"sot_motion_weight": 0.25, "masks": False,
                                                         "max_instances": 50, "input_short_side": 320}
    for bad, reason in (("sot_motion_weight", "FIELD=VALUE"), ("nonexistent=1", "unknown session setting"),
                        ("max_instances=0.5", "expects an integer"), ("masks=2", "true or false"),
                        ("score_threshold=high", "expects a number"), ("idol=1", "cannot change idol")):
        with pytest.raises(ValueError, match=reason):
            parse_overrides([bad])


def _fails(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def test_bad_input_is_refused_with_the_reason(data, checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    base = ["--checkpoint", str(checkpoint), "--out", str(out), *SIZE]
    code, err = _fails(["--task", "detection", "--data", str(tmp_path / "missing"), *base], capsys)
    assert code == 2 and "missing does not exist" in err
    code, err = _fails(["--task", "detection", "--data", str(data["detection"]), "--preset", "r50", *base], capsys)
    assert code == 2 and "r50" in err and "tiny" in err
    code, err = _fails(["--task", "sot", "--data", str(data["detection"]), *base], capsys)
    assert code == 2 and "task sot cannot be evaluated on coco data" in err
    code, err = _fails(["--task", "mot", "--data", str(data["mot"]), *base], capsys)
    assert code == 2 and "--categories" in err
    code, err = _fails(["--task", "detection", "--data", str(data["detection"]), "--checkpoint",
                        str(tmp_path / "none.safetensors"), "--out", str(out)], capsys)
    assert code == 2 and "none.safetensors" in err
    code, err = _fails(["--task", "rec", "--data", str(data["detection"]), *base], capsys)
    assert code == 2 and "rec" in err
    code, err = _fails(["--task", "sot", "--data", str(data["sot"]), "--set", "sot_motion_weight=2", *base], capsys)
    assert code == 2 and "sot_motion_weight must be a number in [0, 1], got 2.0" in err
    assert not (out / "result.json").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["--task", "panoptic", "--data", str(data["detection"]), *base])
    assert exit_info.value.code == 2 and "invalid choice: 'panoptic'" in capsys.readouterr().err


def test_a_failed_rerun_leaves_no_result_behind(data, checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["--task", "detection", "--data", str(data["detection"]), "--checkpoint", str(checkpoint), "--out",
            str(out), "--limit", "1", *SIZE]
    assert main(args) == 0 and (out / "result.json").is_file()
    broken = data["detection"] / "images" / "000000.jpg"
    saved = broken.read_bytes()
    try:
        broken.write_bytes(b"not a jpeg")
        code, err = _fails(args, capsys)
    finally:
        broken.write_bytes(saved)
    assert code == 2 and "000000.jpg" in err and "cannot be decoded" in err
    assert not (out / "result.json").exists()  # the earlier result is gone: it would pass for this run's
