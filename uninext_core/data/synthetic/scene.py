"""Scene content of the synthetic world: object vocabulary, difficulty settings and object placement.

An object is a shape `kind` (the category) with a named colour, a size class, a surface texture, a centre, a radius
(half the shape's extent in pixels) and an angle. Size classes have disjoint radius ranges (relative to the short
image side) with room for ±15 % scale change in videos, so "small"/"medium"/"large" stay true on every frame.
Placement keeps every object at least partly visible: later objects are drawn on top (z-order = list order) and may
cover at most `max_occlusion` of any earlier object.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from uninext_core.data.synthetic.shapes import shape_mask

KINDS: tuple[str, ...] = (
    "circle", "square", "triangle", "star", "hexagon", "cross", "heart", "ring", "ellipse", "diamond",
)
# Saturated RGB colours; backgrounds and clutter are desaturated so they never read as one of these.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 35), "green": (35, 165, 55), "blue": (35, 75, 215), "yellow": (240, 215, 25),
    "purple": (130, 45, 175), "orange": (245, 135, 20), "white": (245, 245, 245), "black": (22, 22, 22),
}
# Radius ranges as fractions of the short image side.
SIZES: dict[str, tuple[float, float]] = {"small": (0.03, 0.045), "medium": (0.07, 0.085), "large": (0.12, 0.14)}
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")
DifficultyName = Literal["easy", "medium", "hard"]


@dataclass(frozen=True)
class Difficulty:
    """How hard a scene is.

    Attributes:
        num_objects: inclusive range of objects per scene.
        repeat_kind: probability that a new object copies the kind of an object already placed (a same-category
            distractor); with the same probability it also copies that object's colour.
        clutter: number of background lines and blobs.
        max_occlusion: largest fraction of an object later objects may cover (images; videos overlap freely).
        noise_sigma: inclusive range of the Gaussian camera-noise standard deviation (grey levels).
        blur_probability: chance of motion blur on a frame.
    """

    num_objects: tuple[int, int]
    repeat_kind: float
    clutter: int
    max_occlusion: float
    noise_sigma: tuple[float, float]
    blur_probability: float


DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty((2, 4), 0.1, 4, 0.2, (0.0, 3.0), 0.1),
    "medium": Difficulty((4, 7), 0.35, 12, 0.35, (2.0, 6.0), 0.25),
    "hard": Difficulty((7, 12), 0.6, 28, 0.5, (4.0, 10.0), 0.4),
}


@dataclass(frozen=True)
class SceneObject:
    """One object; `id` is its instance id (1-based, unique in the scene), `center` (x, y) in pixels."""

    id: int
    kind: str
    colour: str
    size: str
    texture: str
    radius: float
    center: tuple[float, float]
    angle: float

    def to_attributes(self) -> dict[str, Any]:
        """JSON-ready attributes (what annotation files carry for the expression resolver; floats kept exact)."""
        return {"kind": self.kind, "colour": self.colour, "size": self.size, "texture": self.texture,
                "center": [self.center[0], self.center[1]], "radius": self.radius, "angle": self.angle}

    @classmethod
    def from_attributes(cls, object_id: int, attributes: dict[str, Any]) -> SceneObject:
        """Inverse of `to_attributes` (centre and radius default to 0 for video tracks that store none)."""
        center = attributes.get("center", [0.0, 0.0])
        return cls(object_id, attributes["kind"], attributes["colour"], attributes["size"], attributes["texture"],
                   float(attributes.get("radius", 0.0)), (float(center[0]), float(center[1])),
                   float(attributes.get("angle", 0.0)))


@dataclass(frozen=True)
class Scene:
    """A still scene: objects in drawing order (later on top)."""

    height: int
    width: int
    objects: tuple[SceneObject, ...]


def get_difficulty(name: str) -> Difficulty:
    """The preset of that name ("easy", "medium", "hard")."""
    if name not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {sorted(DIFFICULTIES)}, got {name!r}")
    return DIFFICULTIES[name]


def sample_object(
    rng: np.random.Generator, *, object_id: int, height: int, width: int, placed: list[SceneObject],
    difficulty: Difficulty,
) -> SceneObject:
    """Draw one object's attributes and a centre inside the image (a repeat of a placed kind with `repeat_kind`)."""
    short = min(height, width)
    if placed and rng.random() < difficulty.repeat_kind:
        model = placed[int(rng.integers(len(placed)))]
        kind = model.kind
        colour = model.colour if rng.random() < difficulty.repeat_kind else str(rng.choice(list(COLOURS)))
    else:
        kind, colour = str(rng.choice(KINDS)), str(rng.choice(list(COLOURS)))
    size = str(rng.choice(list(SIZES)))
    lo, hi = SIZES[size]
    radius = float(rng.uniform(lo, hi) * short)
    margin = 0.6 * radius
    center = (float(rng.uniform(margin, width - margin)), float(rng.uniform(margin, height - margin)))
    return SceneObject(object_id, kind, colour, size, str(rng.choice(TEXTURES)), radius, center,
                       float(rng.uniform(0.0, 360.0)))


def sample_scene(
    rng: np.random.Generator, *, height: int, width: int, difficulty: Difficulty, max_tries: int = 20
) -> Scene:
    """Place objects one by one, each at a position that leaves every earlier object visible enough.

    An object whose `max_tries` positions all hide too much of an earlier one is skipped, so a scene may hold
    fewer objects than drawn (never fewer than one).
    """
    count = int(rng.integers(difficulty.num_objects[0], difficulty.num_objects[1] + 1))
    placed: list[SceneObject] = []
    full_areas: list[int] = []
    visible: list[np.ndarray] = []
    for _ in range(count):
        candidate = sample_object(rng, object_id=len(placed) + 1, height=height, width=width, placed=placed,
                                  difficulty=difficulty)
        for _try in range(max_tries):
            mask = shape_mask(candidate.kind, center=candidate.center, radius=candidate.radius, angle=candidate.angle,
                              height=height, width=width)
            area = int(mask.sum())
            if area > 0 and all(
                (vis & ~mask).sum() >= (1.0 - difficulty.max_occlusion) * full
                for vis, full in zip(visible, full_areas, strict=True)
            ):
                for k in range(len(visible)):
                    visible[k] &= ~mask
                placed.append(candidate)
                visible.append(mask)
                full_areas.append(area)
                break
            margin = 0.6 * candidate.radius
            candidate = replace(candidate, center=(float(rng.uniform(margin, width - margin)),
                                                   float(rng.uniform(margin, height - margin))))
    return Scene(height, width, tuple(placed))
