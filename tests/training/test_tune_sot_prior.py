"""`training.tune_sot_prior`: replaying recorded candidates gives exactly what the session computes with the same
prior (so the grid search measures the real tracker), and bad input is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.tune_sot_prior import main, record, replay, search
from uninext_core.data.synthetic.__main__ import main as synth_main
from uninext_core.eval.cli import main as uninext_eval
from uninext_core.eval.sot import summarize_sot


@pytest.fixture(scope="module")
def sot_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "sot"
    assert synth_main(["--out", str(out), "--task", "sot", "--seed", "4", "--size", "96", "--num-videos", "2",
                       "--num-frames", "4"]) == 0
    return out


@pytest.fixture(scope="module")
def checkpoint(random_tiny_checkpoint) -> Path:
    return random_tiny_checkpoint


def test_replay_matches_the_session_run_with_the_same_prior(sot_data, checkpoint, tmp_path) -> None:
    sequences = record(checkpoint, sot_data, threads=1)
    assert len(sequences) == 2 and all(len(s.candidates) == 3 for s in sequences)
    grid = search(sequences, (0.0, 0.6), (1.5,))
    for weight in (0.0, 0.6):
        out = tmp_path / f"w{weight}"
        assert uninext_eval(["--task", "sot", "--data", str(sot_data), "--checkpoint", str(checkpoint), "--out",
                             str(out), "--threads", "1", "--set", f"sot_motion_weight={weight}",
                             "--set", "sot_motion_sigma=1.5"]) == 0
        metrics = json.loads((out / "result.json").read_text())["metrics"]
        assert grid[(weight, 1.5)][0] == pytest.approx(metrics["success_auc"], abs=1e-9)
        assert grid[(weight, 1.5)][1] == pytest.approx(metrics["precision_20px"], abs=1e-9)
    auc = summarize_sot([replay(s, weight=0.6, sigma=1.5) for s in sequences]).auc
    assert auc == grid[(0.6, 1.5)][0]


def test_cli_writes_the_search_and_refuses_bad_input(sot_data, checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "search"
    assert main(["--checkpoint", str(checkpoint), "--data", str(sot_data), "--out", str(out), "--weights", "0",
                 "0.5", "--sigmas", "1"]) == 0
    search_json = json.loads((out / "search.json").read_text())
    assert search_json["sequences"] == 2 and len(search_json["grid"]) == 2
    assert "| 0.5 |" in (out / "search.md").read_text()
    assert main(["--checkpoint", str(tmp_path / "none.safetensors"), "--data", str(sot_data), "--out",
                 str(out)]) == 2
    assert "none.safetensors does not exist" in capsys.readouterr().err
    assert main(["--checkpoint", str(checkpoint), "--data", str(sot_data), "--out", str(out), "--weights", "1.5"]) == 2
    assert "weights must lie in [0, 1]" in capsys.readouterr().err
