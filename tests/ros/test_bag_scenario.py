"""Prompt scenarios: reading YAML (errors name the line), prompts from a bag topic, and where prompts go among
the frames (category / expression before the first frame at their time, templates right after their frame)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from uninext_msgs.msg import BoundingBox, Prompt, RoiTemplate

from uninext_core.data.palette_masks import write_palette_png
from uninext_core.prompts import CategoryPrompt, ExpressionPrompt, TemplatePrompt
from uninext_ros.bag_scenario import bag_prompts, place_prompts, read_scenario
from uninext_ros.conversions import ns_to_stamp

SCENARIO = """\
# a comment line
prompts:
  - time: 0.0
    task: mot
    classes: [circle, red square]
  - time: 0.25
    expression: "The red circle, left!"
  - time: 0.3
    task: vos
    templates:
      - {object_id: 3, box: [1, 2, 11, 12], label: cup}
      - {object_id: 4, mask: mask.png, mask_value: 2}
"""
STAMPS = [1_000_000_000 + k * 100_000_000 for k in range(6)]  # 10 Hz from 1 s


def _write(tmp_path: Path, text: str) -> Path:
    label_map = np.zeros((16, 16), np.uint8)
    label_map[4:8, 5:9] = 2
    write_palette_png(tmp_path / "mask.png", label_map)
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return path


def test_scenario_prompts_and_their_place_among_frames(tmp_path) -> None:
    prompts = read_scenario(_write(tmp_path, SCENARIO))
    assert [p.source for p in prompts] == [f"{tmp_path / 'scenario.yaml'}:{line}" for line in (3, 6, 8)]
    first, second, third = (p.request for p in prompts)
    assert first.prompt == CategoryPrompt(("circle", "red square")) and first.task == "mot"
    assert second.prompt == ExpressionPrompt("The red circle, left!") and second.task is None
    assert isinstance(third.prompt, TemplatePrompt) and third.task == "vos"
    box_target, mask_target = third.prompt.targets
    assert box_target.box_xyxy == (1.0, 2.0, 11.0, 12.0) and box_target.label == "cup"
    assert mask_target.box_xyxy is None and mask_target.resolved_box_xyxy() == (5.0, 4.0, 9.0, 8.0)
    placed = place_prompts(prompts, stamps_ns=STAMPS, log_times_ns=[s + 7 for s in STAMPS])
    # 0.0 s: before frame 0; 0.25 s: before frame 3 (first frame at or after it); template at 0.3 s: drawn on
    # frame 3 (stamp 1.3 s), in force from frame 4.
    assert [p.before_frame for p in placed] == [0, 3, 4]
    assert placed[2].request.prompt.frame_stamp_ns == STAMPS[3]


def test_bag_prompt_topic_uses_the_log_clock_and_the_template_stamp() -> None:
    classes = Prompt(kind=Prompt.KIND_CATEGORIES, categories=["circle"], task="detection")
    template = Prompt(kind=Prompt.KIND_TEMPLATE, template_stamp=ns_to_stamp(STAMPS[1]), task="sot")
    template.templates = [RoiTemplate(object_id=1, has_box=True, box=BoundingBox(x_max=10.0, y_max=10.0))]
    prompts = bag_prompts([(STAMPS[0] - 1, classes), (STAMPS[1] + 5, template)], source="bag b topic /p")
    placed = place_prompts(prompts, stamps_ns=STAMPS, log_times_ns=STAMPS)
    assert [p.before_frame for p in placed] == [0, 2]
    assert placed[1].source == f"bag b topic /p message 1 (log time {STAMPS[1] + 5} ns)"
    late = bag_prompts([(STAMPS[4], template)], source="bag b topic /p")  # arrives 3 frames after its frame
    assert place_prompts(late, stamps_ns=STAMPS, log_times_ns=STAMPS)[0].before_frame == 4
    missing = Prompt(kind=Prompt.KIND_TEMPLATE, template_stamp=ns_to_stamp(123), templates=template.templates)
    with pytest.raises(ValueError, match=r"message 0 .*template_stamp 123 ns is the stamp of no frame"):
        place_prompts(bag_prompts([(STAMPS[2], missing)], source="bag b topic /p"), stamps_ns=STAMPS,
                      log_times_ns=STAMPS)
    with pytest.raises(ValueError, match=r"bag b topic /p message 0 .*: expression '  \.\.\. ' is empty"):
        bag_prompts([(0, Prompt(kind=Prompt.KIND_EXPRESSION, expression="  ... "))], source="bag b topic /p")


BAD_ENTRIES = [
    ("  - {time: 0.0, classes: [a], colour: red}", "unknown keys ['colour']"),
    ("  - {time: 0.0, task: sot, classes: [a, b]}", "task 'sot' does not fit a classes prompt"),
    ("  - {time: -1, classes: [a]}", "time must be a number of seconds >= 0"),
    ("  - {time: 0.0, classes: [a, A]}", "duplicate category name 'A'"),
    ("  - {time: 0.0, expression: '?!'}", "expression '?!' is empty"),
    ("  - {time: 0.0, classes: [a], expression: b}", "give exactly one of classes, expression, templates"),
    ("  - {time: 0.0, templates: [{object_id: 1, box: [5, 5, 2, 9]}]}", "needs x_max > x_min"),
    ("  - {time: 0.0, templates: [{object_id: 1, box: [1, 2, 3]}]}", "box must be [x_min, y_min, x_max, y_max]"),
    ("  - {time: 0.0, templates: [{mask: none.png}]}", "none.png"),
]


@pytest.mark.parametrize(("entry", "reason"), BAD_ENTRIES, ids=[r for _, r in BAD_ENTRIES])
def test_an_invalid_scenario_prompt_names_the_file_and_line(tmp_path, entry: str, reason: str) -> None:
    path = _write(tmp_path, f"prompts:\n  - {{time: 0.0, classes: [fine]}}\n{entry}\n")
    with pytest.raises(ValueError, match=r"scenario\.yaml:3: ") as error:
        read_scenario(path)
    assert reason in str(error.value)


def test_scenario_files_that_are_no_scenario(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"does not exist"):
        read_scenario(tmp_path / "none.yaml")
    with pytest.raises(ValueError, match=r"non-empty `prompts` list"):
        read_scenario(_write(tmp_path, "prompt: []\n"))
    with pytest.raises(ValueError, match=r"not valid YAML"):
        read_scenario(_write(tmp_path, "prompts: [\n"))
    with pytest.raises(ValueError, match=r"template time is after the last frame"):
        place_prompts(read_scenario(_write(tmp_path, "prompts:\n  - {time: 9.0, templates: [{box: [0, 0, 4, 4]}]}\n")),
                      stamps_ns=STAMPS, log_times_ns=STAMPS)
