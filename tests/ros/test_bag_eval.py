"""uninext-bag-eval offline: on bags made from the synthetic world (both storages, raw and compressed, prompts from
the bag or a scenario), its metrics equal uninext-eval's on the same frames and prompts; the output bag reads back
with rosbags and the mcap readers; a reference bag serves as ground truth; bad input is refused by name and leaves
nothing that looks complete. Random tiny weights: the mechanics and the equality, not the scores."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from uninext_core.checkpoint.safetensors_io import save_weights
from uninext_core.config import tiny
from uninext_core.data.synthetic.__main__ import main as synth_main
from uninext_core.deploy.loading import load_backend
from uninext_core.eval.cli import main as eval_main
from uninext_core.eval.datasets import open_data, resolve_data
from uninext_core.eval.runner import run_unit
from uninext_core.eval.units import build_units, load_frame
from uninext_core.model.build import build_model
from uninext_core.tasks.session import Session
from uninext_core.tasks.session_config import SessionConfig
from uninext_ros.bag_eval import main as bag_eval_main
from uninext_ros.bag_io import IMAGE_TYPE, BagOutput, bag_typestore, open_bag
from uninext_ros.bag_scenario import read_scenario
from uninext_ros.conversions import msg_to_instances
from uninext_ros.make_bag import make_bag
from uninext_ros.params import SPECS

SIZE = ["--short-side", "96", "--max-size", "128", "--threads", "1"]
CLASSES = "circle,square,triangle,star,hexagon,cross,heart,ring,ellipse,diamond"


def _synth(root: Path, task: str, *args: str) -> Path:
    out = root / task
    assert synth_main(["--out", str(out), "--task", task, "--seed", "11", "--size", "96", *args]) == 0
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synth")
    return {"sot": _synth(root, "sot", "--num-videos", "1", "--num-frames", "6"),
            "mot": _synth(root, "mot", "--num-videos", "1", "--num-frames", "5"),
            "vos": _synth(root, "vos", "--num-videos", "1", "--num-frames", "4"),
            "detection": _synth(root, "detection", "--num-images", "3")}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = tiny()
    path = tmp_path_factory.mktemp("weights") / "tiny_random.safetensors"
    return save_weights(path, build_model(config).state_dict(), config=config)


def _metrics(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())["metrics"]


def _offline(task: str, data: Path, checkpoint: Path, out: Path, *extra: str) -> dict:
    assert eval_main(["--task", task, "--data", str(data), "--checkpoint", str(checkpoint), "--out", str(out),
                      *SIZE, *extra]) == 0
    return _metrics(out)


def _bag_eval(bag: Path, task: str, checkpoint: Path, out: Path, *extra: str) -> int:
    return bag_eval_main(["--bag", str(bag), "--task", task, "--checkpoint", str(checkpoint), "--out", str(out),
                          *SIZE, *extra])


def _first_unit(data: Path, task: str, **options):
    store = open_data(resolve_data(data, task=task, **options))
    unit = build_units(store, task=task)[0]
    assert unit.frames[0] == 0, "the synthetic sequence's targets must show on its first frame"
    return store, unit


@pytest.fixture(scope="module")
def sot_run(data, checkpoint, tmp_path_factory) -> dict[str, Path]:
    """SOT: mcap bag, compressed frames (the JPEG bytes), the template prompt stored on the bag's prompt topic."""
    root = tmp_path_factory.mktemp("sot")
    store, unit = _first_unit(data["sot"], "sot")
    box = load_frame(store, unit, 0)[1].boxes_xyxy_px[0].tolist()
    scenario = root / "scenario.yaml"
    scenario.write_text(f"prompts:\n  - {{time: 0.0, task: sot, templates: [{{object_id: 1, box: {box}}}]}}\n")
    folder = store.sot[unit.store_unit].frame_paths[0].parent
    bag = make_bag(folder, root / "bag", storage="mcap", compressed=True, prompts=read_scenario(scenario)).path
    code = _bag_eval(bag, "sot", checkpoint, root / "bag_eval", "--image-topic", "/camera/image_raw/compressed",
                     "--prompt-topic", "/uninext/prompt", "--gt", str(data["sot"]), "--gt-sequence", unit.name,
                     "--debug-images")
    assert code == 0
    return {"bag": bag, "out": root / "bag_eval", "offline": root / "offline", "name": unit.name}


