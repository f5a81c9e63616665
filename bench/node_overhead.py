"""What the ROS node adds around the session: end-to-end latency minus session time, two processes.

The node runs in a child process with a session that returns a fixed set of instances (boxes + masks) at once and
reports how long it took; this process publishes camera frames (stamped with the send time) and receives the
instance arrays. Overhead = receive time − header stamp − session time: image transport in, conversion to numpy,
worker hand-off, RLE mask encoding, message building, transport out. One JSON line per image size, then a table.

    .venv/bin/python bench/node_overhead.py [--frames 100] [--instances 10] [--rate 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid

import numpy as np

SIZES = {"640x480": (480, 640), "1280x720": (720, 1280)}


def serve(namespace: str, instances: int) -> None:
    """Child process: the real PerceptionNode with an instant session."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.parameter import Parameter

    from uninext_core.instances import Instances, Timings
    from uninext_core.prompts import CategoryPrompt
    from uninext_ros.perception_node import PerceptionNode
    from uninext_ros.session_provider import SessionBundle

    class InstantSession:
        task, prompt_id, prompt = "instance_segmentation", 1, CategoryPrompt(("object",))

        def __init__(self) -> None:
            self.cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

        def set_prompt(self, prompt, *, task=None, prompt_id=None):
            return 1

        def process(self, frame, stamp_ns):
            start = time.perf_counter()
            height, width = frame.shape[:2]
            if (height, width) not in self.cache:
                rng = np.random.default_rng(0)
                boxes = np.zeros((instances, 4), np.float32)
                masks = np.zeros((instances, height, width), bool)
                for i in range(instances):
                    x0, y0 = int(rng.integers(0, width - 100)), int(rng.integers(0, height - 100))
                    w, h = int(rng.integers(20, 100)), int(rng.integers(20, 100))
                    boxes[i] = (x0, y0, x0 + w, y0 + h)
                    masks[i, y0:y0 + h, x0:x0 + w] = True
                self.cache[(height, width)] = (boxes, masks)
            boxes, masks = self.cache[(height, width)]
            result = Instances(stamp_ns=stamp_ns, image_size=(height, width), task=self.task, prompt_id=1,
                               track_ids=np.arange(1, instances + 1), boxes_xyxy=boxes,
                               scores=np.full(instances, 0.9, np.float32), class_indices=np.zeros(instances, np.int64),
                               labels=["object"] * instances, masks=masks)
            elapsed_ms = (time.perf_counter() - start) * 1e3
            result.timings = Timings(0.0, elapsed_ms, 0.0)
            return result

        def reset(self, *, clear_prompt=False):
            pass

        def update_config(self, config):
            pass

    class Provider:
        def build(self, params):
            return SessionBundle({"": InstantSession()}, "instant session (benchmark)")

        def session_config(self, params):
            return None

    try:
        with rclpy.init():
            node = PerceptionNode(namespace=namespace, session_provider=Provider(),
                                  parameter_overrides=[Parameter("image_reliability", value="reliable")])
            executor = MultiThreadedExecutor(num_threads=4)
            executor.add_node(node)
            node.trigger_configure()
            node.trigger_activate()
            print("ready", flush=True)
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


def measure(namespace: str, size: tuple[int, int], frames: int, rate: float) -> dict[str, float]:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header
    from uninext_msgs.msg import InstanceArray

    from uninext_ros.conversions import ns_to_stamp, rgb_to_image, stamp_to_ns

    overheads, totals = [], []
    done = threading.Event()
    with rclpy.init():
        node = rclpy.create_node("bench_camera", namespace=namespace)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        publisher = node.create_publisher(Image, "image", qos)

        def on_instances(msg: InstanceArray) -> None:
            total_ms = (time.time_ns() - stamp_to_ns(msg.header.stamp)) / 1e6
            totals.append(total_ms)
            overheads.append(total_ms - msg.inference_ms)
            if len(totals) >= frames:
                done.set()

        node.create_subscription(InstanceArray, "instances", on_instances, qos)
        spinner = threading.Thread(target=rclpy.spin, args=(node,), daemon=True)
        spinner.start()
        while publisher.get_subscription_count() == 0:
            time.sleep(0.05)
        rgb = np.random.default_rng(1).integers(0, 255, (*size, 3), dtype=np.uint8)
        template = rgb_to_image(rgb, Header(frame_id="cam"))
        time.sleep(0.5)
        for _ in range(frames + 5):
            if done.is_set():
                break
            template.header.stamp = ns_to_stamp(time.time_ns())
            publisher.publish(template)
            time.sleep(1.0 / rate)
        done.wait(timeout=10.0)
        node.destroy_node()
    overheads.sort()
    return {"frames": len(overheads), "overhead_ms_median": statistics.median(overheads),
            "overhead_ms_p90": overheads[int(0.9 * (len(overheads) - 1))],
            "end_to_end_ms_median": statistics.median(totals)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--serve", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.instances)
        return
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(np.random.default_rng().integers(1, 101)))
    results = {}
    for name, size in SIZES.items():
        namespace = f"/bench{uuid.uuid4().hex[:6]}"
        child = subprocess.Popen([sys.executable, __file__, "--serve", namespace, "--instances", str(args.instances)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready", "node process did not start"
            results[name] = measure(namespace, size, args.frames, args.rate)
        finally:
            child.send_signal(signal.SIGINT)
            child.wait(timeout=20)
        print(json.dumps({"case": name, "instances": args.instances, "rate_hz": args.rate, **{
            k: round(v, 3) for k, v in results[name].items()}}), flush=True)
    print(f"\n{'frame':>10}{'overhead ms (median)':>24}{'p90':>8}{'end-to-end ms':>16}{'goal 3 ms':>12}")
    for name, row in results.items():
        verdict = "met" if row["overhead_ms_median"] < 3.0 else "missed"
        print(f"{name:>10}{row['overhead_ms_median']:>24.2f}{row['overhead_ms_p90']:>8.2f}"
              f"{row['end_to_end_ms_median']:>16.2f}{verdict:>12}")


if __name__ == "__main__":
    main()
