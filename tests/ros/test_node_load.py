"""The perception node under load (issue #8): a camera faster than the model, a stand-in model that takes 150 ms a
frame (tests/ros/fake_session.py).

- In its own process, a 30 Hz 640x480 camera for 60 s, driven by bench/node_load.py's `run_load`, which also
  interrupts the node with SIGINT while frames arrive and one is in flight.
- In this process, lifecycle transitions while frames arrive: deactivate waits only for the frame in flight, the
  frame counters balance, nothing is processed while inactive, and after re-activation no frame from before is.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from uninext_msgs.msg import InstanceArray

from uninext_ros.conversions import ns_to_stamp, rgb_to_image, stamp_to_ns
from uninext_ros.perception_node import PerceptionNode
from uninext_ros.qos import output_qos

pytestmark = pytest.mark.ros

TESTS_ROS = Path(__file__).resolve().parent
NODE_LOAD = TESTS_ROS.parents[1] / "bench" / "node_load.py"


def _load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_deactivate_and_reactivate_while_frames_arrive_faster_than_the_model() -> None:
    fake = _load_module("uninext_test_fake_session", TESTS_ROS / "fake_session.py")
    namespace = f"/lc{uuid.uuid4().hex[:8]}"
    with rclpy.init():
        node = PerceptionNode(namespace=namespace, session_provider=fake.FakeProvider(delay_s=0.15),
                              parameter_overrides=[Parameter("initial_classes", value="cup")])
        peer = rclpy.create_node("camera", namespace=namespace)
        outputs: list[InstanceArray] = []
        peer.create_subscription(InstanceArray, "instances", outputs.append, output_qos())
        images = peer.create_publisher(Image, "image", 10)
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        executor.add_node(peer)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        stop_camera = threading.Event()

        def camera() -> None:  # 30 Hz, stamped with the wall clock at publication
            frame = rgb_to_image(np.full((48, 64, 3), 100, np.uint8), Header(frame_id="cam"))
            while not stop_camera.wait(1 / 30):
                frame.header.stamp = ns_to_stamp(time.time_ns())
                images.publish(frame)

        def wait_for(condition, what: str, timeout: float = 10.0) -> None:
            deadline = time.monotonic() + timeout
            while not condition() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert condition(), f"timed out waiting for {what}"

        camera_thread = threading.Thread(target=camera, daemon=True)
        try:
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            stats = node._channels[""].stats
            camera_thread.start()
            wait_for(lambda: len(outputs) >= 3, "three instance arrays")

            asked = time.monotonic()
            assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
            assert time.monotonic() - asked < 1.0  # it waits for the frame in flight (150 ms), not for a queue
            time.sleep(0.3)  # late callbacks and the last output settle; the camera keeps publishing
            counts = (stats.received, stats.processed, stats.dropped, stats.rejected, len(outputs))
            assert stats.received == stats.processed + stats.dropped + stats.rejected, counts
            assert stats.processed == len(outputs), counts
            time.sleep(0.5)
            assert (stats.received, stats.processed, len(outputs)) == (counts[0], counts[1], counts[4])

            activated_ns = time.time_ns()
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
            wait_for(lambda: len(outputs) >= counts[4] + 3, "three instance arrays after re-activation")
            resumed = [stamp_to_ns(m.header.stamp) for m in outputs[counts[4]:]]
            assert min(resumed) > activated_ns, "a frame from before the deactivation was processed after it"
        finally:
            stop_camera.set()
            if camera_thread.is_alive():
                camera_thread.join(timeout=2.0)
            time.sleep(0.5)
            node.stop()
            executor.shutdown(timeout_sec=5.0)
            spinner.join(timeout=5.0)
            node.destroy_node()
            peer.destroy_node()
        assert stats.received == stats.processed + stats.dropped + stats.rejected


@pytest.mark.slow
def test_a_30hz_camera_and_a_slower_model_for_60s() -> None:
    bench = _load_module("uninext_bench_node_load", NODE_LOAD)
    settings = bench.LoadSettings(duration_s=60.0, rate_hz=30.0, delay_s=0.15, height=480, width=640)
    report = bench.run_load(settings)
    summary = json.dumps(report.summary())  # the figures, shown whole when an assertion fails
    assert report.final is not None, summary

    # The camera ran at its rate, and the image callback kept taking frames during inference: with the node's
    # default QoS (best effort, depth 1) DDS replaces a frame the callback has not taken yet, so a callback held up
    # by inference would see about 1 frame in 4.5; a free one sees most (90-99 % measured on the shared 2-core
    # machine; what it misses is lost before the node and not in frames_dropped).
    assert report.published >= 0.95 * settings.duration_s * settings.rate_hz, summary
    assert report.final.received >= 0.75 * report.published, summary

    # Drops are counted: once idle, every received frame was processed, dropped for a newer one, or rejected;
    # during the load at most one parked and one in-flight frame are unaccounted for.
    final = report.final
    assert final.rejected == 0 and final.dropped == final.received - final.processed, summary
    assert report.during_load and all(0 <= c.unaccounted <= 2 for c in report.during_load), summary
    assert final.dropped >= 0.6 * final.received, summary  # a 150 ms model keeps up with at most 1 frame in 4.5
    assert report.outputs == final.processed, summary  # one instance array per processed frame, none lost

    # Always the newest frame: output stamps were published and only increase, latency stays about one or two
    # frame times of the model (an unbounded queue would grow it by ~0.8 s every second).
    assert report.unpublished_stamps == 0 and report.stamps_increasing, summary
    latency = sorted(report.latency_ms)
    assert latency[int(0.9 * (len(latency) - 1))] < 4 * settings.delay_s * 1e3, summary

    # Steady output: the model is kept busy (at least 80 % of its 1/delay rate) in every 10 s window, each window
    # within 25 % of the mean rate.
    assert len(report.window_rates_hz) == 6 and report.mean_rate_hz >= 0.8 / settings.delay_s, summary
    assert report.rate_spread <= 0.25, summary

    # Bounded memory: after a 10 s warm-up the node's RSS grows less than 10 frames' worth (9.2 MB); queueing the
    # ~23 frames a second it cannot process would add ~21 MB a second.
    frame_kb = settings.height * settings.width * 3 / 1024
    assert len(report.rss_kb) >= 0.8 * settings.duration_s / settings.rss_period_s, summary
    assert report.rss_growth_kb < 10 * frame_kb, summary

    # Prompts during the load are answered within two frame times of the model plus 0.2 s (a set_prompt waits at
    # most for the frame in flight) and apply to later frames.
    assert len(report.prompt_answers) == 11, summary
    assert all(accepted for _, accepted, _ in report.prompt_answers), summary
    assert max(s for s, _, _ in report.prompt_answers) < 2 * settings.delay_s + 0.2, summary
    assert report.prompts_applied, summary

    # SIGINT while frames arrive and one is in flight: a clean exit, promptly.
    assert report.sigint_exit_code == 0 and math.isfinite(report.sigint_exit_s), summary
    assert report.sigint_exit_s < 10.0, summary
