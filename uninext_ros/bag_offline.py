"""Offline bag evaluation: the bag's frames and prompts through a perception Session, deterministically, as fast as
possible or at the bag's rate, then the session's answers scored against ground truth with the evaluator's scorers.

The timeline is the one uninext-eval builds (uninext_core.eval.runner.drive_session): prompts placed among the frames
(bag_scenario.place_prompts), frames processed in order. Every prompt starts a segment, scored as one evaluated unit
from the frame it applies to (template prompts: from the frame the targets are drawn on); frames before the first
prompt are processed but not scored. The output bag holds every input topic plus one uninext_msgs/InstanceArray per
frame on `output_topic` (and, when asked, an overlay sensor_msgs/Image on `debug_topic`), logged at the frame's time.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rclpy.serialization import serialize_message
from std_msgs.msg import Header

from uninext_core.eval.runner import FrameEvent, FrameOutput, PromptEvent, UnitRun, drive_session
from uninext_core.eval.scoring import Scores, make_scorer
from uninext_core.eval.units import EvalUnit
from uninext_core.prompts import CategoryPrompt, ExpressionPrompt, TemplatePrompt
from uninext_core.tasks.session import Session
from uninext_core.visualize import draw_instances
from uninext_ros.bag_io import IMAGE_TYPE, INSTANCES_TYPE, BagOutput, FrameHeader, image_frames
from uninext_ros.bag_scenario import PlacedPrompt
from uninext_ros.bag_truth import BagTruth
from uninext_ros.conversions import instances_to_msg, ns_to_stamp, rgb_to_image


@dataclass
class Segment:
    """Frames [start, end) answered under one prompt, and the VIS clip results at its end."""

    start: int
    end: int
    placed: PlacedPrompt
    task: str
    clip_results: list[Any] = field(default_factory=list)


@dataclass
class BagRun:
    """What the session answered: one output per frame (aligned with `headers`) and the prompt segments."""

    headers: list[FrameHeader]
    outputs: list[FrameOutput]
    segments: list[Segment]
    image_sizes: list[tuple[int, int]]


def _check_task(placed: PlacedPrompt, task: str) -> None:
    request = placed.request
    if request.task is not None and request.task != task:
        raise ValueError(f"{placed.source}: the prompt asks for task {request.task}, but {task} is evaluated")


def run_bag(session: Session, *, reader: Any, bag: Path, image_topic: str, headers: list[FrameHeader],
            placed: list[PlacedPrompt], task: str, rate: str = "max",
            on_frame: Callable[[FrameHeader, Any, FrameOutput], None] | None = None) -> BagRun:
    """Process every frame of `image_topic` with the prompts in place.

    Args:
        session: a fresh perception Session.
        reader, bag: the opened input bag and its path.
        image_topic: raw or compressed image topic.
        headers: its frame headers (bag_io.frame_headers).
        placed: prompts placed among the frames.
        task: the evaluated task; a prompt naming another task is refused.
        rate: "max" (as fast as possible) or "bag" (frames released at their recorded log-time spacing).
        on_frame: called with (header, rgb frame, output) after every frame.

    Raises:
        ValueError: a prompt for another task or one the session refuses (naming its source), a frame refused.
    """
    if rate not in ("max", "bag"):
        raise ValueError(f"rate must be 'max' or 'bag', got {rate!r}")
    for prompt in placed:
        _check_task(prompt, task)
    segments: list[Segment] = []
    sizes: list[tuple[int, int]] = []
    frames: dict[int, Any] = {}

    def events() -> Iterator[FrameEvent | PromptEvent]:
        pending = list(placed)
        started = time.perf_counter()
        for frame in image_frames(reader, bag, image_topic):
            while pending and pending[0].before_frame <= frame.index:
                yield from _prompt_event(pending.pop(0))
            if rate == "bag":
                due = started + (frame.log_time_ns - headers[0].log_time_ns) / 1e9
                time.sleep(max(0.0, due - time.perf_counter()))
            sizes.append(frame.rgb.shape[:2])
            frames[frame.stamp_ns] = frame.rgb
            yield FrameEvent(frame.stamp_ns, frame.rgb)
        for prompt in pending:
            yield from _prompt_event(prompt)

    def _prompt_event(prompt: PlacedPrompt) -> Iterator[PromptEvent]:
        if segments:
            segments[-1].clip_results = session.clip_results()
        template = isinstance(prompt.request.prompt, TemplatePrompt)
        segments.append(Segment(prompt.before_frame - 1 if template else prompt.before_frame, len(headers), prompt,
                                task))
        yield PromptEvent(prompt.request.prompt, task, prompt.request.prompt_id, source=prompt.source)

    header_of = {h.stamp_ns: h for h in headers}

    def handle(output: FrameOutput) -> None:
        rgb = frames.pop(output.stamp_ns)
        if on_frame is not None:
            on_frame(header_of[output.stamp_ns], rgb, output)

    outputs = drive_session(session, events(), handle)
    if segments:
        segments[-1].clip_results = session.clip_results()
    for current, following in itertools.pairwise(segments):
        current.end = following.start
    if len(outputs) != len(headers):
        raise ValueError(f"bag {bag}, topic {image_topic}: {len(headers)} frame headers but {len(outputs)} frames "
                         f"decoded")
    return BagRun(headers, outputs, [s for s in segments if s.end > s.start], sizes)


def _referents(segment: Segment, truth: BagTruth) -> tuple[int, ...]:
    prompt = segment.placed.request.prompt
    if isinstance(prompt, TemplatePrompt):
        return tuple(t.object_id for t in prompt.targets)
    if isinstance(prompt, ExpressionPrompt):
        return (truth.referent(prompt.text, source=segment.placed.source),)
    return ()


def score_bag(run: BagRun, truth: BagTruth, *, task: str, name: str) -> Scores:
    """The task's metrics over the prompt segments (see the module docstring).

    Raises:
        ValueError: no prompt (nothing to score), category segments with different class lists, or ground truth
            the scorer cannot use.
    """
    if not run.segments:
        raise ValueError("no prompt applies to any frame: give a prompt topic or a scenario to score the bag")
    class_lists = {p.names for s in run.segments if isinstance(p := s.placed.request.prompt, CategoryPrompt)}
    if len(class_lists) > 1:
        raise ValueError(f"category prompts with different class lists cannot be scored together: {class_lists}")
    categories = truth.category_list(next(iter(class_lists))) if class_lists else list(truth.categories)
    scorer = make_scorer(task, categories=categories)
    for segment in run.segments:
        frames = range(segment.start, segment.end)
        unit = EvalUnit(f"{name}[{segment.start}:{segment.end}]", 0, tuple(frames), task, None,
                        _referents(segment, truth))
        truths = [truth.truths[k] for k in frames]
        if any(t is None for t in truths):
            raise ValueError("ground truth of some frames is missing (reference bag not matched to the frames)")
        scorer.add(UnitRun(unit, truths, [run.outputs[k] for k in frames], list(segment.clip_results)))
    return scorer.result()


class OutputRecorder:
    """Collects the serialised output messages of a run, written with the input topics by `write`.

    Args:
        output_topic: topic of the instance arrays.
        debug_topic: topic of overlay images, or "" for none.
    """

    def __init__(self, *, output_topic: str, debug_topic: str = "") -> None:
        self.output_topic = output_topic
        self.debug_topic = debug_topic
        self.records: list[tuple[int, str, str, bytes]] = []

    def __call__(self, header: FrameHeader, rgb: Any, output: FrameOutput) -> None:
        msg_header = Header(stamp=ns_to_stamp(header.stamp_ns), frame_id=header.frame_id)
        msg = instances_to_msg(output.instances, msg_header, latency_ms=output.wall_ms)
        self.records.append((header.log_time_ns, self.output_topic, INSTANCES_TYPE, serialize_message(msg)))
        if self.debug_topic:
            overlay = rgb_to_image(draw_instances(rgb, output.instances), msg_header)
            self.records.append((header.log_time_ns, self.debug_topic, IMAGE_TYPE, serialize_message(overlay)))

    def write(self, reader: Any, output: BagOutput) -> int:
        """Write the input bag's messages and the recorded outputs in log-time order; returns the count."""
        inputs = ((log_time, connection.topic, connection.msgtype, raw, reader.typestore)
                  for connection, log_time, raw in reader.messages())
        outputs = ((log_time, topic, msgtype, data, None) for log_time, topic, msgtype, data in self.records)
        count = 0
        for log_time, topic, msgtype, data, typestore in heapq.merge(inputs, outputs, key=lambda item: item[0]):
            output.write_raw(topic, msgtype, log_time, data, typestore=typestore)
            count += 1
        return count