def test_sot_bag_metrics_equal_the_offline_evaluator(sot_run, data, checkpoint) -> None:
    # bag_eval applies the node's parameters, the SOT continuity prior included; give the offline run the same.
    node_rule = ["--set", f"sot_motion_weight={SPECS['sot_motion_weight'].default}",
                 "--set", f"sot_motion_sigma={SPECS['sot_motion_sigma'].default}"]
    offline = _offline("sot", data["sot"], checkpoint, sot_run["offline"], "--limit", "1", *node_rule)
    metrics = _metrics(sot_run["out"])
    assert metrics == offline and metrics["sequences"] == 1
    result = json.loads((sot_run["out"] / "result.json").read_text())
    assert result["evaluated"]["frames"] == 6 and result["evaluated"]["segments_scored"] == 1
    assert [f["prompt_id"] for f in result["frames"]] == [0, 1, 1, 1, 1, 1]  # frame 0 is seen before the prompt
    assert (sot_run["out"] / "sot_success.png").is_file() and (sot_run["out"] / "report.html").is_file()


def test_output_bag_reads_back_with_rosbags_and_mcap(sot_run) -> None:
    output = sot_run["out"] / "output_bag"
    reader = open_bag(output)
    try:
        counts = {c.topic: c.msgcount for c in reader.connections}
        arrays = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(
            connections=[c for c in reader.connections if c.topic == "/uninext/instances"])]
        images = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(
            connections=[c for c in reader.connections if c.topic == "/camera/image_raw/compressed"])]
    finally:
        reader.close()
    assert counts == {"/camera/image_raw/compressed": 6, "/camera/camera_info": 6, "/uninext/prompt": 1,
                      "/uninext/instances": 6, "/uninext/debug_image": 6}
    assert [a.header.stamp for a in arrays] == [i.header.stamp for i in images]
    assert [a.task for a in arrays[1:]] == ["sot"] * 5 and all(len(a.instances) == 1 for a in arrays[1:])
    (path,) = glob.glob(str(output / "*.mcap"))
    with open(path, "rb") as stream:
        decoded = [(c.topic, m) for _, c, _, m in make_reader(stream, decoder_factories=[DecoderFactory()])
                   .iter_decoded_messages(topics=["/uninext/instances"])]
    assert len(decoded) == 6 and decoded[1][1].instances[0].track_id == 1
    assert decoded[1][1].instances[0].box.x_max == pytest.approx(arrays[1].instances[0].box.x_max)


def test_reference_bag_as_ground_truth(sot_run, checkpoint, tmp_path) -> None:
    # The run's own outputs as reference: frames 1..5 match exactly; frame 0 (answered before the prompt) has no
    # reference instance, so the target counts as absent there: success 5/6 at every threshold below 1.
    code = _bag_eval(sot_run["bag"], "sot", checkpoint, tmp_path, "--image-topic", "/camera/image_raw/compressed",
                     "--prompt-topic", "/uninext/prompt", "--reference-bag", str(sot_run["out"] / "output_bag"),
                     "--reference-topic", "/uninext/instances", "--storage", "sqlite3")
    assert code == 0
    metrics = _metrics(tmp_path)
    assert metrics["success_auc"] == pytest.approx(5 / 6 * 20 / 21)
    assert metrics["precision_20px"] == pytest.approx(5 / 6)
    assert (tmp_path / "output_bag" / "metadata.yaml").read_text().count("sqlite3") >= 1


