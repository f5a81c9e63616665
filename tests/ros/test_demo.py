"""The demo (`python -m uninext_ros.demo`): its pure parts on constructed inputs, then whole runs.

Whole runs start the CLI in its own process, which starts the real perception_node executable in another:
* random tiny weights (saved as a trained model would be): the plumbing (all three prompts accepted, arrays scored,
  video, PNG frames and summaries well-formed, a clean SIGINT stop);
* a broken weights file: the node fails to configure and the demo says so with the node's log tail;
* the shipped weights: the prompted objects are found (skipped while the package ships no weights; a strict
  expected failure while they are an interim training snapshot; with final weights, a phase whose card metric
  MODEL.md marks as below target is an expected failure that names the measured values).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from geometry_msgs.msg import PolygonStamped
from std_msgs.msg import String

from training.model_card import missed_targets
from training.ship_weights import shipped_is_final
from uninext_core.checkpoint.safetensors_io import save_weights
from uninext_core.config import tiny
from uninext_core.deploy.loading import shipped_weights
from uninext_core.model.build import build_model
from uninext_ros.conversions import stamp_to_ns
from uninext_ros.demo.cli import main as demo_main
from uninext_ros.demo.node_process import isolate_ros
from uninext_ros.demo.planner import (
    PlannedPrompt,
    PromptOutcome,
    choose_classes,
    choose_expression,
    choose_template,
    prompt_message,
)
from uninext_ros.demo.recorder import CAPTION_HEIGHT, captioned
from uninext_ros.demo.summary import (
    FOUND_SHARE,
    Observation,
    PhaseRecord,
    count_detection_matches,
    summarize_phase,
    top_instance_hits,
    write_summary,
)
from uninext_ros.demo.video import DemoVideo, FrameTruth, make_demo_video
from uninext_ros.node_command import perception_node_command

REPO_ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ constructed inputs
def _video(kinds: tuple[str, ...], present: list[list[bool]], boxes: dict[tuple[int, int], tuple[float, ...]],
           expressions: dict[int, tuple[str, ...]] | None = None) -> DemoVideo:
    """A DemoVideo with blank 8x8 frames: present[t][n], boxes[(t, n)] in pixels."""
    presence = np.array(present, dtype=bool)
    box_array = np.zeros((*presence.shape, 4))
    for (t, n), box in boxes.items():
        box_array[t, n] = box
    return DemoVideo(frames=[np.zeros((8, 8, 3), np.uint8) for _ in range(len(present))], kinds=kinds,
                     descriptions=tuple(f"object {k}" for k in kinds), boxes_xyxy_px=box_array, present=presence,
                     expressions=expressions or {})


def _truth(kinds: tuple[str, ...], boxes: list[tuple[float, ...]], tracks: list[int] | None = None) -> FrameTruth:
    return FrameTruth(np.array(tracks if tracks is not None else range(len(kinds)), np.int64), kinds,
                      np.array(boxes, np.float64).reshape(-1, 4))


def _obs(stamp_ns: int, received_ms: float, boxes: list[tuple[float, ...]], scores: list[float], labels: list[str],
         prompt_id: int = 1) -> Observation:
    return Observation(stamp_ns=stamp_ns, received_ns=stamp_ns + round(received_ms * 1e6), prompt_id=prompt_id,
                       task="x", boxes_xyxy_px=np.array(boxes, np.float64).reshape(-1, 4),
                       scores=np.array(scores, np.float64), labels=tuple(labels), latency_ms=0.0, inference_ms=10.0)


def test_playback_goes_back_and_forth_without_jumps() -> None:
    video = _video(("circle",), [[True]] * 4, {})
    assert [video.playback_index(k) for k in range(9)] == [0, 1, 2, 3, 2, 1, 0, 1, 2]


def test_demo_video_keeps_tight_boxes_of_the_visible_objects_only() -> None:
    video = make_demo_video(seed=3, size=96, num_frames=4)
    again = make_demo_video(seed=3, size=96, num_frames=4)
    assert np.array_equal(video.frames[2], again.frames[2]) and video.kinds == again.kinds
    assert video.image_size == (96, 96) and video.present.shape == (4, len(video.kinds))
    assert np.all(video.boxes_xyxy_px[~video.present] == 0)
    shown = video.boxes_xyxy_px[video.present]
    assert np.all(shown[:, 2] > shown[:, 0]) and np.all(shown[:, 3] > shown[:, 1]) and shown.max() <= 96
    truth = video.truth(0)
    assert list(truth.track_indices) == list(np.flatnonzero(video.present[0]))
    assert all(isinstance(text, str) and text.startswith("the ") for texts in video.expressions.values()
               for text in texts)


def test_class_list_names_each_shown_class_once_in_drawing_order() -> None:
    video = _video(("star", "circle", "star", "ring"), [[True, True, True, False], [True, False, True, False]], {})
    planned = choose_classes(video)
    assert planned.classes == ("star", "circle") and planned.text == "star, circle" and planned.kind == "classes"


def test_expression_goes_to_the_object_seen_longest_with_its_most_specific_text() -> None:
    video = _video(("star", "circle", "ring"), [[True, True, True], [False, True, True], [False, True, False]], {},
                   expressions={0: ("the star",), 1: ("the circle", "the red circle"), 2: ("the ring",)})
    planned = choose_expression(video)
    assert planned.target_track == 1 and planned.expression == "the red circle"
    with pytest.raises(ValueError, match="names it alone"):
        choose_expression(_video(("star",), [[True]] * 2, {}))


def test_template_prefers_another_object_than_the_referent_then_presence_then_size() -> None:
    boxes = {(1, 0): (0, 0, 4, 4), (1, 1): (0, 0, 2, 2), (1, 2): (4, 4, 8, 8), (0, 2): (4, 4, 8, 8)}
    video = _video(("star", "circle", "ring"), [[False, False, True], [True, True, True]], boxes)
    planned = choose_template(video, video_index=1, stamp_ns=77, avoid_track=2)
    assert planned.target_track == 0 and planned.box_xyxy_px == (0.0, 0.0, 4.0, 4.0)  # larger than the circle
    assert planned.frame_stamp_ns == 77 and planned.kind == "template"
    assert choose_template(video, video_index=1, stamp_ns=77).target_track == 2  # seen on both frames
    with pytest.raises(ValueError, match="shows no object"):
        choose_template(_video(("star",), [[False], [True]], {(1, 0): (0, 0, 2, 2)}), video_index=0, stamp_ns=1)


def test_prompt_messages_carry_the_class_list_the_expression_and_the_box_on_its_stamp() -> None:
    classes = prompt_message(PlannedPrompt("detect", "classes", "", classes=("star", "red ring")))
    assert isinstance(classes, String) and classes.data == "star, red ring"
    roi = prompt_message(PlannedPrompt("track", "template", "", box_xyxy_px=(1.0, 2.0, 5.0, 7.0),
                                       frame_stamp_ns=3_000_000_123))
    assert isinstance(roi, PolygonStamped) and stamp_to_ns(roi.header.stamp) == 3_000_000_123
    assert sorted((p.x, p.y) for p in roi.polygon.points) == [(1, 2), (1, 7), (5, 2), (5, 7)]


def test_detection_matches_need_the_class_and_iou_and_use_each_object_once() -> None:
    truth = _truth(("circle", "star"), [(0, 0, 10, 10), (20, 20, 30, 30)])
    # A star box on the circle does not count; two circle boxes on the circle match it once.
    matched = count_detection_matches(boxes_xyxy_px=np.array([(0, 0, 10, 10), (0, 0, 10, 10), (0, 0, 10, 10)]),
                                      scores=np.array([0.9, 0.8, 0.95]), labels=["circle", "circle", "star"],
                                      truth=truth)
    assert matched == 1
    # IoU of (20, 20, 30, 35) with (20, 20, 30, 30): 100 / 150 = 0.67 -> a match; (25, 20, 40, 30): 50 / 200 -> no.
    assert count_detection_matches(boxes_xyxy_px=np.array([(20, 20, 30, 35)]), scores=np.array([0.5]),
                                   labels=["Star "], truth=truth) == 1
    assert count_detection_matches(boxes_xyxy_px=np.array([(25, 20, 40, 30)]), scores=np.array([0.5]),
                                   labels=["star"], truth=truth) == 0
    assert count_detection_matches(boxes_xyxy_px=np.zeros((0, 4)), scores=np.zeros(0), labels=[], truth=truth) == 0


def test_top_instance_hit_uses_the_best_score_at_iou_one_half() -> None:
    target = np.array([0.0, 0.0, 10.0, 20.0])
    # (0, 0, 10, 10) against (0, 0, 10, 20): IoU 100 / 200 = 0.5, a hit at >= 0.5.
    assert top_instance_hits(boxes_xyxy_px=np.array([(50, 50, 60, 60), (0, 0, 10, 10)]),
                             scores=np.array([0.2, 0.7]), target_xyxy_px=target)
    assert not top_instance_hits(boxes_xyxy_px=np.array([(50, 50, 60, 60), (0, 0, 10, 10)]),
                                 scores=np.array([0.9, 0.7]), target_xyxy_px=target)
    assert not top_instance_hits(boxes_xyxy_px=np.zeros((0, 4)), scores=np.zeros(0), target_xyxy_px=target)


def test_detection_phase_summary_counts_recall_precision_rate_and_latency() -> None:
    truth = {100: _truth(("circle", "star"), [(0, 0, 10, 10), (20, 20, 30, 30)]),
             200: _truth(("circle",), [(0, 0, 10, 10)])}
    observations = [
        _obs(100, 50.0, [(0, 0, 10, 10), (20, 20, 30, 30)], [0.9, 0.8], ["circle", "star"]),
        _obs(200, 250.0, [(0, 0, 10, 10), (40, 40, 50, 50)], [0.9, 0.8], ["circle", "circle"]),  # 1 false positive
        _obs(300, 300.0, [(0, 0, 1, 1)], [0.9], ["circle"], prompt_id=2),  # another prompt: ignored
    ]
    planned = PlannedPrompt("detect", "classes", "circle, star", classes=("circle", "star"))
    record = PhaseRecord(planned, PromptOutcome(True, 1, "instance_segmentation", "", 0), frames_published=4)
    summary = summarize_phase(record, observations, truth.get)
    assert (summary.hits, summary.scored, summary.frames_processed, summary.frames_published) == (3, 3, 2, 4)
    assert summary.value == 1.0 and summary.precision == 0.75 and summary.found
    # Arrivals 100 ns + 50 ms and 200 ns + 250 ms: one interval of 0.2 s -> 5 Hz; latencies 50 and 250 ms.
    assert summary.rate_hz == pytest.approx(5.0, rel=1e-5)
    assert summary.latency_ms_median == pytest.approx(150.0) and summary.latency_ms_p90 == pytest.approx(230.0)
    # A detector that puts a box of every class on every object is not "found" for all its recall.
    spray = [_obs(100, 50.0, [(0, 0, 10, 10)] * 3 + [(20, 20, 30, 30)] * 3, [0.5] * 6,
                  ["circle", "star", "ring"] * 2)]
    sprayed = summarize_phase(record, spray, truth.get)
    assert sprayed.value == 1.0 and sprayed.precision == pytest.approx(2 / 6) and not sprayed.found


def test_reference_and_tracking_phases_score_only_frames_that_show_the_object(tmp_path: Path) -> None:
    truth = {1: _truth(("star", "ring"), [(0, 0, 10, 10), (30, 30, 40, 40)]),
             2: _truth(("ring",), [(30, 30, 40, 40)], tracks=[1]),  # the star (track 0) is out of view
             3: _truth(("star",), [(2, 0, 12, 10)])}
    refer = PlannedPrompt("refer", "expression", "the star", expression="the star", target_track=0)
    observations = [_obs(1, 5.0, [(0, 0, 10, 10)], [0.9], ["the star"]), _obs(2, 5.0, [(30, 30, 40, 40)], [0.9], ["x"]),
                    _obs(3, 5.0, [(30, 30, 40, 40)], [0.9], ["the star"]), _obs(4, 5.0, [], [], [])]  # 4: unknown
    summary = summarize_phase(PhaseRecord(refer, PromptOutcome(True, 1, "res", "", 0), 3), observations, truth.get)
    assert (summary.hits, summary.scored, summary.value, summary.found) == (1, 2, 0.5, True)  # 0.5 >= FOUND_SHARE
    assert summary.precision is None and summary.metric == "hit_rate"
    track = PlannedPrompt("track", "template", "box", target_track=0, box_xyxy_px=(0, 0, 10, 10), frame_stamp_ns=1)
    summary = summarize_phase(PhaseRecord(track, PromptOutcome(True, 1, "sot", "", 0), 3), observations, truth.get)
    assert (summary.hits, summary.scored, summary.value) == (0, 1, 0.0)  # frame 1 is the template frame itself
    refused = summarize_phase(PhaseRecord(track, PromptOutcome(False, 0, "", "no template encoder", 0), 0),
                              observations, truth.get)
    assert refused.frames_processed == 0 and refused.value is None and not refused.found
    json_path, md_path = write_summary(tmp_path, [summary, refused], run={"seed": 1})
    payload = json.loads(json_path.read_text())
    assert [p["phase"] for p in payload["phases"]] == ["track", "track"] and payload["match_iou"] == 0.5
    assert "refused: no template encoder" in md_path.read_text()


def test_caption_bar_sits_above_the_frame() -> None:
    frame = np.full((50, 60, 3), 200, np.uint8)
    out = captioned(frame, ("1/3 detect: a very long class list " * 4, "second line"))
    assert out.shape == (50 + CAPTION_HEIGHT, 60, 3) and np.array_equal(out[CAPTION_HEIGHT:], frame)
    assert out[:CAPTION_HEIGHT].max() > 200  # light text on the dark (32) bar


def test_node_arguments_and_ros_isolation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    args = perception_node_command({"checkpoint": "", "backend": "torch", "autostart": True,
                                    "score_threshold": 0.5})
    assert "__ns:=" not in " ".join(args)  # the root namespace unless one is given
    assert args[args.index("-p") + 1:] == ["backend:=torch", "-p", "autostart:=true", "-p", "score_threshold:=0.5"]
    for name in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_LOG_DIR"):
        monkeypatch.setenv(name, "unchanged")
    isolation = isolate_ros(domain_id=7, log_dir=tmp_path / "logs")
    assert (os.environ["ROS_DOMAIN_ID"], os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"]) == ("7", "LOCALHOST")
    assert os.environ["ROS_LOG_DIR"] == str(tmp_path / "logs") and not isolation.temporary_log_dir
    isolation.cleanup()
    assert (tmp_path / "logs").is_dir()  # a given folder is kept
    with pytest.raises(ValueError, match="domain_id"):
        isolate_ros(domain_id=300)


def test_arguments_that_cannot_work_are_refused_before_anything_starts(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_main(["--checkpoint", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path)]) == 2
    assert "missing.safetensors does not exist" in capsys.readouterr().err
    assert demo_main(["--backend", "onnxruntime", "--out", str(tmp_path)]) == 2
    assert "--engine-path" in capsys.readouterr().err
    assert demo_main(["--rate", "0", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "node.log").exists()


# ------------------------------------------------------------------------------------------------------ whole runs
@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = tiny()
    model = build_model(config)
    return save_weights(tmp_path_factory.mktemp("weights") / "tiny_random.safetensors", model.state_dict(),
                        config=config)


def _run_demo(out: Path, *arguments: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "uninext_ros.demo", "--out", str(out), "--threads", "1", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=REPO_ROOT, check=False)


def _explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"


@pytest.mark.ros
@pytest.mark.slow
def test_demo_gives_three_prompts_to_the_node_process_and_writes_video_frames_and_summary(
        random_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = _run_demo(out, "--checkpoint", str(random_checkpoint), "--seconds-per-phase", "4", "--seed", "2",
                       timeout_s=300)
    assert result.returncode == 0, _explain(result)
    assert "perception_node is active" in result.stdout and "latency ms med/p90" in result.stdout

    payload = json.loads((out / "summary.json").read_text())
    phases = payload["phases"]
    assert [p["phase"] for p in phases] == ["detect", "refer", "track"]
    assert [p["task"] for p in phases] == ["instance_segmentation", "res", "sot"]
    assert [p["prompt_id"] for p in phases] == [1, 2, 3] and all(p["accepted"] for p in phases), _explain(result)
    assert [p["metric"] for p in phases] == ["recall", "hit_rate", "success_rate"]
    for phase in phases:
        assert phase["frames_processed"] >= 2 and phase["frames_published"] >= 10, phase  # 4 s at 5 Hz
        assert phase["rate_hz"] > 0 and 0 < phase["latency_ms_median"] <= phase["latency_ms_p90"], phase
        assert phase["scored"] > 0 and 0.0 <= phase["value"] <= 1.0 and phase["hits"] <= phase["scored"], phase
    assert payload["run"]["node_exit_code"] == 0 and payload["run"]["seed"] == 2

    capture = cv2.VideoCapture(str(out / "demo.mp4"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert 6 <= len(frames) <= sum(p["frames_processed"] for p in phases)
    assert frames[0].shape == (320 + CAPTION_HEIGHT, 320, 3)
    for name in ("detect_1", "refer_1", "track_1"):
        png = cv2.imread(str(out / "frames" / f"{name}.png"))
        assert png is not None and png.shape == (320 + CAPTION_HEIGHT, 320, 3), name
    markdown = (out / "summary.md").read_text()
    assert all(f"| {p['phase']} | " in markdown for p in phases)
    assert (out / "node.log").stat().st_size > 0


@pytest.mark.ros
@pytest.mark.slow
def test_demo_shows_the_node_log_when_the_node_cannot_load_its_model(tmp_path: Path) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"these bytes are no safetensors file")
    result = _run_demo(tmp_path / "demo", "--checkpoint", str(broken), "--seconds-per-phase", "1", timeout_s=240)
    assert result.returncode == 1, _explain(result)
    assert "instead of 'active'" in result.stderr and "last lines of" in result.stderr, _explain(result)
    assert "configure failed" in result.stderr and "broken.safetensors" in result.stderr, _explain(result)


# The card metric that says whether the shipped model can pass each demo phase (MODEL.md's full-set block).
PHASE_CARD_METRIC = {"detect": "box AP50 (category prompts)", "refer": "REC accuracy (IoU ≥ 0.5)",
                     "track": "SOT success AUC"}


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.skipif(not shipped_weights("tiny").is_file(),
                    reason="the package ships no weights yet (uninext_core/assets/uninext_tiny.safetensors)")
@pytest.mark.xfail(shipped_weights("tiny").is_file() and not shipped_is_final(shipped_weights("tiny")), strict=True,
                   reason="the shipped weights are an interim training snapshot (MODEL.md): the demo is expected not "
                          "to find the prompted objects yet; strict, so a snapshot that does find them fails here")
def test_demo_with_the_shipped_model_finds_the_prompted_objects(tmp_path: Path) -> None:
    """Every phase must find its objects, except a phase whose card metric MODEL.md itself marks as below target:
    that one is an expected failure, named with the card's value, until training reaches the target."""
    out = tmp_path / "demo"
    result = _run_demo(out, "--seconds-per-phase", "10", timeout_s=400)
    assert result.returncode == 0, _explain(result)
    phases = {p["phase"]: p for p in json.loads((out / "summary.json").read_text())["phases"]}
    assert set(phases) == set(PHASE_CARD_METRIC), phases
    missed = missed_targets((REPO_ROOT / "MODEL.md").read_text())
    excused = []
    for name, phase in phases.items():
        assert phase["accepted"], (name, phase["reason"])
        assert phase["value"] is not None, (name, phase)
        found = phase["value"] >= FOUND_SHARE and phase["found"]
        if name == "detect":
            assert phase["precision"] >= FOUND_SHARE, phase
        if not found and PHASE_CARD_METRIC[name] in missed:
            excused.append(f"{name} ({phase['metric']} {phase['value']:.2f}; MODEL.md: "
                           f"{PHASE_CARD_METRIC[name]} {missed[PHASE_CARD_METRIC[name]]:.3f}, below target)")
            continue
        assert found, (name, phase)
    if excused:
        pytest.xfail("the shipped model misses the card targets these phases need: " + ", ".join(excused))
