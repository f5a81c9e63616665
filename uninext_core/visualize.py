"""Overlay of instances on a frame (debug image of the node, demo video, rosbag report frames)."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from uninext_core.instances import Instances


def colour_for(key: int) -> tuple[int, int, int]:
    """A stable, well-separated RGB colour for a track id or class index (golden-ratio hue steps)."""
    hue = (key * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_instances(frame_rgb: np.ndarray, instances: Instances, *, mask_alpha: float = 0.45) -> np.ndarray:
    """A copy of `frame_rgb` (H, W, 3 uint8) with masks, boxes and "label #id score" captions drawn on it.

    Colours follow the track id when there is one (so a tracked object keeps its colour), else the class index.
    """
    if frame_rgb.shape[:2] != tuple(instances.image_size):
        raise ValueError(f"frame is {frame_rgb.shape[:2]} but the instances were found on {instances.image_size}")
    canvas = frame_rgb.copy()
    keys = [int(t) if t >= 0 else int(c) + 1000 for t, c in zip(instances.track_ids, instances.class_indices,
                                                                strict=True)]
    if instances.masks is not None and len(instances):
        for mask, key in zip(instances.masks, keys, strict=True):
            canvas[mask] = ((1 - mask_alpha) * canvas[mask] + mask_alpha * np.array(colour_for(key))).astype(np.uint8)
    scale = max(0.4, min(canvas.shape[:2]) / 800)
    for i, key in enumerate(keys):
        x0, y0, x1, y1 = np.rint(instances.boxes_xyxy[i]).astype(int).tolist()
        colour = colour_for(key)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, max(1, int(2 * scale)))
        track = f" #{int(instances.track_ids[i])}" if instances.track_ids[i] >= 0 else ""
        caption = f"{instances.labels[i][:40]}{track} {instances.scores[i]:.2f}"
        (width, height), baseline = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, 1)
        top = max(0, y0 - height - baseline - 2)
        cv2.rectangle(canvas, (x0, top), (x0 + width + 2, top + height + baseline + 2), colour, -1)
        cv2.putText(canvas, caption, (x0 + 1, top + height + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return canvas
