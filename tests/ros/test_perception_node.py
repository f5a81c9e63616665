"""The perception node over real rclpy/DDS, with a stand-in session (tests/ros/fake_session.py).

Covers the node's own job: lifecycle, frames in / instance arrays out with the source header, prompt topics and
services, multi-camera routing, newest-frame processing with counted drops, parameters, diagnostics, debug images.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Point32, PolygonStamped
from lifecycle_msgs.msg import State as StateMsg
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String
from uninext_msgs.msg import InstanceArray, Prompt
from uninext_msgs.srv import Reset, SetPrompt

from uninext_ros.conversions import ns_to_stamp, rgb_to_image
from uninext_ros.perception_node import PerceptionNode
from uninext_ros.qos import latched_qos, output_qos

pytestmark = pytest.mark.ros

FAKE_SESSION = Path(__file__).with_name("fake_session.py")


def _fake_module():
    spec = importlib.util.spec_from_file_location("uninext_test_fake_session", FAKE_SESSION)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


fake = _fake_module()


class Harness:
    """The node under test plus a peer node (publishers, subscribers, clients) spun by one executor thread."""

    def __init__(self, node: PerceptionNode, peer) -> None:
        self.node, self.peer = node, peer
        self.received: dict[str, list[Any]] = {}

    def listen(self, topic: str, msg_type, qos=None) -> list[Any]:
        bucket = self.received.setdefault(topic, [])
        self.peer.create_subscription(msg_type, topic, bucket.append, qos or output_qos())
        return bucket

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    def call(self, client, request):
        assert client.wait_for_service(timeout_sec=10.0), f"{client.srv_name} not available"
        future = client.call_async(request)
        self.wait_for(future.done, what=f"{client.srv_name} answer")
        return future.result()


@contextmanager
def running_node(provider, **overrides: Any) -> Iterator[Harness]:
    namespace = f"/t{uuid.uuid4().hex[:8]}"
    parameters = [Parameter(k, value=v) for k, v in overrides.items()]
    with rclpy.init():
        node = PerceptionNode(namespace=namespace, session_provider=provider, parameter_overrides=parameters)
        peer = rclpy.create_node("peer", namespace=namespace)
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        executor.add_node(peer)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            yield Harness(node, peer)
        finally:
            node.stop()
            executor.shutdown(timeout_sec=5.0)
            spinner.join(timeout=5.0)
            node.destroy_node()
            peer.destroy_node()


def _frame(stamp_ns: int, size: tuple[int, int] = (48, 64), encoding: str = "rgb8") -> Image:
    rgb = np.full((*size, 3), 100, np.uint8)
    msg = rgb_to_image(rgb, Header(stamp=ns_to_stamp(stamp_ns), frame_id="cam"))
    msg.encoding = encoding
    return msg


def _activate(node: PerceptionNode) -> None:
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS


def _publish_until(h: Harness, publisher, make_msg: Callable[[int], Any], bucket: list, count: int,
                   period: float = 0.05, timeout: float = 15.0) -> None:
    h.wait_for(lambda: publisher.get_subscription_count() > 0, what="a subscriber on " + publisher.topic_name)
    deadline = time.monotonic() + timeout
    i = 0
    while len(bucket) < count and time.monotonic() < deadline:
        i += 1
        publisher.publish(make_msg(i))
        time.sleep(period)
    assert len(bucket) >= count, f"only {len(bucket)} of {count} messages on {publisher.topic_name}"


def test_frames_and_prompts_in_instance_arrays_out_with_source_header() -> None:
    provider = fake.FakeProvider()
    with running_node(provider) as h:
        _activate(h.node)
        out = h.listen("instances", InstanceArray)
        current = h.listen("prompt/current", Prompt, latched_qos())
        classes = h.peer.create_publisher(String, "prompt/classes", 10)
        h.wait_for(lambda: classes.get_subscription_count() > 0, what="prompt/classes subscriber")
        classes.publish(String(data="red mug, laptop"))
        h.wait_for(lambda: current, what="latched current prompt")
        assert list(current[-1].categories) == ["red mug", "laptop"] and current[-1].prompt_id == 1

        images = h.peer.create_publisher(Image, "image", 10)
        _publish_until(h, images, lambda i: _frame(1_000_000_000 + i), out, 3)
        first = out[0]
        assert first.header.frame_id == "cam" and first.header.stamp.sec == 1 and first.header.stamp.nanosec > 0
        assert first.task == "instance_segmentation" and first.prompt_id == 1
        assert [i.label for i in first.instances] == ["red mug"] and first.instances[0].mask.counts
        assert first.inference_ms == 2.0 and first.latency_ms > 0

        # A prompt switch through the service takes effect on the next processed frame.
        client = h.peer.create_client(SetPrompt, "set_prompt")
        answer = h.call(client, SetPrompt.Request(prompt=Prompt(kind=Prompt.KIND_EXPRESSION, expression="the mug")))
        assert answer.accepted and answer.reason == "" and answer.prompt_id == 2
        count_before = len(out)
        _publish_until(h, images, lambda i: _frame(2_000_000_000 + i), out, count_before + 1)
        switched = out[count_before]
        assert switched.prompt_id == 2 and switched.task == "res" and switched.instances[0].label == "the mug"


def test_bad_prompts_are_rejected_with_a_reason_and_the_previous_prompt_stays() -> None:
    provider = fake.FakeProvider()
    with running_node(provider, initial_classes="person") as h:
        _activate(h.node)
        client = h.peer.create_client(SetPrompt, "set_prompt")
        cases = {
            "empty categories": (Prompt(kind=Prompt.KIND_CATEGORIES), "category prompt is empty"),
            "5000 characters": (Prompt(kind=Prompt.KIND_EXPRESSION, expression="a" * 5000), "at most 1000"),
            "unknown kind": (Prompt(kind=7), "kind 7 is unknown"),
            "unknown camera": (Prompt(kind=Prompt.KIND_CATEGORIES, categories=["x"], camera="rear"),
                               "camera 'rear' is not served"),
            "template not buffered": (Prompt(kind=Prompt.KIND_TEMPLATE, templates=[_roi(10, 10, 20, 20)]),
                                      "is not buffered"),
            "zero-area box": (Prompt(kind=Prompt.KIND_TEMPLATE, templates=[_roi(10, 10, 10, 20)]),
                              "x_max > x_min"),
        }
        for name, (prompt, reason) in cases.items():
            answer = h.call(client, SetPrompt.Request(prompt=prompt))
            assert not answer.accepted and reason in answer.reason and answer.prompt_id == 0, (name, answer.reason)
        session = provider.built[-1][""]
        assert session.prompt.names == ("person",) and session.prompt_id == 1

        # The same reasons reach the diagnostics when the prompt came on a topic (no reply channel there).
        diagnostics = h.listen("/diagnostics", DiagnosticArray)
        text = h.peer.create_publisher(String, "prompt/classes", 10)
        h.wait_for(lambda: text.get_subscription_count() > 0, what="prompt/classes subscriber")
        text.publish(String(data=" , ,"))
        h.wait_for(lambda: any("prompt rejected: category prompt is empty" in s.message
                               for d in diagnostics for s in d.status), what="diagnostics naming the rejection")
        assert session.prompt.names == ("person",)


def _roi(x0: float, y0: float, x1: float, y1: float):
    from uninext_msgs.msg import BoundingBox, RoiTemplate

    return RoiTemplate(has_box=True, box=BoundingBox(x_min=float(x0), y_min=float(y0), x_max=float(x1),
                                                     y_max=float(y1)))


def test_bad_frames_are_counted_and_reported_and_the_node_keeps_going() -> None:
    provider = fake.FakeProvider()
    with running_node(provider, initial_classes="person", diagnostics_period=0.2) as h:
        _activate(h.node)
        out = h.listen("instances", InstanceArray)
        diagnostics = h.listen("/diagnostics", DiagnosticArray)
        images = h.peer.create_publisher(Image, "image", 10)
        h.wait_for(lambda: images.get_subscription_count() > 0, what="image subscriber")
        bad = [_frame(5, encoding="16UC1"), _frame(6), _frame(7)]
        bad[1].step = 10  # step smaller than width x channels
        bad[2].data = b""
        for msg in bad:
            images.publish(msg)
            time.sleep(0.2)
        h.wait_for(lambda: h.node._channels[""].stats.rejected == 3, what="three rejected frames")
        h.wait_for(lambda: any(s.level == DiagnosticStatus.WARN and "rejected" in s.message
                               for d in diagnostics for s in d.status), what="a WARN diagnostic")
        assert out == []
        _publish_until(h, images, lambda i: _frame(1_000 + i), out, 1)  # still serving


def test_roi_topic_and_reset_service() -> None:
    provider = fake.FakeProvider()
    with running_node(provider) as h:
        _activate(h.node)
        out = h.listen("instances", InstanceArray)
        images = h.peer.create_publisher(Image, "image", 10)
        _publish_until(h, images, lambda i: _frame(3_000 + i), out, 1)
        buffered_stamp = out[0].header.stamp
        roi = h.peer.create_publisher(PolygonStamped, "prompt/roi", 10)
        h.wait_for(lambda: roi.get_subscription_count() > 0, what="prompt/roi subscriber")
        polygon = PolygonStamped(header=Header(stamp=buffered_stamp))
        polygon.polygon.points = [Point32(x=30.0, y=5.0), Point32(x=10.0, y=20.0)]
        roi.publish(polygon)
        session = provider.built[-1][""]
        h.wait_for(lambda: session.prompt is not None, what="template prompt applied")
        assert session.prompt.targets[0].box_xyxy == (10.0, 5.0, 30.0, 20.0) and session.task == "sot"

        reset = h.peer.create_client(Reset, "reset")
        answer = h.call(reset, Reset.Request(clear_prompt=True))
        assert answer.success and "prompt cleared" in answer.message and session.prompt is None
        wrong = h.call(reset, Reset.Request(camera="side"))
        assert not wrong.success and "not served" in wrong.message


def test_several_cameras_publish_under_their_own_namespaces() -> None:
    provider = fake.FakeProvider()
    with running_node(provider, cameras=["front", "rear"], initial_classes="cup") as h:
        _activate(h.node)
        front_out = h.listen("front/instances", InstanceArray)
        rear_out = h.listen("rear/instances", InstanceArray)
        front = h.peer.create_publisher(Image, "front/image", 10)
        _publish_until(h, front, lambda i: _frame(4_000 + i), front_out, 2)
        assert rear_out == [] and provider.built[-1]["rear"].frames == []
        client = h.peer.create_client(SetPrompt, "set_prompt")
        answer = h.call(client, SetPrompt.Request(prompt=Prompt(kind=Prompt.KIND_CATEGORIES, categories=["box"],
                                                                camera="rear")))
        assert answer.accepted
        assert provider.built[-1]["rear"].prompt.names == ("box",)
        assert provider.built[-1]["front"].prompt.names == ("cup",)
        both = h.call(client, SetPrompt.Request(prompt=Prompt(kind=Prompt.KIND_TEMPLATE,
                                                              templates=[_roi(1, 1, 5, 5)])))
        assert not both.accepted and "set Prompt.camera" in both.reason


def test_newest_frame_only_when_the_model_is_slower_than_the_camera() -> None:
    provider = fake.FakeProvider(delay_s=0.15)
    with running_node(provider, initial_classes="cup") as h:
        _activate(h.node)
        out = h.listen("instances", InstanceArray)
        images = h.peer.create_publisher(Image, "image", 10)
        h.wait_for(lambda: images.get_subscription_count() > 0, what="image subscriber")
        for i in range(1, 61):  # 2 s at 30 Hz
            images.publish(_frame(i * 33_000_000))
            time.sleep(1 / 30)
        stats = h.node._channels[""].stats

        def stamps() -> list[int]:
            return [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in out]

        # the last frame is never dropped (nothing newer replaces it, in the node or in the depth-1 image queue)
        h.wait_for(lambda: stamps()[-1:] == [60 * 33_000_000], what="the output of the last frame")
        # every delivered frame was either processed (one output each) or dropped for a newer one, none queued. The
        # image subscription keeps 1 sample (QoS depth 1), so DDS may also replace a frame the executor had not
        # taken yet: such a frame never reaches the node's count.
        h.wait_for(lambda: stats.processed + stats.dropped == stats.received and len(out) == stats.processed,
                   what="all delivered frames handled")
        assert stats.received >= 45 and stats.processed < 30 and stats.dropped > 15, stats
        assert stamps() == sorted(stamps())


def test_parameters_validated_and_thresholds_applied_at_run_time() -> None:
    provider = fake.FakeProvider()
    with running_node(provider) as h:
        _activate(h.node)
        result = h.node.set_parameters([Parameter("score_threshold", value=0.55)])[0]
        assert result.successful
        assert all(s.config.score_threshold == 0.55 for s in provider.built[-1].values())
        assert not h.node.set_parameters([Parameter("score_threshold", value=1.5)])[0].successful
        frozen = h.node.set_parameters([Parameter("preset", value="r50")])[0]
        assert not frozen.successful and "takes effect at configure" in frozen.reason
        wrong_choice = h.node.set_parameters([Parameter("max_instances", value=0)])[0]
        assert not wrong_choice.successful and "out of range" in wrong_choice.reason  # the descriptor's range


def test_lifecycle_transitions_and_a_failed_configure() -> None:
    provider = fake.FakeProvider()
    with running_node(provider, initial_classes="cup") as h:
        node = h.node
        _activate(node)
        out = h.listen("instances", InstanceArray)
        images = h.peer.create_publisher(Image, "image", 10)
        _publish_until(h, images, lambda i: _frame(i), out, 1)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        h.wait_for(lambda: images.get_subscription_count() == 0, what="image subscription dropped")
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert provider.released == 1
        assert node.set_parameters([Parameter("preset", value="r50")])[0].successful  # allowed when unconfigured
        unknown = node.set_parameters([Parameter("backend", value="tflite")])[0]
        assert not unknown.successful and "not one of ['torch', 'onnxruntime', 'tensorrt']" in unknown.reason
        _activate(node)
        assert len(provider.built) == 2
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
        assert provider.released == 2

    failing = fake.FakeProvider(fail_with="checkpoint /nowhere.safetensors does not exist")
    with running_node(failing) as h:
        assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert h.node._state_machine.current_state[0] == StateMsg.PRIMARY_STATE_UNCONFIGURED


def test_debug_image_only_when_someone_listens() -> None:
    provider = fake.FakeProvider()
    with running_node(provider, initial_classes="cup") as h:
        _activate(h.node)
        out = h.listen("instances", InstanceArray)
        images = h.peer.create_publisher(Image, "image", 10)
        _publish_until(h, images, lambda i: _frame(i), out, 2)
        debug = h.listen("debug_image", Image)
        h.wait_for(lambda: h.node._channels[""].debug_publisher.get_subscription_count() > 0, what="debug sub")
        _publish_until(h, images, lambda i: _frame(100 + i), debug, 1)
        assert debug[0].encoding == "rgb8" and (debug[0].height, debug[0].width) == (48, 64)
