"""Referring expressions over a scene, and the resolver that checks each one names exactly one object.

Grammar (all lower case):
    expr      := "the" [modifier] np [tail]
    modifier  := ordinal ("first".."fifth") | extreme ("leftmost", "rightmost", "topmost", "bottommost")
                 | superlative ("largest", "smallest")
    np        := [size] [colour] [texture] noun          noun := a kind ("circle", ...) | "object"
    texture   := "striped" | "dotted" | "checkered" | "plain" (solid)
    tail      := "from the" ("left" | "right" | "top" | "bottom")      (only after an ordinal)
               | ("left of" | "right of" | "above" | "below") "the" np  (a relation to an anchor object)

Semantics use object centres and radii with tolerances, and an expression counts as unique only when exactly one
object clearly satisfies it and no object is a near tie: positions closer than `position_margin` pixels are ties,
and radii within a factor `size_ratio` are ties for "largest"/"smallest". The generator emits only expressions the
resolver finds unique for the intended object.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from uninext_core.data.synthetic.scene import COLOURS, KINDS, SIZES, SceneObject

ORDINALS = ("first", "second", "third", "fourth", "fifth")
EXTREMES = {"leftmost": (0, 1.0), "rightmost": (0, -1.0), "topmost": (1, 1.0), "bottommost": (1, -1.0)}
SUPERLATIVES = {"largest": -1.0, "smallest": 1.0}
DIRECTIONS = {"left": (0, 1.0), "right": (0, -1.0), "top": (1, 1.0), "bottom": (1, -1.0)}
RELATIONS = {"left of": (0, 1.0), "right of": (0, -1.0), "above": (1, 1.0), "below": (1, -1.0)}
TEXTURE_WORDS = {"striped": "striped", "dotted": "dotted", "checkered": "checkered", "plain": "solid"}
WORD_OF_TEXTURE = {v: k for k, v in TEXTURE_WORDS.items()}


class NounPhrase(NamedTuple):
    """Attribute filter; None fields are unconstrained; kind None means "object"."""

    kind: str | None
    colour: str | None = None
    size: str | None = None
    texture: str | None = None

    def matches(self, obj: SceneObject) -> bool:
        """Whether the object has every stated attribute."""
        return all(want is None or want == have for want, have in
                   ((self.kind, obj.kind), (self.colour, obj.colour), (self.size, obj.size),
                    (self.texture, obj.texture)))

    def text(self) -> str:
        """Words in the fixed order size, colour, texture, noun."""
        words = [self.size, self.colour, WORD_OF_TEXTURE[self.texture] if self.texture else None, self.kind or "object"]
        return " ".join(w for w in words if w)


class Resolution(NamedTuple):
    """What an expression picks: `referents` clearly satisfy it, `ties` are too close to call."""

    referents: tuple[int, ...]
    ties: tuple[int, ...]

    @property
    def unique(self) -> int | None:
        """The one object's id when exactly one object clearly satisfies the expression and nothing ties."""
        return self.referents[0] if len(self.referents) == 1 and not self.ties else None


def _parse_np(tokens: list[str], i: int, text: str) -> tuple[NounPhrase, int]:
    size = colour = texture = None
    while i < len(tokens):
        word = tokens[i]
        if word in SIZES and size is None:
            size = word
        elif word in COLOURS and colour is None:
            colour = word
        elif word in TEXTURE_WORDS and texture is None:
            texture = TEXTURE_WORDS[word]
        elif word in KINDS or word == "object":
            return NounPhrase(None if word == "object" else word, colour, size, texture), i + 1
        else:
            break
        i += 1
    raise ValueError(f"cannot parse a noun phrase in {text!r} at word {i}")


