"""Two rclpy processes exchange every uninext_msgs message type over DDS and call both services."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from uninext_msgs.msg import BoundingBox, Instance, InstanceArray, Prompt, RleMask, RoiTemplate
from uninext_msgs.srv import Reset, SetPrompt

from uninext_core.masks import Rle, decode_rle, encode_mask

pytestmark = pytest.mark.ros

PEER = Path(__file__).with_name("interface_peer.py")


def _mask() -> np.ndarray:
    mask = np.zeros((48, 64), dtype=bool)
    mask[10:30, 5:40] = True
    mask[12:14, 50:60] = True
    return mask


def _rle_msg(mask: np.ndarray) -> RleMask:
    rle = encode_mask(mask)
    return RleMask(height=rle.height, width=rle.width, counts=rle.counts)


def _filled_messages() -> dict[str, object]:
    box = BoundingBox(x_min=1.5, y_min=2.5, x_max=100.25, y_max=200.75)
    rle = _rle_msg(_mask())
    template = RoiTemplate(object_id=3, label="mug", has_box=True, box=box, has_mask=True, mask=rle)
    instance = Instance(track_id=7, label="red mug", class_index=2, score=0.875, box=box, mask=rle, prompt_id=42)
    second = Instance(track_id=-1, label="laptop", class_index=0, score=0.5,
                      box=BoundingBox(x_min=0.0, y_min=0.0, x_max=8.0, y_max=9.0),
                      mask=RleMask(height=48, width=64, counts=""), prompt_id=42)
    header = Header(stamp=Time(sec=12, nanosec=500_000_000), frame_id="camera_optical_frame")
    array = InstanceArray(header=header, task="instance_segmentation", prompt_id=42, instances=[instance, second],
                          preprocess_ms=1.25, inference_ms=30.5, postprocess_ms=2.0, latency_ms=40.75)
    image = Image(header=header, height=3, width=4, encoding="rgb8", is_bigendian=0, step=12,
                  data=bytes(range(36)))
    prompt = Prompt(header=header, prompt_id=9, kind=Prompt.KIND_TEMPLATE, task="vos", camera="front",
                    categories=["person", "red mug"], expression="the red mug left of the laptop",
                    template_stamp=Time(sec=11, nanosec=250), templates=[template, template], template_image=image)
    return {"BoundingBox": box, "RleMask": rle, "RoiTemplate": template, "Instance": instance,
            "InstanceArray": array, "Prompt": prompt}


@pytest.fixture
def peer_namespace():
    namespace = f"/uninext_test_{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen([sys.executable, str(PEER), namespace], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        line = process.stdout.readline()
        stderr = process.stderr.read() if process.poll() is not None else ""
        assert line.strip() == "ready", f"peer did not start: {line!r} {stderr}"
        yield namespace
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_every_message_type_and_both_services_cross_processes(peer_namespace: str) -> None:
    sent = _filled_messages()
    received: dict[str, object] = {}
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    with rclpy.init():
        node = rclpy.create_node("uninext_interface_test")
        publishers = {}
        for name, msg in sent.items():
            publishers[name] = node.create_publisher(type(msg), f"{peer_namespace}/{name}/in", qos)
            node.create_subscription(type(msg), f"{peer_namespace}/{name}/out",
                                     lambda m, name=name: received.setdefault(name, m), qos)
        set_prompt = node.create_client(SetPrompt, f"{peer_namespace}/set_prompt")
        reset = node.create_client(Reset, f"{peer_namespace}/reset")
        assert set_prompt.wait_for_service(timeout_sec=20.0), "set_prompt service never appeared"
        assert reset.wait_for_service(timeout_sec=20.0), "reset service never appeared"

        deadline = time.monotonic() + 30.0
        while len(received) < len(sent) and time.monotonic() < deadline:
            for name, publisher in publishers.items():
                if name not in received and publisher.get_subscription_count() > 0:
                    publisher.publish(sent[name])
            rclpy.spin_once(node, timeout_sec=0.2)
        assert sorted(received) == sorted(sent), f"no echo for {sorted(set(sent) - set(received))}"
        for name, msg in sent.items():
            assert received[name] == msg, f"{name} changed on the way: {received[name]} != {msg}"

        mask_back = received["Instance"].mask
        assert np.array_equal(decode_rle(Rle(mask_back.height, mask_back.width, mask_back.counts)), _mask())
        assert received["Prompt"].KIND_TEMPLATE == Prompt.KIND_TEMPLATE == 2

        accepted = _call(node, set_prompt, SetPrompt.Request(prompt=Prompt(kind=Prompt.KIND_CATEGORIES,
                                                                            categories=["person"], prompt_id=5)))
        assert (accepted.accepted, accepted.reason, accepted.prompt_id) == (True, "", 5)
        rejected = _call(node, set_prompt, SetPrompt.Request(prompt=Prompt(kind=Prompt.KIND_CATEGORIES)))
        assert not rejected.accepted and "0 categories" in rejected.reason and rejected.prompt_id == 0
        answer = _call(node, reset, Reset.Request(camera="front", clear_prompt=True))
        assert answer.success and answer.message == "reset camera='front' clear_prompt=True"
        node.destroy_node()


def _call(node, client, request):
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=20.0)
    assert future.done(), f"{client.srv_name} did not answer"
    return future.result()
