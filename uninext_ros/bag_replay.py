"""Replay mode: play a bag into the live perception_node over ROS topics at the recorded rate and record what it
publishes, so a user sees what the robot would have seen, dropped frames included.

The installed `perception_node` executable runs in its own process (in a fresh namespace) with the model, backend
and thresholds of the offline run; this process plays the image topic at its recorded log-time spacing (times
`speed`), sets the prompts through the node's `set_prompt` service at their place in the timeline (waiting for the
answer, so a prompt is in force before the frames that follow it; template prompts carry their frame in
`Prompt.template_image`, which the node may have dropped), and records every `instances` message with its arrival
time. A frame without an answer was dropped by the node (it always takes the newest frame). Per-frame latency is
arrival minus publication, as a subscriber on the robot would measure it.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from uninext_msgs.msg import InstanceArray
from uninext_msgs.srv import SetPrompt

from uninext_core.eval.runner import FrameOutput
from uninext_core.instances import Instances
from uninext_core.prompts import TemplatePrompt
from uninext_ros.bag_io import COMPRESSED_TYPE, INSTANCES_TYPE, BagOutput, FrameHeader, bag_typestore, connections_of
from uninext_ros.bag_offline import OutputRecorder
from uninext_ros.bag_scenario import PlacedPrompt
from uninext_ros.conversions import compressed_to_rgb, msg_to_instances, ns_to_stamp, rgb_to_image, stamp_to_ns
from uninext_ros.node_command import perception_node_command
from uninext_ros.prompt_conversions import msg_from_request

logger = logging.getLogger(__name__)


@dataclass
class ReplayResult:
    """What the live node answered.

    Attributes:
        outputs: one per frame; a dropped frame has empty Instances with prompt_id 0 and wall_ms NaN.
        received: per frame, whether the node answered it.
        latency_ms: per answered frame, arrival minus publication (milliseconds).
        prompt_answers: (source, accepted, reason) of every prompt sent.
        node_log: the node's console output (last lines kept for errors).
        bag: the replay bag written (input topics and the node's instance arrays at their arrival time).
    """

    outputs: list[FrameOutput]
    received: list[bool]
    latency_ms: list[float]
    prompt_answers: list[tuple[str, bool, str]]
    node_log: list[str] = field(default_factory=list)
    bag: Path | None = None


class _Peer:
    """The camera and planner side: publishes frames, calls set_prompt, records instance arrays."""

    def __init__(self, *, namespace: str, compressed: bool) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"bag_replay_{uuid.uuid4().hex[:6]}", namespace=namespace,
                                      context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        frames_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_publisher = self.node.create_publisher(CompressedImage if compressed else Image,
                                                          "image/compressed" if compressed else "image", frames_qos)
        outputs_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.arrivals: list[tuple[float, InstanceArray]] = []
        self.node.create_subscription(InstanceArray, "instances",
                                      lambda msg: self.arrivals.append((time.monotonic(), msg)), outputs_qos)
        self.client = self.node.create_client(SetPrompt, "set_prompt")
        self.template_frames: dict[int, Image] = {}  # stamp -> frame carried by template prompts

    def spin_until(self, condition: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.01)
        return bool(condition())

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def _prompt_message(placed: PlacedPrompt, *, task: str, template_frames: dict[int, Image]) -> Any:
    request = placed.request
    header = Header(stamp=ns_to_stamp(0))
    msg = msg_from_request(request, prompt_id=request.prompt_id or 0, task=request.task or task, header=header)
    if isinstance(request.prompt, TemplatePrompt):
        msg.template_image = template_frames[request.prompt.frame_stamp_ns]
    return msg


def replay_bag(*, reader: Any, bag: Path, image_topic: str, headers: Sequence[FrameHeader],
               placed: Sequence[PlacedPrompt], task: str, image_sizes: Sequence[tuple[int, int]],
               node_parameters: dict[str, Any], out_bag: Path | None = None, storage: str = "mcap",
               speed: float = 1.0, startup_timeout_s: float = 300.0, drain_timeout_s: float = 30.0,
               output_topic: str = "/uninext/instances") -> ReplayResult:
    """Play the bag into a live perception_node and record its answers (see the module docstring).

    Args:
        reader, bag: the opened input bag and its path.
        image_topic: raw or compressed image topic.
        headers: its frame headers; image_sizes: (H, W) of each frame.
        placed: prompts placed among the frames.
        task: task for prompts that name none.
        node_parameters: perception_node parameters (checkpoint, preset, backend, thresholds, input sizes, ...).
        out_bag: where to write the replay bag (None: no bag).
        storage: its storage.
        speed: playback speed factor (1: recorded rate).
        startup_timeout_s: how long the node may take to load its model.
        drain_timeout_s: how long to wait for answers after the last frame.

    Raises:
        RuntimeError: the node did not start or died (its last log lines included).
    """
    connections = connections_of(reader, bag, image_topic, (COMPRESSED_TYPE, "sensor_msgs/msg/Image"))
    compressed = connections[0].msgtype == COMPRESSED_TYPE
    namespace = f"/uninext_replay_{uuid.uuid4().hex[:8]}"
    parameters = {**node_parameters, "use_compressed": compressed, "image_topic": "image", "initial_classes": ""}
    process = subprocess.Popen(perception_node_command(parameters, namespace=namespace), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(process.stdout), daemon=True).start()
    message_type = CompressedImage if compressed else Image
    peer = _Peer(namespace=namespace, compressed=compressed)
    published: dict[int, float] = {}
    answers: list[tuple[str, bool, str]] = []
    try:
        if not peer.client.wait_for_service(timeout_sec=startup_timeout_s) or process.poll() is not None:
            raise RuntimeError("perception_node did not offer set_prompt:\n" + "".join(log[-20:]))
        peer.spin_until(lambda: peer.image_publisher.get_subscription_count() > 0, 30.0)
        pending = sorted(placed, key=lambda p: p.before_frame)
        template_stamps = {p.request.prompt.frame_stamp_ns for p in pending if isinstance(p.request.prompt,
                                                                                            TemplatePrompt)}
        start = time.monotonic()
        raw_frames = reader.messages(connections=connections)
        for header, (_, _, raw) in zip(headers, raw_frames, strict=True):
            msg = deserialize_message(bytes(raw), message_type)
            while pending and pending[0].before_frame <= header.index:
                answers.append(_send_prompt(peer, pending.pop(0), task, log))
            due = start + (header.log_time_ns - headers[0].log_time_ns) / 1e9 / speed
            peer.spin_until(lambda due=due: time.monotonic() >= due, max(0.0, due - time.monotonic()) + 0.01)
            if header.stamp_ns in template_stamps:
                peer.template_frames[header.stamp_ns] = (rgb_to_image(compressed_to_rgb(msg), msg.header)
                                                         if compressed else msg)
            peer.image_publisher.publish(msg)
            published[header.stamp_ns] = time.monotonic()
        for prompt in pending:
            answers.append(_send_prompt(peer, prompt, task, log))
        last = headers[-1].stamp_ns
        peer.spin_until(lambda: last in {stamp_to_ns(m.header.stamp) for _, m in peer.arrivals}
                        or process.poll() is not None, drain_timeout_s)
        peer.spin_until(lambda: False, 0.5)  # late arrivals of frames answered after the last one was taken
        answered = {stamp_to_ns(m.header.stamp): (t, m) for t, m in peer.arrivals}
        if process.poll() is not None:
            raise RuntimeError("perception_node exited during the replay:\n" + "".join(log[-20:]))
    finally:
        peer.close()
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    result = _collect(headers, image_sizes, answered, published, task)
    result.prompt_answers, result.node_log = answers, log[-50:]
    if out_bag is not None:
        recorder = OutputRecorder(output_topic=output_topic)
        for arrival, msg in sorted(answered.values(), key=lambda item: item[0]):
            log_time = headers[0].log_time_ns + round((arrival - start) * 1e9 * speed)
            recorder.records.append((log_time, output_topic, INSTANCES_TYPE, serialize_message(msg)))
        output = BagOutput(out_bag, storage=storage, typestore=bag_typestore())
        try:
            recorder.write(reader, output)
        except BaseException:
            output.abort()
            raise
        result.bag = output.commit()
    return result


def _send_prompt(peer: _Peer, placed: PlacedPrompt, task: str, log: list[str]) -> tuple[str, bool, str]:
    msg = _prompt_message(placed, task=task, template_frames=peer.template_frames)
    future = peer.client.call_async(SetPrompt.Request(prompt=msg))
    if not peer.spin_until(future.done, 120.0):
        raise RuntimeError(f"{placed.source}: set_prompt got no answer:\n" + "".join(log[-20:]))
    answer = future.result()
    if not answer.accepted:
        logger.warning("replay: %s refused by the node: %s", placed.source, answer.reason)
    return placed.source, bool(answer.accepted), str(answer.reason)


def _collect(headers: Sequence[FrameHeader], image_sizes: Sequence[tuple[int, int]],
             answered: dict[int, tuple[float, Any]], published: dict[int, float], task: str) -> ReplayResult:
    outputs, received, latency = [], [], []
    for header, size in zip(headers, image_sizes, strict=True):
        if header.stamp_ns in answered:
            arrival, msg = answered[header.stamp_ns]
            wall_ms = (arrival - published[header.stamp_ns]) * 1e3
            outputs.append(FrameOutput(header.stamp_ns, msg_to_instances(msg, image_size=tuple(size)), wall_ms))
            received.append(True)
            latency.append(wall_ms)
        else:
            outputs.append(FrameOutput(header.stamp_ns, Instances.empty(stamp_ns=header.stamp_ns, image_size=size,
                                                                        task=task, prompt_id=0), float("nan")))
            received.append(False)
    return ReplayResult(outputs, received, latency, [])
