"""`Instances`: what the perception session returns for one frame (numpy only, no ROS types).

The ROS node, the demo and the rosbag evaluator all consume this one structure; `uninext_ros.conversions` turns it
into `uninext_msgs/InstanceArray` and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from uninext_core.masks import Rle, encode_masks

TASKS: tuple[str, ...] = ("detection", "instance_segmentation", "rec", "res", "rvos", "sot", "vos", "mot", "mots",
                          "vis")


@dataclass(frozen=True)
class Timings:
    """Per-frame cost in milliseconds: conversion/resize/normalise, network forward, decoding + tracking."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0


@dataclass
class Instances:
    """Instances found in one frame.

    Attributes:
        stamp_ns: capture stamp of the source frame (nanoseconds).
        image_size: (height, width) of the source frame in pixels.
        task: one of TASKS.
        prompt_id: id of the prompt these instances answer (0 when no prompt is set).
        track_ids: (N,) int64, -1 for untracked tasks.
        boxes_xyxy: (N, 4) float32, pixels of the source frame, (x_min, y_min, x_max, y_max).
        scores: (N,) float32 in [0, 1].
        class_indices: (N,) int64 index into the prompt's categories (templates: target index; expressions: -1).
        labels: N strings (class name, expression, or template label).
        masks: (N, H, W) bool at the source size, or None when the task or the configuration gives no masks.
        timings: where the frame's time went.
    """

    stamp_ns: int
    image_size: tuple[int, int]
    task: str
    prompt_id: int
    track_ids: np.ndarray
    boxes_xyxy: np.ndarray
    scores: np.ndarray
    class_indices: np.ndarray
    labels: list[str]
    masks: np.ndarray | None = None
    timings: Timings = field(default_factory=Timings)
    _rles: list[Rle] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {TASKS}")
        count = len(self.scores)
        shapes = {"track_ids": (count,), "boxes_xyxy": (count, 4), "scores": (count,), "class_indices": (count,)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                actual = getattr(self, name).shape
                raise ValueError(f"{name} has shape {actual}, expected {shape} for {count} instances")
        if len(self.labels) != count:
            raise ValueError(f"{len(self.labels)} labels for {count} instances")
        if self.masks is not None and self.masks.shape != (count, *self.image_size):
            raise ValueError(f"masks have shape {self.masks.shape}, expected {(count, *self.image_size)}")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, *, stamp_ns: int, image_size: tuple[int, int], task: str, prompt_id: int,
              with_masks: bool = False, timings: Timings | None = None) -> Instances:
        """No instances (no prompt yet, or nothing found)."""
        return cls(stamp_ns=stamp_ns, image_size=image_size, task=task, prompt_id=prompt_id,
                   track_ids=np.zeros(0, np.int64), boxes_xyxy=np.zeros((0, 4), np.float32),
                   scores=np.zeros(0, np.float32), class_indices=np.zeros(0, np.int64), labels=[],
                   masks=np.zeros((0, *image_size), bool) if with_masks else None, timings=timings or Timings())

    def rles(self) -> list[Rle] | None:
        """Masks as COCO RLE, encoded once and cached (the node, the bag writer and the evaluator share them)."""
        if self.masks is None:
            return None
        if self._rles is None:
            self._rles = encode_masks(self.masks)
        return self._rles