def resolve_expression(
    text: str, objects: Sequence[SceneObject], *, position_margin: float, size_ratio: float = 1.15
) -> Resolution:
    """Which objects of the scene the expression refers to.

    Args:
        text: an expression in the grammar above.
        objects: the scene's objects (centre (x, y) in pixels, radius in pixels).
        position_margin: pixels within which two positions tie.
        size_ratio: radii within this factor tie for "largest"/"smallest".

    Raises:
        ValueError: text outside the grammar.
    """
    tokens = text.lower().split()
    if not tokens or tokens[0] != "the":
        raise ValueError(f"an expression starts with 'the', got {text!r}")
    modifier = tokens[1] if len(tokens) > 1 and (
        tokens[1] in ORDINALS or tokens[1] in EXTREMES or tokens[1] in SUPERLATIVES) else None
    phrase, i = _parse_np(tokens, 2 if modifier else 1, text)
    tail = tokens[i:]
    pool = [o for o in objects if phrase.matches(o)]
    ids = np.array([o.id for o in pool], dtype=np.int64)
    centres = np.array([o.center for o in pool], dtype=np.float64).reshape(-1, 2)
    if modifier in ORDINALS:
        if len(tail) != 3 or tail[:2] != ["from", "the"] or tail[2] not in DIRECTIONS:
            raise ValueError(f"an ordinal needs 'from the left/right/top/bottom' in {text!r}")
        rank = ORDINALS.index(modifier)
        if len(pool) <= rank:
            return Resolution((), ())
        axis, sign = DIRECTIONS[tail[2]]
        values = sign * centres[:, axis]
        return _pick(ids, np.abs(values - np.sort(values)[rank]) <= position_margin)
    if modifier is not None and tail:
        raise ValueError(f"unexpected words {' '.join(tail)!r} after {modifier!r} in {text!r}")
    if not pool:
        return Resolution((), ())
    if modifier in EXTREMES:
        axis, sign = EXTREMES[modifier]
        values = sign * centres[:, axis]
        return _pick(ids, values - values.min() <= position_margin)
    if modifier in SUPERLATIVES:
        radii = np.array([o.radius for o in pool], dtype=np.float64)
        if SUPERLATIVES[modifier] < 0:
            return _pick(ids, radii * size_ratio >= radii.max())
        return _pick(ids, radii <= radii.min() * size_ratio)
    if not tail:
        return Resolution(tuple(int(v) for v in ids), ())
    return _resolve_relation(text, tail, pool, objects, position_margin=position_margin)


def _resolve_relation(
    text: str, tail: list[str], pool: list[SceneObject], objects: Sequence[SceneObject], *, position_margin: float
) -> Resolution:
    """'<np> <relation> the <np>': targets in `pool` clearly on that side of the anchor.

    The anchor phrase must match exactly one object; otherwise every target that could be meant is a tie.
    """
    width = 2 if tail[:1] in (["left"], ["right"]) else 1
    relation = " ".join(tail[:width])
    if relation not in RELATIONS or tail[width:width + 1] != ["the"]:
        raise ValueError(f"expected '<relation> the <noun phrase>' after the noun phrase in {text!r}")
    anchor_phrase, end = _parse_np(tail, width + 1, text)
    if end != len(tail):
        raise ValueError(f"unexpected words {' '.join(tail[end:])!r} in {text!r}")
    anchors = [o for o in objects if anchor_phrase.matches(o)]
    axis, sign = RELATIONS[relation]
    clear: set[int] = set()
    tied: set[int] = set()
    for anchor in anchors:
        for obj in pool:
            if obj.id == anchor.id:
                continue
            offset = sign * (obj.center[axis] - anchor.center[axis])  # < 0: on the named side
            if offset < -position_margin:
                clear.add(obj.id)
            elif offset <= position_margin:
                tied.add(obj.id)
    if len(anchors) != 1:
        return Resolution((), tuple(sorted(clear | tied)))
    return Resolution(tuple(sorted(clear)), tuple(sorted(tied)))


def _pick(ids: np.ndarray, close: np.ndarray) -> Resolution:
    chosen = tuple(int(v) for v in ids[close])
    return Resolution(chosen, ()) if len(chosen) == 1 else Resolution((), chosen)


class GeneratedExpression(NamedTuple):
    """An expression and its form ("attributes", "extreme", "ordinal", "superlative" or "relation")."""

    text: str
    form: str


def default_position_margin(height: int, width: int) -> float:
    """Position tie tolerance used by the world: 4 % of the short image side."""
    return 0.04 * min(height, width)


