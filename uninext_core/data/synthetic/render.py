"""Drawing the synthetic world: cluttered backgrounds, textured objects with occlusion, camera noise and blur.

Masks are exact: an object's visible mask is the set of pixels that show its paint after every object above it
is drawn (before camera blur and noise, which like a real camera smear the image but not the annotation).
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from uninext_core.data.synthetic.scene import COLOURS, SceneObject
from uninext_core.data.synthetic.shapes import shape_mask


class RenderedFrame(NamedTuple):
    """One drawn frame.

    Attributes:
        image: (H, W, 3) uint8 RGB after camera effects.
        visible_masks: (N, H, W) bool, one per object in the order given (empty where fully hidden or outside).
        full_areas: (N,) int64 pixel count of each object's unoccluded mask inside the image.
    """

    image: np.ndarray
    visible_masks: np.ndarray
    full_areas: np.ndarray


def _muted(rng: np.random.Generator, lo: float = 70.0, hi: float = 190.0) -> np.ndarray:
    """A desaturated colour (half way to grey), so clutter never matches a named object colour."""
    colour = rng.uniform(lo, hi, size=3)
    return 0.5 * colour + 0.5 * colour.mean()


def render_background(rng: np.random.Generator, *, height: int, width: int, clutter: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB: gradient + low-frequency noise + `clutter` lines and translucent blobs, muted colours."""
    # Gradient and low-frequency noise on a 6×6 grid, upsampled once (a linear ramp survives bicubic resizing).
    grid = np.linspace(0.0, 1.0, 6, dtype=np.float32)
    theta = rng.uniform(0.0, 2.0 * np.pi)
    ramp = np.cos(theta) * grid[None, :] + np.sin(theta) * grid[:, None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = _muted(rng).astype(np.float32), _muted(rng).astype(np.float32)
    coarse = c0 + ramp[..., None] * (c1 - c0)
    coarse += rng.normal(0.0, rng.uniform(6.0, 18.0), size=(6, 6, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    canvas = np.clip(image, 0, 255).astype(np.uint8)
    overlay = canvas.copy()
    blob_mask = np.zeros((height, width), dtype=np.uint8)
    for _ in range(clutter):
        colour = tuple(int(v) for v in _muted(rng, 40.0, 215.0))
        if rng.random() < 0.5:
            p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(canvas, p0, p1, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
            cv2.line(overlay, p0, p1, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            n = int(rng.integers(5, 9))
            centre = rng.uniform((0, 0), (width, height))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = rng.uniform(0.03, 0.12, n) * min(height, width)
            points = centre + np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]
            cv2.fillPoly(overlay, [points.astype(np.int32)], colour, cv2.LINE_AA)
            cv2.fillPoly(blob_mask, [points.astype(np.int32)], 1)
    alpha = 0.45
    blend = cv2.addWeighted(overlay, alpha, canvas, 1.0 - alpha, 0.0)
    np.copyto(canvas, blend, where=blob_mask[..., None].astype(bool))
    return canvas


def _shade(colour: tuple[int, int, int]) -> np.ndarray:
    """The texture's second colour: a darker shade (grey for black), so the colour name stays true."""
    rgb = np.array(colour, dtype=np.float32)
    return np.array([95.0, 95.0, 95.0]) if rgb.max() < 60 else rgb * 0.55


def _texture_pattern(obj: SceneObject, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bool array, True where the second colour goes; the pattern is fixed to the object (moves with it)."""
    dx, dy = xs - obj.center[0], ys - obj.center[1]
    theta = np.deg2rad(obj.angle)
    u = np.cos(theta) * dx + np.sin(theta) * dy
    v = -np.sin(theta) * dx + np.cos(theta) * dy
    period = max(obj.radius / 2.5, 3.0)
    match obj.texture:
        case "striped":
            return np.floor(u / period).astype(np.int64) % 2 == 1
        case "checkered":
            return (np.floor(u / period).astype(np.int64) + np.floor(v / period).astype(np.int64)) % 2 == 1
        case "dotted":
            fu = u / period - np.round(u / period)
            fv = v / period - np.round(v / period)
            return fu**2 + fv**2 < 0.3**2
    return np.zeros_like(dx, dtype=bool)


def paint_objects(
    canvas: np.ndarray, objects: list[SceneObject] | tuple[SceneObject, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Paint objects in order (later on top) into `canvas` (modified in place).

    Returns:
        visible_masks: (N, H, W) bool; full_areas: (N,) int64 unoccluded pixel counts.
    """
    height, width = canvas.shape[:2]
    masks = np.zeros((len(objects), height, width), dtype=bool)
    for k, obj in enumerate(objects):
        mask = shape_mask(obj.kind, center=obj.center, radius=obj.radius, angle=obj.angle, height=height, width=width)
        masks[k] = mask
        rows, cols = np.nonzero(mask)
        if rows.size == 0:
            continue
        base = np.array(COLOURS[obj.colour], dtype=np.float32)
        pattern = _texture_pattern(obj, cols.astype(np.float32) + 0.5, rows.astype(np.float32) + 0.5)
        pixels = np.where(pattern[:, None], _shade(COLOURS[obj.colour]), base)
        canvas[rows, cols] = pixels.astype(np.uint8)
    full_areas = masks.sum(axis=(1, 2)).astype(np.int64)
    covered = np.zeros((height, width), dtype=bool)
    for k in range(len(objects) - 1, -1, -1):  # top to bottom
        top = masks[k].copy()
        masks[k] &= ~covered
        covered |= top
    return masks, full_areas


def camera_effects(
    image: np.ndarray, rng: np.random.Generator, *, noise_sigma: float, blur_probability: float,
    blur_direction: float | None = None,
) -> np.ndarray:
    """Motion blur (with `blur_probability`, 3–9 px kernel) then Gaussian sensor noise of `noise_sigma` grey levels.

    Args:
        image: (H, W, 3) uint8.
        blur_direction: blur angle in radians (the camera's motion); None picks one at random.
    """
    out = image
    if rng.random() < blur_probability:
        length = int(rng.integers(3, 10))
        direction = rng.uniform(0, np.pi) if blur_direction is None else blur_direction
        kernel = np.zeros((length, length), dtype=np.float32)
        c = (length - 1) / 2.0
        d = np.array([np.cos(direction), np.sin(direction)]) * c
        cv2.line(kernel, (round(c - d[0]), round(c - d[1])), (round(c + d[0]), round(c + d[1])), 1.0, 1)
        kernel /= kernel.sum()
        out = cv2.filter2D(out, -1, kernel, borderType=cv2.BORDER_REFLECT)
    if noise_sigma > 0:
        count = out.size
        bank = _noise_bank()
        if count <= bank.size:
            start = int(rng.integers(0, bank.size - count + 1))
            unit = bank[start:start + count]
        else:
            unit = rng.standard_normal(count, dtype=np.float32)
        noisy = out.astype(np.float32) + unit.reshape(out.shape) * np.float32(noise_sigma)
        out = np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)
    return out


_NOISE_BANK: list[np.ndarray] = []


def _noise_bank() -> np.ndarray:
    """2^21 fixed standard-normal samples; each frame reads a random window of them (drawing fresh Gaussian
    samples for every pixel costs more than drawing the rest of the frame)."""
    if not _NOISE_BANK:
        _NOISE_BANK.append(np.random.default_rng(0x5EED).standard_normal(1 << 21, dtype=np.float32))
    return _NOISE_BANK[0]


def render_frame(
    background: np.ndarray, objects: list[SceneObject] | tuple[SceneObject, ...], rng: np.random.Generator, *,
    noise_sigma: float, blur_probability: float, offset: tuple[float, float] = (0.0, 0.0),
) -> RenderedFrame:
    """Objects over the background, then camera effects.

    Args:
        background: (H, W, 3) uint8 RGB from `render_background`.
        offset: (dx, dy) camera shake in pixels applied to the background only (objects carry their own
            per-frame positions).
    """
    canvas = background.copy()
    if offset != (0.0, 0.0):
        shift = np.float32([[1, 0, offset[0]], [0, 1, offset[1]]])
        canvas = cv2.warpAffine(canvas, shift, (canvas.shape[1], canvas.shape[0]), borderMode=cv2.BORDER_REFLECT)
    masks, full_areas = paint_objects(canvas, objects)
    image = camera_effects(canvas, rng, noise_sigma=noise_sigma, blur_probability=blur_probability)
    return RenderedFrame(image, masks, full_areas)
