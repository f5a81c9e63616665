"""Replay mode: the bag played into the live perception_node (its installed executable, a tiny model with random
weights) at the recorded rate, its answers recorded with rclpy and compared with the offline run; played faster than
the node can follow, dropped frames show up as such."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from uninext_core.checkpoint.safetensors_io import save_weights
from uninext_core.config import tiny
from uninext_core.data.synthetic.__main__ import main as synth_main
from uninext_core.eval.datasets import open_data, resolve_data
from uninext_core.eval.units import build_units, load_frame
from uninext_core.model.build import build_model
from uninext_ros.bag_eval import main as bag_eval_main
from uninext_ros.bag_io import open_bag
from uninext_ros.bag_scenario import read_scenario
from uninext_ros.make_bag import make_bag

pytestmark = [pytest.mark.ros, pytest.mark.slow]
SIZE = ["--short-side", "96", "--max-size", "128", "--threads", "1"]


@pytest.fixture(scope="module")
def sot_bag(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("replay")
    data = root / "sot"
    assert synth_main(["--out", str(data), "--task", "sot", "--seed", "11", "--size", "96", "--num-videos", "1",
                       "--num-frames", "6"]) == 0
    store = open_data(resolve_data(data, task="sot"))
    unit = build_units(store, task="sot")[0]
    box = load_frame(store, unit, 0)[1].boxes_xyxy_px[0].tolist()
    scenario = root / "scenario.yaml"
    scenario.write_text(f"prompts:\n  - {{time: 0.0, task: sot, templates: [{{object_id: 1, box: {box}}}]}}\n")
    bag = make_bag(store.sot[unit.store_unit].frame_paths[0].parent, root / "bag", compressed=True, fps=5.0,
                   prompts=read_scenario(scenario)).path
    torch.manual_seed(0)
    config = tiny()
    checkpoint = save_weights(root / "tiny.safetensors", build_model(config).state_dict(), config=config)
    return bag, data, checkpoint


def _replay(sot_bag, out: Path, *extra: str) -> dict:
    bag, data, checkpoint = sot_bag
    code = bag_eval_main(["--bag", str(bag), "--task", "sot", "--out", str(out), "--checkpoint", str(checkpoint),
                          "--image-topic", "/camera/image_raw/compressed", "--prompt-topic", "/uninext/prompt",
                          "--gt", str(data), "--replay", *SIZE, *extra])
    assert code == 0
    return json.loads((out / "result.json").read_text())


def test_replay_at_the_recorded_rate_is_compared_with_offline(sot_bag, tmp_path) -> None:
    result = _replay(sot_bag, tmp_path)
    replay = result["replay"]
    assert replay["frames"] == 6 and replay["answered"] + replay["dropped"] == 6 and replay["answered"] >= 1
    assert replay["prompts_refused"] == 0 and result["replay_prompts"][0].endswith("accepted")
    assert set(result["replay_metrics"]) == set(result["metrics"])
    answered = [f for f in result["replay_frames"] if f["wall_ms"] is not None]
    assert len(answered) == replay["answered"] and all(f["wall_ms"] > 0 for f in answered)
    report = (tmp_path / "report.md").read_text()
    assert "## Replay into the live node vs offline" in report and "| success_auc |" in report
    reader = open_bag(tmp_path / "replay_bag")
    try:
        counts = {c.topic: c.msgcount for c in reader.connections}
    finally:
        reader.close()
    assert counts["/uninext/instances"] == replay["answered"] and counts["/camera/image_raw/compressed"] == 6


def test_replay_faster_than_the_node_shows_dropped_frames(sot_bag, tmp_path) -> None:
    result = _replay(sot_bag, tmp_path, "--replay-speed", "50")
    replay = result["replay"]
    assert replay["dropped"] >= 1 and replay["answered"] + replay["dropped"] == 6
    assert replay["drop_rate"] == pytest.approx(replay["dropped"] / 6)
    dropped = [f for f in result["replay_frames"] if f["wall_ms"] is None]
    assert len(dropped) == replay["dropped"] and all(f["instances"] == 0 for f in dropped)
