"""The scripted planner: which prompts the demo gives (pure functions) and a node that gives them over ROS topics.

Three phases, each prompt chosen from the video's ground truth so that the answer is known:
  detect  a class list: every class shown in the video (`prompt/classes`, std_msgs/String);
  refer   an expression that names one object alone, from the synthetic world's resolver (`prompt/text`);
  track   an ROI template: the box of one object on a frame the node has processed, by that frame's stamp
          (`prompt/roi`, geometry_msgs/PolygonStamped).
The planner learns that a prompt was accepted, its id and its task from the node's latched `prompt/current` topic,
and why one was refused from the node's `/diagnostics` (`last_prompt_error`), as any planner on these topics can.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point32, Polygon, PolygonStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header, String
from uninext_msgs.msg import Prompt

from uninext_ros.conversions import ns_to_stamp, stamp_to_ns
from uninext_ros.demo.camera import FRAME_ID
from uninext_ros.demo.video import DemoVideo
from uninext_ros.qos import latched_qos

PromptKind = Literal["classes", "expression", "template"]
PHASES: tuple[str, ...] = ("detect", "refer", "track")
# Topic (below the node's namespace) each prompt kind is published on.
PROMPT_TOPICS: dict[PromptKind, str] = {"classes": "prompt/classes", "expression": "prompt/text",
                                        "template": "prompt/roi"}


@dataclass(frozen=True)
class PlannedPrompt:
    """One prompt of the script.

    Attributes:
        phase: "detect", "refer" or "track".
        kind: "classes", "expression" or "template".
        text: what a person reads in the log and the summary.
        classes: class names (kind "classes").
        expression: the referring expression (kind "expression").
        target_track: track index of the referent (expression) or target (template); -1 for classes.
        box_xyxy_px: the template box (x_min, y_min, x_max, y_max) in pixels of the template frame.
        frame_stamp_ns: header stamp of the template frame.
    """

    phase: str
    kind: PromptKind
    text: str
    classes: tuple[str, ...] = ()
    expression: str = ""
    target_track: int = -1
    box_xyxy_px: tuple[float, float, float, float] | None = None
    frame_stamp_ns: int = 0


def choose_classes(video: DemoVideo) -> PlannedPrompt:
    """Every class shown in the video, in the order the tracks are drawn (each name once)."""
    shown = [video.kinds[n] for n in range(len(video.kinds)) if video.present[:, n].any()]
    if not shown:
        raise ValueError("the demo video shows no object; choose another seed")
    names = tuple(dict.fromkeys(shown))
    return PlannedPrompt("detect", "classes", ", ".join(names), classes=names)


def choose_expression(video: DemoVideo) -> PlannedPrompt:
    """The expression of the track seen on the most frames (then the most specific expression, then draw order).

    Raises:
        ValueError: no track has an expression that names it alone.
    """
    candidates = [n for n, texts in video.expressions.items() if texts and video.present[:, n].any()]
    if not candidates:
        raise ValueError("no object of the demo video has an expression that names it alone; choose another seed")
    presence = video.present.mean(axis=0)

    def most_words(n: int) -> str:
        return max(video.expressions[n], key=lambda text: (len(text.split()), text))

    best = max(candidates, key=lambda n: (presence[n], len(most_words(n).split()), -n))
    text = most_words(best)
    return PlannedPrompt("refer", "expression", text, expression=text, target_track=best)


def choose_template(video: DemoVideo, *, video_index: int, stamp_ns: int, avoid_track: int = -1) -> PlannedPrompt:
    """The box of one object visible on video frame `video_index`, published with header stamp `stamp_ns`.

    Prefers a track other than `avoid_track` (the expression's referent, so the demo shows a second object), then the
    track seen on the most frames, then the largest box on that frame.

    Raises:
        ValueError: no object is visible on that frame.
    """
    truth = video.truth(video_index)
    if len(truth.track_indices) == 0:
        raise ValueError(f"video frame {video_index} shows no object to draw a template box on")
    presence = video.present.mean(axis=0)
    areas = np.prod(truth.boxes_xyxy_px[:, 2:] - truth.boxes_xyxy_px[:, :2], axis=1)
    order = max(range(len(truth.track_indices)), key=lambda k: (
        int(truth.track_indices[k]) != avoid_track, presence[truth.track_indices[k]], areas[k]))
    track = int(truth.track_indices[order])
    box = tuple(float(v) for v in truth.boxes_xyxy_px[order])
    text = f"box [{box[0]:.0f}, {box[1]:.0f}, {box[2]:.0f}, {box[3]:.0f}] of the {video.descriptions[track]}"
    return PlannedPrompt("track", "template", text, target_track=track, box_xyxy_px=box,  # type: ignore[arg-type]
                         frame_stamp_ns=int(stamp_ns))


class PromptOutcome(NamedTuple):
    """What became of a published prompt.

    Attributes:
        accepted: the node confirmed it on `prompt/current`.
        prompt_id: the id the node gave it (0 when refused).
        task: the task the node runs for it ("" when refused).
        reason: why it was refused ("" when accepted).
        sent_ns: wall-clock time it was published (ns).
    """

    accepted: bool
    prompt_id: int
    task: str
    reason: str
    sent_ns: int


def _matches(planned: PlannedPrompt, current: Prompt) -> bool:
    """Whether the node's current prompt is `planned`."""
    if planned.kind == "classes":
        return current.kind == Prompt.KIND_CATEGORIES and \
            [c.strip().lower() for c in current.categories] == [c.strip().lower() for c in planned.classes]
    if planned.kind == "expression":
        return current.kind == Prompt.KIND_EXPRESSION and current.expression.strip() == planned.expression.strip()
    return current.kind == Prompt.KIND_TEMPLATE and stamp_to_ns(current.template_stamp) == planned.frame_stamp_ns


def prompt_message(planned: PlannedPrompt) -> String | PolygonStamped:
    """The message for the prompt's topic: the class list or the expression as text, the box as a polygon."""
    if planned.kind == "classes":
        return String(data=", ".join(planned.classes))
    if planned.kind == "expression":
        return String(data=planned.expression)
    if planned.box_xyxy_px is None:
        raise ValueError(f"template prompt of phase {planned.phase!r} has no box")
    x0, y0, x1, y1 = planned.box_xyxy_px
    corners = [Point32(x=x0, y=y0), Point32(x=x1, y=y0), Point32(x=x1, y=y1), Point32(x=x0, y=y1)]
    return PolygonStamped(header=Header(stamp=ns_to_stamp(planned.frame_stamp_ns), frame_id=FRAME_ID),
                          polygon=Polygon(points=corners))


class ScriptedPlanner(Node):
    """Publishes prompts on the node's prompt topics and waits for the node's verdict (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__("demo_planner")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._prompt_publishers = {
            "classes": self.create_publisher(String, PROMPT_TOPICS["classes"], reliable),
            "expression": self.create_publisher(String, PROMPT_TOPICS["expression"], reliable),
            "template": self.create_publisher(PolygonStamped, PROMPT_TOPICS["template"], reliable),
        }
        self._condition = threading.Condition()
        self._current: list[Prompt] = []
        self._errors: list[tuple[int, str]] = []  # (diagnostics header stamp ns, last_prompt_error)
        self.create_subscription(Prompt, "prompt/current", self._on_current, latched_qos())
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)

    def _on_current(self, msg: Prompt) -> None:
        with self._condition:
            self._current.append(msg)
            self._condition.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {item.key: item.value for item in status.values}
            if "last_prompt_error" in values:
                with self._condition:
                    self._errors.append((stamp_to_ns(msg.header.stamp), values["last_prompt_error"]))
                    self._condition.notify_all()
                return

    def wait_for_node(self, timeout_s: float) -> bool:
        """Whether the node subscribed to all three prompt topics within `timeout_s` (DDS discovery)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(p.get_subscription_count() > 0 for p in self._prompt_publishers.values()):
                return True
            time.sleep(0.05)
        return False

    def send(self, planned: PlannedPrompt, *, timeout_s: float = 15.0) -> PromptOutcome:
        """Publish `planned` and wait until the node confirms it (prompt/current) or reports a refusal (diagnostics).

        A refusal is read from a diagnostics message stamped after the prompt was sent whose `last_prompt_error`
        is new, or is still set two seconds later (the node clears it on the next accepted prompt).
        """
        with self._condition:
            seen_current, seen_errors = len(self._current), len(self._errors)
            error_before = self._errors[-1][1] if self._errors else ""
        sent_ns = time.time_ns()
        self._prompt_publishers[planned.kind].publish(prompt_message(planned))
        deadline = time.monotonic() + timeout_s
        with self._condition:
            while True:
                for current in self._current[seen_current:]:
                    if _matches(planned, current):
                        return PromptOutcome(True, int(current.prompt_id), current.task, "", sent_ns)
                for stamp_ns, error in self._errors[seen_errors:]:
                    if stamp_ns > sent_ns and error and (error != error_before or stamp_ns > sent_ns + 2_000_000_000):
                        return PromptOutcome(False, 0, "", error, sent_ns)
                left = deadline - time.monotonic()
                if left <= 0:
                    latest = self._errors[-1][1] if self._errors else ""
                    reason = (f"the node did not confirm the prompt on prompt/current within {timeout_s:.0f} s"
                              + (f"; its last prompt error: {latest}" if latest else ""))
                    return PromptOutcome(False, 0, "", reason, sent_ns)
                self._condition.wait(timeout=min(left, 0.2))
