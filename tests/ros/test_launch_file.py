"""launch/perception.launch.py run for real through the ROS 2 launch API, with a tiny model (random weights).

The launch file is included by a launch service in its own process (as `ros2 launch` would), and checked from a peer
node here: the node comes up under the requested namespace, its parameters are what the launch arguments and the
parameter file say, the remapped camera topic (raw or compressed) reaches it and instance arrays come back, its process
has the Fast DDS profile of the launch file, and SIGINT to the launch service stops it cleanly.

Needs the ROS 2 `launch` and `launch_ros` packages (not on PyPI, so skipped where they are not importable) and the
uninext_ros share folder in the ament index (make setup puts it into the venv).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import yaml

launch_ros_actions = pytest.importorskip(
    "launch_ros.actions", reason="the ROS 2 launch_ros package is not importable (not installable from PyPI)")
pytest.importorskip("launch.actions", reason="the ROS 2 launch package is not importable (not installable from PyPI)")

import launch  # noqa: E402  (after the skips)
import launch_ros  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from rcl_interfaces.srv import GetParameters  # noqa: E402
from rclpy.parameter import parameter_value_to_python  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402
from uninext_msgs.msg import InstanceArray  # noqa: E402

from uninext_core.checkpoint.safetensors_io import save_weights  # noqa: E402
from uninext_core.config import tiny  # noqa: E402
from uninext_core.model.build import build_model  # noqa: E402
from uninext_ros.conversions import ns_to_stamp, rgb_to_image, stamp_to_ns  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO_ROOT / "launch" / "perception.launch.py"
NODE_NAME = "uninext_perception"
PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"

# What `ros2 launch uninext_ros perception.launch.py a:=b ...` does, in a process of its own so that SIGINT reaches
# the launch service the way Ctrl-C does.
LAUNCHER = """
import json, sys
import launch
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
service = launch.LaunchService()
service.include_launch_description(launch.LaunchDescription([IncludeLaunchDescription(
    PythonLaunchDescriptionSource(sys.argv[1]), launch_arguments=json.loads(sys.argv[2]).items())]))
sys.exit(service.run())
"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = tiny()
    path = tmp_path_factory.mktemp("weights") / "tiny_random.safetensors"
    return save_weights(path, build_model(config).state_dict(), config=config)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _frame_message(stamp_ns: int, compressed: bool) -> Image | CompressedImage:
    rgb = np.random.default_rng(stamp_ns % 1000).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    header = Header(stamp=ns_to_stamp(stamp_ns), frame_id="camera")
    if not compressed:
        return rgb_to_image(rgb, header)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return CompressedImage(header=header, format="jpeg", data=jpeg.tobytes())


