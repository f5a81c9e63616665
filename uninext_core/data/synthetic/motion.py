"""Object motion for synthetic videos: persistent identities, crossing paths, leaving and re-entering, scale change.

Each track keeps its kind, colour, size class and texture for the whole video; its centre, radius and angle are
functions of the frame index. Three behaviours:
    "bounce"  moves inside the frame and reflects off its borders;
    "exit"    starts near a border heading out, leaves the frame completely and comes back (reflecting off a
              border placed beyond the image), so the same id disappears and re-appears;
    "cross"   a pair that meets at one point half way through the video from opposite directions.
The radius oscillates by at most ±15 % (size classes stay disjoint, see `scene.SIZES`); a random-walk camera shake
moves every object together.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from uninext_core.data.synthetic.scene import Difficulty, SceneObject, sample_object

MAX_SCALE_CHANGE = 0.15


@dataclass(frozen=True)
class TrackPlan:
    """The motion of one object.

    Attributes:
        base: the object's fixed attributes; `base.center`, `base.radius`, `base.angle` are the frame-0 values
            before reflection and shake.
        velocity: (vx, vy) pixels per frame.
        bounds_margin: how far beyond the image border (in radii) the object turns back; negative keeps it inside.
        scale_amplitude: relative radius oscillation in [0, 0.15]; scale_period in frames; scale_phase in radians.
        spin: degrees per frame.
        behaviour: "bounce", "exit" or "cross".
    """

    base: SceneObject
    velocity: tuple[float, float]
    bounds_margin: float
    scale_amplitude: float
    scale_period: float
    scale_phase: float
    spin: float
    behaviour: str


@dataclass(frozen=True)
class VideoScene:
    """A video's plan: tracks in drawing order (later on top) and the per-frame camera shake (T, 2) pixels."""

    height: int
    width: int
    num_frames: int
    tracks: tuple[TrackPlan, ...]
    shake: np.ndarray


def _reflect(value: float, lo: float, hi: float) -> float:
    """Fold a free coordinate into [lo, hi] as if it bounced off both ends."""
    span = hi - lo
    if span <= 0:
        return (lo + hi) / 2.0
    phase = (value - lo) % (2.0 * span)
    return lo + (phase if phase <= span else 2.0 * span - phase)


def object_at(plan: TrackPlan, t: int, *, height: int, width: int, shake: tuple[float, float]) -> SceneObject:
    """The track's object on frame t (centre, radius, angle updated)."""
    base = plan.base
    radius = base.radius * (1.0 + plan.scale_amplitude * np.sin(2.0 * np.pi * t / plan.scale_period
                                                                  + plan.scale_phase))
    pad = plan.bounds_margin * base.radius
    x = _reflect(base.center[0] + plan.velocity[0] * t, -pad, width + pad)
    y = _reflect(base.center[1] + plan.velocity[1] * t, -pad, height + pad)
    return replace(base, center=(x + shake[0], y + shake[1]), radius=float(radius),
                   angle=(base.angle + plan.spin * t) % 360.0)


def objects_at(video: VideoScene, t: int) -> list[SceneObject]:
    """Every track's object on frame t, in drawing order."""
    shake = (float(video.shake[t, 0]), float(video.shake[t, 1]))
    return [object_at(p, t, height=video.height, width=video.width, shake=shake) for p in video.tracks]


def _plan(rng: np.random.Generator, base: SceneObject, behaviour: str, velocity: tuple[float, float],
          margin: float) -> TrackPlan:
    amplitude = float(rng.uniform(0.0, MAX_SCALE_CHANGE)) if rng.random() < 0.7 else 0.0
    return TrackPlan(base, velocity, margin, amplitude, float(rng.uniform(12.0, 40.0)),
                     float(rng.uniform(0.0, 2.0 * np.pi)), float(rng.uniform(-6.0, 6.0)), behaviour)


def sample_video_scene(
    rng: np.random.Generator, *, height: int, width: int, num_frames: int, difficulty: Difficulty,
) -> VideoScene:
    """Draw tracks: about a quarter exit and re-enter, one crossing pair when there are ≥ 3 tracks, the rest bounce.

    Speeds scale with the image: bounce 0.3–2 % of the short side per frame; exit tracks are fast enough to
    leave and return within `num_frames`.
    """
    short = float(min(height, width))
    count = int(rng.integers(difficulty.num_objects[0], difficulty.num_objects[1] + 1))
    objects: list[SceneObject] = []
    for k in range(count):
        objects.append(sample_object(rng, object_id=k + 1, height=height, width=width, placed=objects,
                                     difficulty=difficulty))
    plans: list[TrackPlan] = []
    k = 0
    if count >= 3:  # one crossing pair: meet at `meet` on frame num_frames // 2 from opposite directions
        meet = rng.uniform((0.3 * width, 0.3 * height), (0.7 * width, 0.7 * height))
        direction = rng.uniform(0.0, 2.0 * np.pi)
        speed = rng.uniform(0.01, 0.02) * short
        v = np.array([np.cos(direction), np.sin(direction)]) * speed
        tc = num_frames // 2
        for sign in (1.0, -1.0):
            start = meet - sign * v * tc
            base = replace(objects[k], center=(float(start[0]), float(start[1])))
            plans.append(_plan(rng, base, "cross", (float(sign * v[0]), float(sign * v[1])), 2.5))
            k += 1
    for obj in objects[k:]:
        if rng.random() < 0.25:  # exit and re-enter through a random border
            axis = int(rng.integers(2))
            outward = 1.0 if rng.random() < 0.5 else -1.0
            extent = (width, height)[axis]
            travel = 2.0 * (0.15 * extent + 2.5 * obj.radius)  # out past the turning point and back
            speed = travel / max(0.8 * num_frames, 1.0)
            centre = list(obj.center)
            centre[axis] = extent * (0.85 if outward > 0 else 0.15)
            velocity = [0.0, 0.0]
            velocity[axis] = outward * speed
            velocity[1 - axis] = float(rng.uniform(-0.3, 0.3) * speed)
            plans.append(_plan(rng, replace(obj, center=(centre[0], centre[1])), "exit", (velocity[0], velocity[1]),
                               2.5))
        else:
            direction = rng.uniform(0.0, 2.0 * np.pi)
            speed = rng.uniform(0.003, 0.02) * short
            plans.append(_plan(rng, obj, "bounce", (float(np.cos(direction) * speed), float(np.sin(direction) * speed)),
                               -1.0))
    steps = rng.normal(0.0, 0.6, size=(num_frames, 2))
    steps[0] = 0.0
    shake = np.clip(np.cumsum(steps, axis=0), -4.0, 4.0)
    return VideoScene(height, width, num_frames, tuple(plans), shake)