def test_mot_sqlite3_raw_bag_with_a_scenario_equals_the_offline_evaluator(data, checkpoint, tmp_path) -> None:
    store, unit = _first_unit(data["mot"], "mot", categories=tuple(CLASSES.split(",")))
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(f"prompts:\n  - time: 0.0\n    task: mot\n    classes: [{CLASSES}]\n")
    bag = make_bag(store.mot[unit.store_unit].folder, tmp_path / "bag", storage="sqlite3").path
    code = _bag_eval(bag, "mot", checkpoint, tmp_path / "bag_eval", "--scenario", str(scenario), "--gt",
                     str(data["mot"]), "--categories", CLASSES, "--storage", "sqlite3")
    assert code == 0
    offline = _offline("mot", data["mot"], checkpoint, tmp_path / "offline", "--categories", CLASSES, "--limit", "1")
    metrics = _metrics(tmp_path / "bag_eval")
    assert metrics == offline and metrics["num_objects"] > 0
    reader = open_bag(tmp_path / "bag_eval" / "output_bag")
    try:
        assert {c.topic: c.msgcount for c in reader.connections}["/uninext/instances"] == 5
    finally:
        reader.close()


def test_vos_bag_with_mask_templates_equals_the_offline_evaluator(data, checkpoint, tmp_path) -> None:
    store, unit = _first_unit(data["vos"], "vos")
    sequence = store.vos[unit.store_unit]
    first_mask = sequence.mask_paths[sorted(sequence.mask_paths)[0]]
    targets = ", ".join(f"{{object_id: {o}, mask: {first_mask}, mask_value: {o}}}" for o in unit.referent_ids)
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(f"prompts:\n  - {{time: 0.0, task: vos, templates: [{targets}]}}\n")
    bag = make_bag(sequence.frame_paths[0].parent, tmp_path / "bag", storage="mcap").path
    assert _bag_eval(bag, "vos", checkpoint, tmp_path / "bag_eval", "--scenario", str(scenario), "--gt",
                     str(data["vos"])) == 0
    offline = _offline("vos", data["vos"], checkpoint, tmp_path / "offline", "--limit", "1")
    assert _metrics(tmp_path / "bag_eval") == offline


def test_still_images_bag_equals_the_offline_detection_evaluator(data, checkpoint, tmp_path) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(f"prompts:\n  - {{time: 0, task: detection, classes: [{CLASSES}]}}\n")
    bag = make_bag(data["detection"] / "images", tmp_path / "bag", compressed=True).path
    assert _bag_eval(bag, "detection", checkpoint, tmp_path / "bag_eval", "--image-topic",
                     "/camera/image_raw/compressed", "--scenario", str(scenario), "--gt", str(data["detection"])) == 0
    offline = _offline("detection", data["detection"], checkpoint, tmp_path / "offline")
    assert _metrics(tmp_path / "bag_eval") == offline and offline["images"] == 3
    # AP is 0 for random weights; the answers themselves match too: the output bag's arrays equal the session's
    # outputs on the dataset's images through the evaluator's runner.
    loaded = load_backend(preset="tiny", checkpoint=str(checkpoint))
    session = Session(loaded.backend, tokenizer=loaded.tokenizer,
                      config=SessionConfig(input_short_side=96, input_max_size=128))
    store = open_data(resolve_data(data["detection"], task="detection"))
    expected = [run_unit(session, store, unit).outputs[0].instances for unit in build_units(store, task="detection")]
    reader = open_bag(tmp_path / "bag_eval" / "output_bag")
    try:
        recorded = [msg_to_instances(reader.deserialize(raw, c.msgtype)) for c, _, raw in reader.messages(
            connections=[c for c in reader.connections if c.topic == "/uninext/instances"])]
    finally:
        reader.close()
    assert len(recorded) == 3 and all(len(r) == 100 for r in recorded)
    for got, want in zip(recorded, expected, strict=True):
        assert np.array_equal(got.boxes_xyxy, want.boxes_xyxy) and np.array_equal(got.scores, want.scores)
        assert np.array_equal(got.class_indices, want.class_indices) and got.labels == want.labels


# ------------------------------------------------------------------------------------------------ bad input


def _refused(argv_tail: list[str], out: Path, capsys, *, code: int = 2) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text("{}")  # an earlier run's result must not survive a failing one
    (out / "output_bag").mkdir(exist_ok=True)
    assert bag_eval_main(["--task", "sot", "--out", str(out), "--checkpoint", "x.safetensors", *argv_tail]) == code
    assert not (out / "result.json").exists() and not (out / "output_bag").exists()
    assert not list(out.glob(".*partial"))
    return capsys.readouterr().err


