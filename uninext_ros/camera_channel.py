"""One camera served by the perception node: its newest-frame slot, its session, its publishers and counters.

The image callback only parks the newest message in a one-element slot (an older unprocessed frame is dropped and
counted); the node's frame processing (perception_node) takes it from there. So memory stays bounded whatever the
camera rate, and the frame processed is always the newest one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rclpy.publisher import Publisher
from rclpy.subscription import Subscription


@dataclass
class FrameSlot:
    """The newest received image message of one camera and when it arrived (monotonic seconds)."""

    msg: Any
    received_at: float


@dataclass
class ChannelStats:
    """Counters and recent timings of one camera, read by the diagnostics."""

    received: int = 0
    processed: int = 0
    dropped: int = 0
    rejected: int = 0
    last_error: str = ""
    processed_at: deque[float] = field(default_factory=lambda: deque(maxlen=60))
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=60))
    session_ms: deque[float] = field(default_factory=lambda: deque(maxlen=60))

    def rate_hz(self) -> float:
        """Processed frames per second over the recent window."""
        if len(self.processed_at) < 2:
            return 0.0
        span = self.processed_at[-1] - self.processed_at[0]
        return (len(self.processed_at) - 1) / span if span > 0 else 0.0


class CameraChannel:
    """State of one camera namespace. Thread-safe between image callbacks and the frame processing.

    Args:
        namespace: camera namespace ("" = the node's own).
        session: the perception session of this camera (uninext_core.tasks.session.Session or a compatible object).
    """

    def __init__(self, *, namespace: str, session: Any) -> None:
        self.namespace = namespace
        self.session = session
        self.session_lock = threading.Lock()  # set_prompt / reset / process never interleave
        self.stats = ChannelStats()
        self.subscription: Subscription | None = None
        self.instances_publisher: Publisher | None = None
        self.debug_publisher: Publisher | None = None
        self.current_prompt_publisher: Publisher | None = None
        self._slot: FrameSlot | None = None
        self._slot_lock = threading.Lock()

    def topic(self, name: str) -> str:
        """`name` below the camera namespace (relative, so the node's namespace still applies)."""
        return f"{self.namespace.strip('/')}/{name}" if self.namespace.strip("/") else name

    def offer(self, msg: Any) -> bool:
        """Park `msg` as the newest frame; returns True when an unprocessed older frame was dropped for it."""
        with self._slot_lock:
            dropped = self._slot is not None
            self._slot = FrameSlot(msg, time.monotonic())
            self.stats.received += 1
            if dropped:
                self.stats.dropped += 1
        return dropped

    def take(self) -> FrameSlot | None:
        """The newest frame, emptying the slot (None when nothing new arrived)."""
        with self._slot_lock:
            slot, self._slot = self._slot, None
        return slot

    def discard(self) -> bool:
        """Drop the parked frame, if any, counting it as dropped (the node stops serving or starts again, so it
        will never be processed: a frame from before a deactivation is stale after it). True when one was parked."""
        with self._slot_lock:
            dropped = self._slot is not None
            self._slot = None
            if dropped:
                self.stats.dropped += 1
        return dropped

    def has_frame(self) -> bool:
        with self._slot_lock:
            return self._slot is not None