def _phrases(target: SceneObject, *, max_adjectives: int = 3) -> list[NounPhrase]:
    """Every phrase that describes the target, fewest adjectives first (kind noun before "object")."""
    out = []
    adjectives = ("colour", "size", "texture")
    for count in range(max_adjectives + 1):
        for chosen in itertools.combinations(adjectives, count):
            values = {name: getattr(target, name) if name in chosen else None for name in adjectives}
            out.append(NounPhrase(target.kind, **values))
            if count:
                out.append(NounPhrase(None, **values))
    return out


def _candidates(form: str, target: SceneObject, objects: Sequence[SceneObject], margin: float,
                size_ratio: float) -> list[str]:
    """Texts of one form that describe `target` (not yet checked for uniqueness)."""
    basic = [NounPhrase(target.kind), NounPhrase(target.kind, colour=target.colour),
             NounPhrase(None, colour=target.colour), NounPhrase(None)]
    match form:
        case "attributes":
            return [f"the {p.text()}" for p in _phrases(target)]
        case "extreme":
            return [f"the {word} {p.text()}" for p in basic for word in EXTREMES]
        case "superlative":
            return [f"the {word} {p.text()}" for p in basic for word in SUPERLATIVES]
        case "ordinal":
            texts = []
            for p in basic:
                pool = [o for o in objects if p.matches(o)]
                for direction, (axis, sign) in DIRECTIONS.items():
                    rank = sorted(sign * o.center[axis] for o in pool).index(sign * target.center[axis])
                    if 1 <= rank < len(ORDINALS):
                        texts.append(f"the {ORDINALS[rank]} {p.text()} from the {direction}")
            return texts
        case "relation":
            texts = []
            for anchor in objects:
                if anchor.id == target.id:
                    continue
                anchor_text = next((p.text() for p in _phrases(anchor, max_adjectives=2)
                                    if resolve_expression(f"the {p.text()}", objects, position_margin=margin,
                                                          size_ratio=size_ratio).unique == anchor.id), None)
                if anchor_text is None:
                    continue
                for p in basic[:2]:
                    texts.extend(f"the {p.text()} {relation} the {anchor_text}" for relation in RELATIONS)
            return texts
    raise ValueError(f"unknown expression form {form!r}")


def describe_object(
    target: SceneObject, objects: Sequence[SceneObject], *, rng: np.random.Generator, position_margin: float,
    size_ratio: float = 1.15, max_expressions: int = 3, spatial: bool = True,
) -> list[GeneratedExpression]:
    """Up to `max_expressions` expressions of different forms that each resolve to `target` alone.

    The attribute form uses the shortest unique description; the other forms pick a random unique candidate.
    With `spatial` False (videos, where positions change) only the attribute form is used.

    Args:
        target: the object to describe (must be in `objects`).
        objects: every object of the scene.
        rng: picks forms and candidates.
        position_margin, size_ratio: tie tolerances, as in `resolve_expression`.
    """
    forms = ["attributes", "extreme", "ordinal", "superlative", "relation"] if spatial else ["attributes"]
    order = [forms[k] for k in rng.permutation(len(forms))]
    out: list[GeneratedExpression] = []
    for form in order:
        if len(out) >= max_expressions:
            break
        texts = _candidates(form, target, objects, position_margin, size_ratio)
        if form != "attributes":
            texts = [texts[k] for k in rng.permutation(len(texts))]
        for text in texts:
            if resolve_expression(text, objects, position_margin=position_margin,
                                  size_ratio=size_ratio).unique == target.id:
                out.append(GeneratedExpression(text, form))
                break
    return out


def generate_expressions(
    objects: Sequence[SceneObject], *, rng: np.random.Generator, position_margin: float, size_ratio: float = 1.15,
    max_expressions: int = 3, spatial: bool = True,
) -> dict[int, list[GeneratedExpression]]:
    """Expressions for every object that has at least one (object id → expressions)."""
    out = {}
    for target in objects:
        found = describe_object(target, objects, rng=rng, position_margin=position_margin, size_ratio=size_ratio,
                                max_expressions=max_expressions, spatial=spatial)
        if found:
            out[target.id] = found
    return out