def test_bad_bags_and_topics_are_refused_by_name(sot_run, tmp_path, capsys) -> None:
    bag = sot_run["bag"]
    err = _refused(["--bag", str(tmp_path / "none")], tmp_path / "a", capsys)
    assert "none does not exist" in err
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9, storage_identifier: mcap, "
                                           "relative_file_paths: [damaged.mcap]}\n")
    (damaged / "damaged.mcap").write_bytes(b"\x89MCAP0\r\n" + b"\x00" * 40)
    err = _refused(["--bag", str(damaged)], tmp_path / "b", capsys)
    assert f"bag {damaged}" in err
    err = _refused(["--bag", str(bag), "--image-topic", "/camera/left"], tmp_path / "c", capsys)
    assert f"bag {bag} has no topic /camera/left" in err
    err = _refused(["--bag", str(bag), "--image-topic", "/camera/camera_info"], tmp_path / "d", capsys)
    assert "topic /camera/camera_info: type sensor_msgs/msg/CameraInfo, expected sensor_msgs/msg/Image" in err


def test_stamps_going_back_are_refused(tmp_path, capsys) -> None:
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from uninext_ros.conversions import ns_to_stamp

    output = BagOutput(tmp_path / "bag", storage="sqlite3", typestore=bag_typestore())
    for k, stamp in enumerate((3, 5, 4)):
        output.write("/camera/image_raw", IMAGE_TYPE, 10 + k, Image(header=Header(stamp=ns_to_stamp(stamp * 10**9)),
                                                                    height=2, width=2, encoding="rgb8", step=6,
                                                                    data=bytes(12)))
    bag = output.commit()
    err = _refused(["--bag", str(bag)], tmp_path / "out", capsys)
    assert f"bag {bag}, topic /camera/image_raw: frame 2 has stamp 4000000000 ns, not after" in err


def test_invalid_scenario_and_refused_prompts(sot_run, data, checkpoint, tmp_path, capsys) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("prompts:\n  - {time: 0.0, task: sot, templates: [{object_id: 1, box: [1, 2]}]}\n")
    err = _refused(["--bag", str(sot_run["bag"]), "--image-topic", "/camera/image_raw/compressed", "--scenario",
                    str(scenario)], tmp_path / "a", capsys)
    assert f"{scenario}:2: box must be [x_min, y_min, x_max, y_max]" in err
    # Valid on paper, refused by the session during the run: a target outside the frame. Exit 1, nothing left.
    scenario.write_text("prompts:\n  - {time: 0.0, task: sot, templates: [{object_id: 1, box: [500, 500, 600, 700]}]"
                        "}\n")
    err = bag_eval_main(["--bag", str(sot_run["bag"]), "--task", "sot", "--out", str(tmp_path / "b"),
                         "--checkpoint", str(checkpoint), "--image-topic", "/camera/image_raw/compressed",
                         "--scenario", str(scenario), *SIZE])
    assert err == 1
    message = capsys.readouterr().err
    assert f"{scenario}:2: prompt rejected" in message
    assert not (tmp_path / "b" / "result.json").exists() and not (tmp_path / "b" / "output_bag").exists()
    assert not list((tmp_path / "b").glob(".*partial"))


def test_ground_truth_and_model_mismatches_are_refused(sot_run, data, checkpoint, tmp_path, capsys) -> None:
    common = ["--bag", str(sot_run["bag"]), "--image-topic", "/camera/image_raw/compressed", "--prompt-topic",
              "/uninext/prompt"]
    err = _refused([*common, "--gt", str(data["sot"]), "--gt-sequence", "nope"], tmp_path / "a", capsys)
    assert "sequence 'nope' is not in" in err
    err = _refused([*common, "--gt", str(data["detection"])], tmp_path / "b", capsys)
    assert "task sot cannot be evaluated on coco data" in err
    code = bag_eval_main(["--task", "sot", "--out", str(tmp_path / "c"), "--checkpoint", str(checkpoint),
                          "--preset", "r50", *common])
    assert code == 2 and "r50" in capsys.readouterr().err
    assert not (tmp_path / "c" / "result.json").exists()
