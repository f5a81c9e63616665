"""The recorder: subscribes to the node's `instances`, keeps every array, and draws what the node found.

Each instance array answering the current phase's prompt is drawn on the frame it answers (looked up by header stamp
from the synthetic camera) with the overlay the node's debug image uses, under a caption bar naming the phase, the
prompt and the measured rate. Frames go to `<out>/demo.mp4` (OpenCV, mp4v) and a few of each phase to
`<out>/frames/<phase>_<k>.png`. The video plays at the camera rate, so it runs faster than real time when the node
processes fewer frames per second than the camera sends.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from rclpy.node import Node
from uninext_msgs.msg import InstanceArray

from uninext_core.visualize import draw_instances
from uninext_ros.conversions import msg_to_instances, stamp_to_ns
from uninext_ros.demo.camera import SyntheticCamera
from uninext_ros.demo.planner import PHASES
from uninext_ros.demo.summary import Observation
from uninext_ros.qos import output_qos

logger = logging.getLogger(__name__)

CAPTION_HEIGHT = 40  # pixels of the caption bar above each frame


class _Phase(NamedTuple):
    prompt_id: int
    name: str  # file-name prefix of its PNGs
    title: str  # first caption line
    task: str


class Recording(NamedTuple):
    """What the recorder wrote: the video (None when no frame was drawn), the PNG frames, frames in the video."""

    video: Path | None
    pngs: list[Path]
    frames_written: int


def captioned(frame_rgb: np.ndarray, lines: tuple[str, str]) -> np.ndarray:
    """(H + CAPTION_HEIGHT, W, 3) uint8: two lines of white text on a dark bar above `frame_rgb` (H, W, 3 uint8)."""
    height, width = frame_rgb.shape[:2]
    canvas = np.zeros((height + CAPTION_HEIGHT, width, 3), dtype=np.uint8)
    canvas[:CAPTION_HEIGHT] = (32, 32, 32)
    canvas[CAPTION_HEIGHT:] = frame_rgb
    for row, text in enumerate(lines):
        scale = 0.42
        while scale > 0.3 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width - 8:
            scale -= 0.02
        cv2.putText(canvas, text, (4, 16 + 18 * row), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return canvas


class Recorder(Node):
    """Records the node's instance arrays and writes the annotated video and PNG frames.

    Args:
        camera: the synthetic camera (frames by stamp).
        out_dir: output folder (created).
        video_fps: frame rate written into demo.mp4.
        pngs_per_phase: PNG frames kept per phase, spread over `phase_seconds`.
        phase_seconds: planned length of a phase (spaces the PNGs).
    """

    def __init__(self, camera: SyntheticCamera, *, out_dir: Path, video_fps: float = 5.0, pngs_per_phase: int = 3,
                 phase_seconds: float = 15.0) -> None:
        super().__init__("demo_recorder")
        if video_fps <= 0 or pngs_per_phase < 0 or phase_seconds <= 0:
            raise ValueError(f"need video_fps > 0, pngs_per_phase >= 0, phase_seconds > 0; got {video_fps}, "
                             f"{pngs_per_phase}, {phase_seconds}")
        self._camera = camera
        self.out_dir = Path(out_dir)
        self.video_path = self.out_dir / "demo.mp4"
        self.frames_dir = self.out_dir / "frames"
        self._video_fps = video_fps
        self._pngs_per_phase = pngs_per_phase
        self._png_interval_s = phase_seconds / max(pngs_per_phase, 1)
        self._lock = threading.Lock()
        self._observations: list[Observation] = []
        self._phase: _Phase | None = None
        self._phase_arrivals: list[float] = []
        self._pngs: list[Path] = []
        self._last_png_at = -float("inf")
        self._writer: cv2.VideoWriter | None = None
        self._frames_written = 0
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        for phase in PHASES:  # frames of an earlier run would mix with this one's
            for stale in self.frames_dir.glob(f"{phase}_*.png"):
                stale.unlink()
        self.create_subscription(InstanceArray, "instances", self._on_instances, output_qos())

    # ------------------------------------------------------------------------------------------------- phases
    def begin_phase(self, *, prompt_id: int, name: str, title: str, task: str) -> None:
        """Draw arrays answering `prompt_id` from now on, captioned with `title`; PNGs are named `<name>_<k>.png`."""
        with self._lock:
            self._phase = _Phase(prompt_id, name, title, task)
            self._phase_arrivals = []
            self._last_png_at = -float("inf")

    def end_phase(self) -> None:
        """Stop drawing (arrays are still recorded)."""
        with self._lock:
            self._phase = None

    def observations(self) -> list[Observation]:
        """Every array received so far, in arrival order."""
        with self._lock:
            return list(self._observations)

    def last_answered(self, prompt_id: int) -> Observation | None:
        """The latest array answering `prompt_id` (its frame was processed, so the node buffers it), or None."""
        with self._lock:
            return next((o for o in reversed(self._observations) if o.prompt_id == prompt_id), None)

    # ---------------------------------------------------------------------------------------------- callback
    def _on_instances(self, msg: InstanceArray) -> None:
        received_ns = time.time_ns()
        boxes = np.array([[i.box.x_min, i.box.y_min, i.box.x_max, i.box.y_max] for i in msg.instances],
                         dtype=np.float64).reshape(-1, 4)
        observation = Observation(
            stamp_ns=stamp_to_ns(msg.header.stamp), received_ns=received_ns, prompt_id=int(msg.prompt_id),
            task=msg.task, boxes_xyxy_px=boxes, scores=np.array([i.score for i in msg.instances], dtype=np.float64),
            labels=tuple(i.label for i in msg.instances), latency_ms=float(msg.latency_ms),
            inference_ms=float(msg.inference_ms))
        with self._lock:
            self._observations.append(observation)
            phase = self._phase
            if phase is None or phase.prompt_id != observation.prompt_id:
                return
            self._phase_arrivals.append(time.monotonic())
            arrivals = list(self._phase_arrivals[-10:])
        frame = self._camera.frame(observation.stamp_ns)
        if frame is None:
            logger.warning("instance array for stamp %d answers no frame this camera published", observation.stamp_ns)
            return
        instances = msg_to_instances(msg, image_size=frame.shape[:2])
        rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) >= 2 and \
            arrivals[-1] > arrivals[0] else 0.0
        lines = (phase.title, f"{phase.task} | prompt {observation.prompt_id} | {len(instances)} instance(s) | "
                              f"{rate:.1f} Hz | latency {observation.end_to_end_ms:.0f} ms")
        self._write(captioned(draw_instances(frame, instances), lines), phase_name=phase.name)

    def _write(self, annotated_rgb: np.ndarray, *, phase_name: str) -> None:
        bgr = cv2.cvtColor(annotated_rgb, cv2.COLOR_RGB2BGR)
        with self._lock:
            if self._writer is None:
                height, width = bgr.shape[:2]
                self._writer = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter_fourcc(*"mp4v"),
                                               self._video_fps, (width, height))
                if not self._writer.isOpened():
                    raise RuntimeError(f"OpenCV cannot write {self.video_path} (mp4v)")
            self._writer.write(bgr)
            self._frames_written += 1
            now = time.monotonic()
            taken = sum(1 for p in self._pngs if p.name.startswith(phase_name + "_"))
            if taken < self._pngs_per_phase and now - self._last_png_at >= self._png_interval_s:
                path = self.frames_dir / f"{phase_name}_{taken + 1}.png"
                cv2.imwrite(str(path), bgr)
                self._pngs.append(path)
                self._last_png_at = now

    def close(self) -> Recording:
        """Finish the video and say what was written."""
        with self._lock:
            self._phase = None
            if self._writer is not None:
                self._writer.release()
                self._writer = None
            video = self.video_path if self._frames_written else None
            return Recording(video, list(self._pngs), self._frames_written)
