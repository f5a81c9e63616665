"""The synthetic camera: publishes the demo video on `image` at a set rate and remembers what it showed when.

Every published frame is stamped with the ROS clock at publication (as a camera driver stamps capture time), so the
node's latency and the recorder's end-to-end latency are measured against it. The camera keeps the stamp -> video
frame map of what it published, which is how the recorder and the planner find a frame's pixels and ground truth
from an instance array's header.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from uninext_ros.conversions import ns_to_stamp, rgb_to_image
from uninext_ros.demo.video import DemoVideo, FrameTruth

FRAME_ID = "demo_camera"
REMEMBERED_FRAMES = 10_000  # stamps kept for look-ups (about half an hour at 5 Hz)


class PublishedFrame(NamedTuple):
    """One published frame: its header stamp (ns), its position in the video, and its count since start."""

    stamp_ns: int
    video_index: int
    count: int


class SyntheticCamera(Node):
    """Publishes `video` on `image` (sensor_msgs/Image rgb8) at `rate_hz` once `start()` is called.

    Args:
        video: the footage and its ground truth.
        rate_hz: frames per second, in (0, 60].
        topic: image topic name (relative: the node's namespace applies).
    """

    def __init__(self, video: DemoVideo, *, rate_hz: float, topic: str = "image") -> None:
        if not 0.0 < rate_hz <= 60.0:
            raise ValueError(f"rate_hz must be in (0, 60], got {rate_hz}")
        super().__init__("demo_camera")
        self.video = video
        self.rate_hz = rate_hz
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self._publisher = self.create_publisher(Image, topic, qos)
        self._lock = threading.Lock()
        self._published: OrderedDict[int, PublishedFrame] = OrderedDict()
        self._count = 0
        self._timer = None

    @property
    def topic(self) -> str:
        """Fully qualified image topic."""
        return self._publisher.topic_name

    def start(self) -> None:
        """Start publishing (idempotent)."""
        if self._timer is None:
            self._timer = self.create_timer(1.0 / self.rate_hz, self._publish_next)

    def stop(self) -> None:
        """Stop publishing (idempotent)."""
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    def _publish_next(self) -> None:
        index = self.video.playback_index(self._count)
        stamp_ns = self.get_clock().now().nanoseconds
        msg = rgb_to_image(self.video.frames[index], Header(stamp=ns_to_stamp(stamp_ns), frame_id=FRAME_ID))
        with self._lock:
            self._published[stamp_ns] = PublishedFrame(stamp_ns, index, self._count)
            while len(self._published) > REMEMBERED_FRAMES:
                self._published.popitem(last=False)
            self._count += 1
        self._publisher.publish(msg)

    def published_count(self) -> int:
        """Frames published so far."""
        with self._lock:
            return self._count

    def lookup(self, stamp_ns: int) -> PublishedFrame | None:
        """The published frame with this header stamp, or None (not published by this camera, or forgotten)."""
        with self._lock:
            return self._published.get(int(stamp_ns))

    def frame(self, stamp_ns: int) -> np.ndarray | None:
        """(H, W, 3) uint8 RGB pixels of the published frame with this stamp, or None."""
        published = self.lookup(stamp_ns)
        return None if published is None else self.video.frames[published.video_index]

    def truth(self, stamp_ns: int) -> FrameTruth | None:
        """Ground truth of the published frame with this stamp, or None."""
        published = self.lookup(stamp_ns)
        return None if published is None else self.video.truth(published.video_index)
