"""run_bag's timeline on a recording session: prompt order among frames, segments, pacing at the bag's rate, and the
refusals of prompts for another task; score_bag's refusals."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from uninext_core.instances import Instances
from uninext_core.prompts import TemplatePrompt
from uninext_ros.bag_io import frame_headers, open_bag
from uninext_ros.bag_offline import run_bag, score_bag
from uninext_ros.bag_scenario import place_prompts, read_scenario
from uninext_ros.bag_truth import BagTruth
from uninext_ros.make_bag import make_bag

FPS = 10.0


class RecordingSession:
    """The Session calls run_bag makes, recorded; every frame is answered with no instance."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.prompt_id = 0

    def set_prompt(self, prompt, *, task=None, prompt_id=None) -> int:
        self.prompt_id += 1
        self.calls.append(("prompt", type(prompt).__name__, task, getattr(prompt, "frame_stamp_ns", None)))
        return self.prompt_id

    def process(self, frame: np.ndarray, stamp_ns: int) -> Instances:
        self.calls.append(("frame", stamp_ns))
        return Instances.empty(stamp_ns=stamp_ns, image_size=frame.shape[:2], task="detection",
                               prompt_id=self.prompt_id)

    def clip_results(self) -> list:
        return []


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    for k in range(5):
        cv2.imwrite(str(folder / f"{k:05d}.png"), np.full((16, 16, 3), 40 * k, np.uint8))
    return make_bag(folder, tmp_path_factory.mktemp("bag") / "bag", fps=FPS, start_ns=10**9).path


def _run(bag: Path, tmp_path: Path, scenario: str, *, task: str, rate: str = "max"):
    path = tmp_path / "scenario.yaml"
    path.write_text(scenario)
    reader = open_bag(bag)
    try:
        headers = frame_headers(reader, bag, "/camera/image_raw")
        placed = place_prompts(read_scenario(path), stamps_ns=[h.stamp_ns for h in headers],
                               log_times_ns=[h.log_time_ns for h in headers])
        session = RecordingSession()
        started = time.perf_counter()
        run = run_bag(session, reader=reader, bag=bag, image_topic="/camera/image_raw", headers=headers,
                      placed=placed, task=task, rate=rate)
        return run, session, time.perf_counter() - started
    finally:
        reader.close()


def test_prompts_and_segments_follow_the_timeline(bag, tmp_path) -> None:
    run, session, _ = _run(bag, tmp_path, "prompts:\n  - {time: 0.0, classes: [a]}\n"
                                          "  - {time: 0.3, classes: [a]}\n", task="mot")
    stamps = [10**9 + k * 100_000_000 for k in range(5)]
    assert session.calls == [("prompt", "CategoryPrompt", "mot", None), ("frame", stamps[0]), ("frame", stamps[1]),
                             ("frame", stamps[2]), ("prompt", "CategoryPrompt", "mot", None), ("frame", stamps[3]),
                             ("frame", stamps[4])]
    assert [(s.start, s.end) for s in run.segments] == [(0, 3), (3, 5)]
    assert [o.instances.prompt_id for o in run.outputs] == [1, 1, 1, 2, 2]
    assert run.image_sizes == [(16, 16)] * 5


def test_a_template_prompt_follows_its_frame_and_starts_its_segment_there(bag, tmp_path) -> None:
    run, session, _ = _run(bag, tmp_path, "prompts:\n  - {time: 0.15, task: sot, templates: [{box: [1, 1, 9, 9]}]}\n",
                           task="sot")
    template_stamp = 10**9 + 200_000_000  # first frame at or after 0.15 s
    assert session.calls[:4] == [("frame", 10**9), ("frame", 10**9 + 100_000_000), ("frame", template_stamp),
                                 ("prompt", "TemplatePrompt", "sot", template_stamp)]
    assert [(s.start, s.end) for s in run.segments] == [(2, 5)]
    assert isinstance(run.segments[0].placed.request.prompt, TemplatePrompt)


def test_rate_bag_keeps_the_recorded_spacing(bag, tmp_path) -> None:
    _, _, fast = _run(bag, tmp_path, "prompts:\n  - {time: 0.0, classes: [a]}\n", task="detection")
    _, _, paced = _run(bag, tmp_path, "prompts:\n  - {time: 0.0, classes: [a]}\n", task="detection", rate="bag")
    assert paced >= 4 / FPS - 0.01 and paced > fast


def test_prompt_for_another_task_and_nothing_to_score(bag, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"scenario\.yaml:2: the prompt asks for task mot, but vis is evaluated"):
        _run(bag, tmp_path, "prompts:\n  - {time: 0.0, task: mot, classes: [a]}\n", task="vis")
    run, _, _ = _run(bag, tmp_path, "prompts:\n  - {time: 0.0, classes: [a]}\n  - {time: 0.2, classes: [b]}\n",
                     task="detection")
    truth = BagTruth([None] * 5, [], {}, "test")
    with pytest.raises(ValueError, match=r"different class lists cannot be scored together"):
        score_bag(run, truth, task="detection", name="bag")
    run.segments.clear()
    with pytest.raises(ValueError, match=r"no prompt applies to any frame"):
        score_bag(run, truth, task="detection", name="bag")
