"""A stand-in for uninext_core.tasks.session.Session with the same public surface, for node mechanics tests.

It "finds" one instance per frame labelled with the prompt (so tests see which prompt a frame answered), can be
made slower than the camera (`delay_s`), and validates prompts the way the contract says the real one must
(reason in a ValueError, previous prompt kept).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from uninext_core.instances import Instances, Timings
from uninext_core.prompts import CategoryPrompt, ExpressionPrompt, TemplatePrompt
from uninext_ros.session_provider import SessionBundle


@dataclass
class FakeConfig:
    score_threshold: float = 0.3


class FakeSession:
    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.prompt = None
        self.prompt_id = 0
        self.task = ""
        self.config = FakeConfig()
        self.frames: list[int] = []
        self.buffered: dict[int, tuple[int, int]] = {}
        self._next_id = 1
        self.lock_check = threading.Lock()

    def set_prompt(self, prompt, *, task=None, prompt_id=None) -> int:
        if isinstance(prompt, ExpressionPrompt) and len(prompt.text) > 1000:
            raise ValueError(f"expression has {len(prompt.text)} characters; at most 1000 are accepted")
        if isinstance(prompt, TemplatePrompt):
            if prompt.image is None and prompt.frame_stamp_ns not in self.buffered:
                raise ValueError(f"template frame {prompt.frame_stamp_ns} is not buffered and no image was given")
            height, width = (prompt.image.shape[:2] if prompt.image is not None
                             else self.buffered[prompt.frame_stamp_ns])
            for target in prompt.targets:
                x0, y0, x1, y1 = target.resolved_box_xyxy()
                if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
                    raise ValueError(f"target {target.object_id}: box {(x0, y0, x1, y1)} is outside the "
                                     f"{width}x{height} frame")
        self.prompt = prompt
        self.task = task or {CategoryPrompt: "instance_segmentation", ExpressionPrompt: "res",
                             TemplatePrompt: "sot"}[type(prompt)]
        self.prompt_id = prompt_id or self._next_id
        self._next_id = max(self._next_id, self.prompt_id) + 1
        return self.prompt_id

    def process(self, frame: np.ndarray, stamp_ns: int) -> Instances:
        assert self.lock_check.acquire(blocking=False), "process ran concurrently with another session call"
        try:
            if frame.size == 0:
                raise ValueError("frame is empty")
            self.buffered[stamp_ns] = frame.shape[:2]
            self.frames.append(stamp_ns)
            if self.delay_s:
                time.sleep(self.delay_s)
            height, width = frame.shape[:2]
            if self.prompt is None:
                return Instances.empty(stamp_ns=stamp_ns, image_size=(height, width), task="detection",
                                       prompt_id=0)
            label = self.prompt.names[0] if isinstance(self.prompt, CategoryPrompt) else getattr(
                self.prompt, "text", "target")
            mask = np.zeros((1, height, width), bool)
            mask[0, : height // 2, : width // 2] = True
            return Instances(stamp_ns=stamp_ns, image_size=(height, width), task=self.task, prompt_id=self.prompt_id,
                             track_ids=np.array([1]), boxes_xyxy=np.array([[0, 0, width / 2, height / 2]], np.float32),
                             scores=np.array([0.9], np.float32), class_indices=np.array([0]), labels=[label],
                             masks=mask, timings=Timings(1.0, 2.0, 3.0))
        finally:
            self.lock_check.release()

    def reset(self, *, clear_prompt: bool = False) -> None:
        self.frames.clear()
        if clear_prompt:
            self.prompt, self.prompt_id, self.task = None, 0, ""

    def update_config(self, config: FakeConfig) -> None:
        self.config = config


@dataclass
class FakeProvider:
    delay_s: float = 0.0
    fail_with: str = ""
    built: list[dict[str, FakeSession]] = field(default_factory=list)
    released: int = 0

    def build(self, params) -> SessionBundle:
        if self.fail_with:
            raise ValueError(self.fail_with)
        sessions = {camera: FakeSession(delay_s=self.delay_s) for camera in params.cameras}
        self.built.append(sessions)
        return SessionBundle(sessions, f"fake backend ({params.preset})", release=self._release)

    def _release(self) -> None:
        self.released += 1

    def session_config(self, params) -> FakeConfig:
        return FakeConfig(score_threshold=params.score_threshold)
