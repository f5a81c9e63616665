"""Rasterised masks of the ten object kinds (OpenCV drawing with 1/16-pixel precision).

Every kind is drawn around its centre with `radius` = the distance from the centre to the farthest point of the
shape (circumradius), rotated by `angle` degrees (hearts only tilt within ±25° so they stay upright).
"""

from __future__ import annotations

import cv2
import numpy as np

_SHIFT = 4  # fixed-point bits for cv2 drawing: coordinates are multiplied by 16
_SCALE = 1 << _SHIFT


def _regular(n: int, radius: float, phase_deg: float) -> np.ndarray:
    angles = np.deg2rad(phase_deg + 360.0 * np.arange(n) / n)
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _local_polygon(kind: str, radius: float) -> np.ndarray:
    """(K, 2) vertices around (0, 0) before rotation; image y points down."""
    match kind:
        case "square":
            return _regular(4, radius, 45.0)
        case "triangle":
            return _regular(3, radius, -90.0)
        case "hexagon":
            return _regular(6, radius, 0.0)
        case "star":
            outer = _regular(5, radius, -90.0)
            inner = _regular(5, 0.45 * radius, -90.0 + 36.0)
            return np.stack([outer, inner], axis=1).reshape(-1, 2)
        case "cross":
            r, w = radius / np.sqrt(1.0 + 0.33**2), 0.33 * radius / np.sqrt(1.0 + 0.33**2)
            return np.array([(w, r), (w, w), (r, w), (r, -w), (w, -w), (w, -r), (-w, -r), (-w, -w), (-r, -w),
                             (-r, w), (-w, w), (-w, r)], dtype=np.float64)
        case "diamond":
            return np.array([(0.0, -radius), (0.6 * radius, 0.0), (0.0, radius), (-0.6 * radius, 0.0)])
        case "heart":
            t = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
            x = 16.0 * np.sin(t) ** 3
            y = -(13.0 * np.cos(t) - 5.0 * np.cos(2 * t) - 2.0 * np.cos(3 * t) - np.cos(4 * t))
            points = np.stack([x, y + 2.5], axis=1)  # roughly centred on (0, 0)
            return points * (radius / np.max(np.linalg.norm(points, axis=1)))
    raise ValueError(f"no polygon for kind {kind!r}")


def shape_mask(
    kind: str, *, center: tuple[float, float], radius: float, angle: float, height: int, width: int
) -> np.ndarray:
    """(H, W) bool mask of one shape (parts outside the image are cut off).

    Args:
        kind: one of `scene.KINDS`.
        center: (x, y) in pixels (continuous; pixel (c, r) covers [c, c+1) × [r, r+1)).
        radius: circumradius in pixels.
        angle: rotation in degrees (clockwise in image coordinates).
    """
    canvas = np.zeros((height, width), dtype=np.uint8)
    cx, cy = center[0] - 0.5, center[1] - 0.5  # cv2 puts pixel centres at integer coordinates
    centre_fx = (round(cx * _SCALE), round(cy * _SCALE))
    match kind:
        case "circle":
            cv2.circle(canvas, centre_fx, round(radius * _SCALE), 1, -1, cv2.LINE_8, _SHIFT)
        case "ring":
            cv2.circle(canvas, centre_fx, round(radius * _SCALE), 1, -1, cv2.LINE_8, _SHIFT)
            cv2.circle(canvas, centre_fx, round(0.55 * radius * _SCALE), 0, -1, cv2.LINE_8, _SHIFT)
        case "ellipse":
            axes = (round(radius * _SCALE), round(0.55 * radius * _SCALE))
            cv2.ellipse(canvas, centre_fx, axes, angle, 0.0, 360.0, 1, -1, cv2.LINE_8, _SHIFT)
        case _:
            effective = (angle % 50.0) - 25.0 if kind == "heart" else angle
            theta = np.deg2rad(effective)
            rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
            points = _local_polygon(kind, radius) @ rotation.T + np.array([cx, cy])
            cv2.fillPoly(canvas, [np.round(points * _SCALE).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return canvas.astype(bool)
