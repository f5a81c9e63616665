"""The installed perception_node executable in its own process, with the real session on a tiny model.

Random weights (saved with save_weights, as a trained model would be): what is checked is the plumbing from camera
frames and prompts to instance arrays through the real Session, its bad-input rejections and a clean SIGINT stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import rclpy
import torch
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from uninext_msgs.msg import BoundingBox, InstanceArray, Prompt, RoiTemplate
from uninext_msgs.srv import SetPrompt

from uninext_core.checkpoint.safetensors_io import save_weights
from uninext_core.config import tiny
from uninext_core.model.build import build_model
from uninext_ros.conversions import ns_to_stamp, rgb_to_image, stamp_to_ns

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = tiny()
    model = build_model(config)
    path = tmp_path_factory.mktemp("weights") / "tiny_random.safetensors"
    return save_weights(path, model.state_dict(), config=config)


def _frame(stamp_ns: int) -> Image:
    rng = np.random.default_rng(stamp_ns % 1000)
    rgb = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    return rgb_to_image(rgb, Header(stamp=ns_to_stamp(stamp_ns), frame_id="camera"))


def _roi(x0: float, y0: float, x1: float, y1: float) -> RoiTemplate:
    return RoiTemplate(has_box=True, box=BoundingBox(x_min=x0, y_min=y0, x_max=x1, y_max=y1))


def test_executable_serves_real_sessions_and_stops_on_sigint(checkpoint: Path) -> None:
    executable = shutil.which("perception_node", path=os.path.dirname(sys.executable))
    assert executable, "the perception_node console script is not installed in this environment"
    namespace = f"/e2e{uuid.uuid4().hex[:6]}"
    node = subprocess.Popen([executable, "--ros-args", "-r", f"__ns:={namespace}", "-p", f"checkpoint:={checkpoint}",
                             "-p", "initial_classes:=red circle, blue square", "-p", "image_reliability:=reliable",
                             "-p", "score_threshold:=0.0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(node.stdout), daemon=True).start()
    try:
        with rclpy.init():
            peer = rclpy.create_node("camera_and_planner", namespace=namespace)
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            images = peer.create_publisher(Image, "image", qos)
            outputs: list[InstanceArray] = []
            peer.create_subscription(InstanceArray, "instances", outputs.append, qos)
            client = peer.create_client(SetPrompt, "set_prompt")
            assert client.wait_for_service(timeout_sec=120.0), "node never offered set_prompt:\n" + "".join(log)

            def spin_until(condition, timeout: float, what: str) -> None:
                deadline = time.monotonic() + timeout
                while not condition() and time.monotonic() < deadline:
                    rclpy.spin_once(peer, timeout_sec=0.05)
                assert condition(), f"timed out waiting for {what}:\n" + "".join(log[-20:])

            def call(prompt: Prompt) -> SetPrompt.Response:
                future = client.call_async(SetPrompt.Request(prompt=prompt))
                spin_until(future.done, 60.0, "set_prompt answer")
                return future.result()

            sent: list[int] = []
            for i in range(1, 4):
                sent.append(1_000_000_000 * i)
                images.publish(_frame(sent[-1]))
                spin_until(lambda n=i: len(outputs) >= n, 60.0, f"instance array {i}")
            assert [stamp_to_ns(m.header.stamp) for m in outputs] == sent
            first = outputs[0]
            assert first.header.frame_id == "camera" and first.prompt_id == 1
            assert first.task == "instance_segmentation"
            for instance in first.instances:
                assert instance.label in ("red circle", "blue square") and instance.prompt_id == 1
                assert 0.0 <= instance.box.x_min <= instance.box.x_max <= 160.0 and instance.mask.height == 120
            assert first.inference_ms > 0 and first.latency_ms > 0

            # Bad prompts are refused with the session's reason; the previous prompt stays in force.
            refusals = {
                "empty": Prompt(kind=Prompt.KIND_EXPRESSION, expression="  ... "),
                "5000 characters": Prompt(kind=Prompt.KIND_EXPRESSION, expression="mug " * 1250),
                "box outside the image": Prompt(kind=Prompt.KIND_TEMPLATE, template_stamp=ns_to_stamp(sent[-1]),
                                                templates=[_roi(500.0, 500.0, 600.0, 600.0)]),
                "zero-area box": Prompt(kind=Prompt.KIND_TEMPLATE, template_stamp=ns_to_stamp(sent[-1]),
                                        templates=[_roi(10.0, 10.0, 10.0, 30.0)]),
                "frame not buffered": Prompt(kind=Prompt.KIND_TEMPLATE, template_stamp=ns_to_stamp(123),
                                             templates=[_roi(10.0, 10.0, 40.0, 30.0)]),
            }
            for name, prompt in refusals.items():
                answer = call(prompt)
                assert not answer.accepted and answer.reason and answer.prompt_id == 0, (name, answer.reason)
            images.publish(_frame(4_000_000_000))
            spin_until(lambda: len(outputs) >= 4, 60.0, "a frame after the refusals")
            assert outputs[3].prompt_id == 1

            # A prompt switch takes effect on the next processed frame: a box on a buffered frame -> SOT.
            answer = call(Prompt(kind=Prompt.KIND_TEMPLATE, template_stamp=ns_to_stamp(sent[-1]),
                                 templates=[_roi(40.0, 30.0, 90.0, 80.0)]))
            assert answer.accepted, answer.reason
            images.publish(_frame(5_000_000_000))
            spin_until(lambda: len(outputs) >= 5, 60.0, "a frame after the prompt switch")
            assert outputs[4].prompt_id == answer.prompt_id and outputs[4].task == "sot"
            peer.destroy_node()
    finally:
        node.send_signal(signal.SIGINT)
        try:
            code = node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            raise
    assert code == 0, "perception_node did not exit cleanly on SIGINT:\n" + "".join(log[-30:])
