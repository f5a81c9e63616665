from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from uninext_core.data.synthetic.expressions import (
    default_position_margin,
    generate_expressions,
    resolve_expression,
)
from uninext_core.data.synthetic.scene import SceneObject, get_difficulty, sample_scene
from uninext_core.data.transforms import swap_left_right


def _obj(object_id, kind, colour, size, center, radius, texture="solid"):
    return SceneObject(object_id, kind, colour, size, texture, radius, center, 0.0)


SCENE = [
    _obj(1, "circle", "red", "small", (50, 100), 10),
    _obj(2, "circle", "red", "large", (200, 100), 40),
    _obj(3, "square", "blue", "medium", (120, 50), 25, "striped"),
    _obj(4, "star", "green", "small", (30, 200), 10),
    _obj(5, "star", "green", "medium", (150, 210), 25),
    _obj(6, "star", "green", "small", (260, 205), 11),
]


@pytest.mark.parametrize(
    ("text", "referents", "ties"),
    [("the small red circle", (1,), ()),
     ("the red circle", (1, 2), ()),
     ("the striped object", (3,), ()),
     ("the plain square", (), ()),
     ("the leftmost star", (4,), ()),
     ("the rightmost red object", (2,), ()),
     ("the topmost object", (3,), ()),
     ("the second star from the left", (5,), ()),
     ("the third star from the left", (6,), ()),
     ("the first star from the right", (6,), ()),
     ("the fourth star from the left", (), ()),
     ("the largest green object", (5,), ()),
     ("the smallest star", (), (4, 6)),  # radii 10 and 11 are within a factor 1.15
     ("the star left of the blue square", (4,), ()),
     ("the star right of the blue square", (5, 6), ()),
     ("the circle above the medium star", (1, 2), ()),
     ("the circle above the green star", (), (1, 2))],  # three green stars: the anchor is ambiguous
)
def test_resolver_on_a_hand_built_scene(text, referents, ties):
    resolution = resolve_expression(text, SCENE, position_margin=12.8)
    assert resolution.referents == referents and resolution.ties == ties
    assert resolution.unique == (referents[0] if len(referents) == 1 and not ties else None)


def test_near_positions_tie():
    crowded = [*SCENE, _obj(7, "star", "yellow", "small", (35, 120), 10)]
    assert resolve_expression("the leftmost star", crowded, position_margin=12.8).ties == (4, 7)
    # y = 200, 210, 205, 120: the three lower stars lie within 12.8 px of the bottommost one
    assert resolve_expression("the bottommost star", crowded, position_margin=12.8).ties == (4, 5, 6)
    beside = [*SCENE, _obj(7, "star", "yellow", "small", (125, 120), 10)]  # 5 px right of the square: a tie
    assert resolve_expression("the star left of the blue square", beside, position_margin=12.8).unique is None


@pytest.mark.parametrize("text", ["a red circle", "the red", "the second star", "the leftmost star from the top",
                                  "the star near the square", "the star left of the square please"])
def test_text_outside_the_grammar_raises(text):
    with pytest.raises(ValueError):
        resolve_expression(text, SCENE, position_margin=12.8)


def _flip(objects, width):
    return [replace(o, center=(width - o.center[0], o.center[1])) for o in objects]


def test_every_generated_expression_names_exactly_its_object_and_survives_a_flip():
    forms: set[str] = set()
    total = 0
    for difficulty in ("easy", "medium", "hard"):
        for seed in range(40):
            rng = np.random.default_rng(seed)
            scene = sample_scene(rng, height=320, width=320, difficulty=get_difficulty(difficulty))
            margin = default_position_margin(320, 320)
            expressions = generate_expressions(scene.objects, rng=rng, position_margin=margin)
            flipped = _flip(scene.objects, 320)
            for object_id, found in expressions.items():
                for expression in found:
                    total += 1
                    forms.add(expression.form)
                    assert resolve_expression(expression.text, scene.objects,
                                              position_margin=margin).unique == object_id, expression
                    assert resolve_expression(swap_left_right(expression.text), flipped,
                                              position_margin=margin).unique == object_id, expression
    assert forms == {"attributes", "extreme", "ordinal", "superlative", "relation"}
    assert total > 1000


def test_most_objects_get_an_expression():
    described = objects = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        scene = sample_scene(rng, height=320, width=320, difficulty=get_difficulty("hard"))
        expressions = generate_expressions(scene.objects, rng=rng, position_margin=12.8)
        described += len(expressions)
        objects += len(scene.objects)
    assert described / objects > 0.9