CASES = {
    # Raw images on an absolute topic outside the node's namespace, the shipped parameter file, checkpoint given as
    # a launch argument, the prompt sent on prompt/classes.
    "raw": dict(namespace="/launch_raw_{uid}", image_topic="/cam_{uid}/image_raw", compressed=False,
                params_file=None),
    # Compressed images on a relative topic (below the node's namespace), a relative namespace, and a parameter file
    # of the user's that sets the checkpoint, the image QoS, thresholds and the initial prompt itself.
    "compressed_params_file": dict(namespace="launch_jpeg_{uid}", image_topic="camera/image", compressed=True,
                                   params_file={"image_reliability": "reliable", "score_threshold": 0.0,
                                                "max_instances": 7, "initial_classes": "red circle, blue square"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_launch_file_starts_configures_remaps_and_stops_the_node(case: str, checkpoint: Path, tmp_path: Path) -> None:
    spec = CASES[case]
    uid = uuid.uuid4().hex[:6]
    namespace = "/" + spec["namespace"].format(uid=uid).lstrip("/")
    image_topic = spec["image_topic"].format(uid=uid)
    compressed = spec["compressed"]
    share = Path(get_package_share_directory("uninext_ros"))
    shipped = yaml.safe_load((share / "config" / "perception.yaml").read_text())["/**"]["ros__parameters"]

    arguments = {"namespace": spec["namespace"].format(uid=uid), "image_topic": image_topic}
    expected = dict(shipped, checkpoint=str(checkpoint))
    if compressed:
        arguments["use_compressed"] = "true"
        expected["use_compressed"] = True
    if spec["params_file"] is None:
        arguments["checkpoint"] = str(checkpoint)
    else:
        user_params = dict(shipped, **spec["params_file"], checkpoint=str(checkpoint))
        params_file = tmp_path / "my_perception.yaml"
        params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": user_params}}))
        arguments["params_file"] = str(params_file)
        expected.update(user_params)
        if compressed:
            expected["use_compressed"] = True

    environment = dict(os.environ)
    environment.pop(PROFILE_VARIABLE, None)  # the launch file must set it, not the test environment
    python_path = [str(Path(module.__file__).resolve().parents[1]) for module in (launch, launch_ros)]
    environment["PYTHONPATH"] = os.pathsep.join([*python_path, environment.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(LAUNCH_FILE), json.dumps(arguments)],
                                cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(launcher.stdout), daemon=True)
    reader.start()

    def tail(lines: int = 40) -> str:
        return "\nlaunch output:\n" + "".join(log[-lines:])

    node_pid = None
    try:
        with rclpy.init():
            peer = rclpy.create_node(f"launch_test_peer_{uid}")

            def spin_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    result = condition()
                    if result:
                        return result
                    assert launcher.poll() is None, f"the launch service exited ({launcher.returncode}){tail()}"
                    rclpy.spin_once(peer, timeout_sec=0.1)
                raise AssertionError(f"timed out waiting for {what}{tail()}")

            # The node, under the requested namespace (the launch service's own helper node is also in the graph).
            spin_until(lambda: (NODE_NAME, namespace) in peer.get_node_names_and_namespaces(), 120.0,
                       f"node {namespace}/{NODE_NAME}")

            # Its process: a child of the launch service, with the Fast DDS profile the launch file points at.
            node_pids = spin_until(lambda: [pid for pid in _children(launcher.pid)
                                            if "perception_node" in Path(f"/proc/{pid}/cmdline").read_text()],
                                   30.0, "the perception_node process")
            assert len(node_pids) == 1, node_pids
            node_pid = node_pids[0]
            profile = _environment_of(node_pid).get(PROFILE_VARIABLE)
            assert profile is not None, f"{PROFILE_VARIABLE} is not set for the node process{tail()}"
            assert Path(profile).resolve() == (share / "config" / "fastdds_large_shm.xml").resolve()
            assert Path(profile).is_file()

            # Its parameters: the launch arguments on top of the parameter file.
            client = peer.create_client(GetParameters, f"{namespace}/{NODE_NAME}/get_parameters")
            spin_until(lambda: client.wait_for_service(timeout_sec=0.1), 60.0, "the get_parameters service")
            names = sorted(expected)
            future = client.call_async(GetParameters.Request(names=names))
            spin_until(future.done, 30.0, "get_parameters")
            values = [parameter_value_to_python(value) for value in future.result().values]
            actual = {name: list(value) if isinstance(value, (list, tuple)) else value
                      for name, value in zip(names, values, strict=True)}
            assert actual == expected, {name: (actual[name], expected[name]) for name in names
                                        if actual[name] != expected[name]}

            # The remapped camera topic is what the node subscribes to (after autostart has activated it).
            resolved = image_topic if image_topic.startswith("/") else f"{namespace}/{image_topic}"
            if compressed:
                resolved += "/compressed"
            message_type = CompressedImage if compressed else Image
            type_name = f"sensor_msgs/msg/{message_type.__name__}"

            def node_subscribes(topic: str) -> bool:
                return any(info.node_name == NODE_NAME and info.node_namespace == namespace and
                           info.topic_type == type_name for info in peer.get_subscriptions_info_by_topic(topic))

            spin_until(lambda: node_subscribes(resolved), 180.0, f"a {type_name} subscription on {resolved}")
            assert not node_subscribes(f"{namespace}/image"), "the unremapped image topic is subscribed too"

            # Frames in on the remapped topic, instance arrays out.
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            outputs: list[InstanceArray] = []
            peer.create_subscription(InstanceArray, f"{namespace}/instances", outputs.append, qos)
            if spec["params_file"] is None:
                prompts = peer.create_publisher(String, f"{namespace}/prompt/classes", qos)
                spin_until(lambda: prompts.get_subscription_count() > 0, 30.0, "the prompt/classes subscription")
                prompts.publish(String(data="red circle, blue square"))
            images = peer.create_publisher(message_type, resolved, qos)
            spin_until(lambda: images.get_subscription_count() > 0, 30.0, "the image publisher to match")
            sent: list[int] = []

            def prompted_output() -> InstanceArray | None:
                for output in outputs:
                    if stamp_to_ns(output.header.stamp) in sent and output.prompt_id > 0:
                        return output
                if not sent or time.monotonic() - sent_at[0] > 1.0:
                    sent.append(1_000_000_000 * (len(sent) + 1))
                    sent_at[0] = time.monotonic()
                    images.publish(_frame_message(sent[-1], compressed))
                return None

            sent_at = [0.0]
            output = spin_until(prompted_output, 120.0, "an instance array for a frame sent on the remapped topic")
            assert output.header.frame_id == "camera" and output.task == "instance_segmentation"
            assert len(output.instances) <= expected["max_instances"]
            for instance in output.instances:
                assert instance.label in ("red circle", "blue square") and instance.score >= expected["score_threshold"]
                assert instance.mask.height == 120 and instance.mask.width == 160
            peer.destroy_node()

        # Ctrl-C as a terminal sends it: SIGINT to the launch service's process group, the node included (launch
        # does not forward a SIGINT it received itself, it assumes the node had it too). The node has to exit
        # cleanly before launch escalates to SIGTERM, then the launch service exits.
        os.killpg(launcher.pid, signal.SIGINT)
        code = launcher.wait(timeout=60)
        reader.join(timeout=10)
        assert code == 0, f"the launch service exited with {code}{tail()}"
        assert not _alive(node_pid), "the perception node outlived the launch service"
        output = "".join(log)
        assert "escalating to" not in output, "the node did not stop on SIGINT before launch's SIGTERM" + tail()
        assert f"process has finished cleanly [pid {node_pid}]" in output, tail()
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGINT)
            try:
                launcher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
