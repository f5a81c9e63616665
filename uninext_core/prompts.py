"""The three prompt kinds of UNINEXT and the category caption built from a class list (reference §2).

* `CategoryPrompt` — a list of class names (detection, instance segmentation, MOT, VIS). The names are cleaned and
  joined with ". " into one caption; each class is scored by the mean of its word-piece token logits.
* `ExpressionPrompt` — one referring expression (REC, RES, R-VOS), lower-cased with punctuation removed.
* `TemplatePrompt` — targets given by a box and/or mask on one frame (SOT, VOS); encoded from a 4-channel crop.

Validation happens at construction (`__post_init__`) and raises ValueError with the reason, so a node can answer a
prompt service with the message. Nothing here imports ROS.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CAPTION_SEPARATOR = ". "
_PARENTHESES = re.compile(r"\([^)]*\)")
_WHITESPACE = re.compile(r"\s+")
_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def clean_category_name(name: str) -> str:
    """Category name as it appears in the caption: "(...)" removed, "_" -> " ", whitespace collapsed, lower-case.

    Example: "Traffic_Light (signal)" -> "traffic light".
    """
    if not isinstance(name, str):
        raise TypeError(f"category name must be a str, got {type(name).__name__}: {name!r}")
    name = _PARENTHESES.sub(" ", name).replace("_", " ")
    return _WHITESPACE.sub(" ", name).strip().lower()


def clean_expression(text: str) -> str:
    """Referring expression as encoded: lower-case, punctuation removed, whitespace collapsed.

    Example: "The man, on the LEFT!" -> "the man on the left".
    """
    if not isinstance(text, str):
        raise TypeError(f"expression must be a str, got {type(text).__name__}: {text!r}")
    return _WHITESPACE.sub(" ", _PUNCTUATION.sub("", text.lower())).strip()


def _clean_names(names: Sequence[str]) -> tuple[str, ...]:
    """Cleaned names; ValueError for an empty list, a name empty after cleaning, or duplicates after cleaning."""
    if isinstance(names, str):
        raise ValueError(f"expected a sequence of category names, got the single string {names!r}")
    names = tuple(names)
    if not names:
        raise ValueError("category prompt is empty: expected at least one class name")
    cleaned = tuple(clean_category_name(n) for n in names)
    seen: dict[str, str] = {}
    for raw, clean in zip(names, cleaned, strict=True):
        if not clean:
            raise ValueError(f"category name {raw!r} is empty after cleaning")
        if clean in seen:
            raise ValueError(f"duplicate category name {raw!r} (same as {seen[clean]!r} after cleaning to {clean!r})")
        seen[clean] = raw
    return cleaned


@dataclass(frozen=True)
class CategoryPrompt:
    """Class names to detect; order defines the label index. `names` keeps the given spelling."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.names, str):
            raise ValueError(f"names must be a sequence of class names, got the single string {self.names!r}")
        object.__setattr__(self, "names", tuple(self.names))
        _clean_names(self.names)

    @property
    def caption_names(self) -> tuple[str, ...]:
        """Names as they appear in the caption (`clean_category_name`)."""
        return tuple(clean_category_name(n) for n in self.names)


@dataclass(frozen=True)
class ExpressionPrompt:
    """One referring expression."""

    text: str

    def __post_init__(self) -> None:
        if not clean_expression(self.text):
            raise ValueError(f"expression {self.text!r} is empty after removing punctuation and whitespace")

    @property
    def cleaned(self) -> str:
        """The text as encoded (`clean_expression`)."""
        return clean_expression(self.text)


# eq=False: the fields hold numpy arrays, whose == is element-wise; identity equality and hashing are used instead.
@dataclass(frozen=True, eq=False)
class TemplateTarget:
    """One target to follow, given on the prompt frame.

    Attributes:
        object_id: id reported for this target (unique within a TemplatePrompt), >= 0.
        box_xyxy: (x_min, y_min, x_max, y_max) in pixels of the prompt frame, or None to derive it from the mask.
        mask: (H, W) bool mask on the prompt frame, or None (the crop's 4th channel is then the box).
        label: free text carried to the output.
    """

    object_id: int
    box_xyxy: tuple[float, float, float, float] | None
    mask: np.ndarray | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.object_id, bool) or not isinstance(self.object_id, int | np.integer) or self.object_id < 0:
            raise ValueError(f"object_id must be a non-negative int, got {self.object_id!r}")
        object.__setattr__(self, "object_id", int(self.object_id))
        if self.box_xyxy is None and self.mask is None:
            raise ValueError(f"target {self.object_id}: needs a box, a mask or both, got neither")
        if self.box_xyxy is not None:
            box = tuple(float(v) for v in self.box_xyxy)
            if len(box) != 4 or not all(math.isfinite(v) for v in box):
                raise ValueError(f"target {self.object_id}: box_xyxy must be 4 finite numbers, got {self.box_xyxy!r}")
            if box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"target {self.object_id}: box_xyxy {box} needs x_max > x_min and y_max > y_min")
            object.__setattr__(self, "box_xyxy", box)
        if self.mask is not None:
            if not isinstance(self.mask, np.ndarray) or self.mask.ndim != 2 or self.mask.dtype != np.bool_:
                got = (f"{self.mask.dtype} array of shape {self.mask.shape}" if isinstance(self.mask, np.ndarray)
                       else type(self.mask).__name__)
                raise ValueError(f"target {self.object_id}: mask must be a 2-D bool array (H, W), got {got}")
            if not self.mask.any():
                raise ValueError(f"target {self.object_id}: mask of shape {self.mask.shape} has no foreground pixel")
        if not isinstance(self.label, str):
            raise ValueError(f"target {self.object_id}: label must be a str, got {self.label!r}")

    def resolved_box_xyxy(self) -> tuple[float, float, float, float]:
        """The given box, or the mask's tight box (x_min, y_min, x_max + 1, y_max + 1) in pixels."""
        if self.box_xyxy is not None:
            return self.box_xyxy
        assert self.mask is not None  # guaranteed by __post_init__
        ys, xs = np.nonzero(self.mask)
        return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


@dataclass(frozen=True, eq=False)
class TemplatePrompt:
    """Targets to follow from the frame stamped `frame_stamp_ns` on (SOT: one target, VOS: one or more).

    Attributes:
        targets: at least one TemplateTarget, unique object ids.
        frame_stamp_ns: stamp of the frame the boxes/masks refer to, >= 0.
        image: optional (H, W, 3) uint8 RGB prompt frame; when given, masks must have its (H, W).
    """

    targets: tuple[TemplateTarget, ...]
    frame_stamp_ns: int
    image: np.ndarray | None = None

    def __post_init__(self) -> None:
        targets = tuple(self.targets)
        object.__setattr__(self, "targets", targets)
        if not targets:
            raise ValueError("template prompt has no target: expected at least one TemplateTarget")
        for target in targets:
            if not isinstance(target, TemplateTarget):
                raise ValueError(f"template prompt targets must be TemplateTarget, got {type(target).__name__}")
        ids = [t.object_id for t in targets]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"template prompt has duplicate object ids {duplicates}")
        if (isinstance(self.frame_stamp_ns, bool) or not isinstance(self.frame_stamp_ns, int | np.integer)
                or self.frame_stamp_ns < 0):
            raise ValueError(f"frame_stamp_ns must be a non-negative int, got {self.frame_stamp_ns!r}")
        mask_shapes = {t.mask.shape for t in targets if t.mask is not None}
        if self.image is not None:
            if (not isinstance(self.image, np.ndarray) or self.image.ndim != 3 or self.image.shape[2] != 3
                    or self.image.dtype != np.uint8):
                got = (f"{self.image.dtype} array of shape {self.image.shape}" if isinstance(self.image, np.ndarray)
                       else type(self.image).__name__)
                raise ValueError(f"template prompt image must be an (H, W, 3) uint8 array, got {got}")
            wrong = sorted(s for s in mask_shapes if s != self.image.shape[:2])
            if wrong:
                raise ValueError(f"target masks of shape {wrong} do not match the image size {self.image.shape[:2]}")
        elif len(mask_shapes) > 1:
            raise ValueError(f"target masks have different shapes {sorted(mask_shapes)}; expected one frame size")


@dataclass(frozen=True, eq=False)
class CategoryCaption:
    """A category list as one tokenised caption, with the word-piece positions of every class.

    Attributes:
        caption: cleaned names joined by ". " (e.g. "person. bicycle").
        names: the cleaned names, in label order (C of them).
        input_ids: (1, max_tokens) int64 token ids, padded.
        attention_mask: (1, max_tokens) int64, 1 for [CLS] caption [SEP].
        token_spans: per class, the token positions of its name (e.g. ((1,), (3,)) for "person. bicycle").
    """

    caption: str
    names: tuple[str, ...]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_spans: tuple[tuple[int, ...], ...]

    @property
    def max_tokens(self) -> int:
        """Padded caption length T."""
        return int(self.input_ids.shape[1])

    def class_token_matrix(self) -> torch.Tensor:
        """(C, max_tokens) float32 averaging matrix: row c holds 1/len(span_c) on the tokens of class c.

        Class logits = token_logits (Q, T) @ matrix.T (reference §2.1 and §11.1: mean of the class's token logits).
        """
        matrix = torch.zeros(len(self.names), self.max_tokens, dtype=torch.float32)
        for c, span in enumerate(self.token_spans):
            matrix[c, list(span)] = 1.0 / len(span)
        return matrix


def build_category_caption(names: Sequence[str], tokenizer: PreTrainedTokenizerBase, *,
                           max_tokens: int = 256) -> CategoryCaption:
    """Tokenise a class list as one caption and locate each class's word pieces.

    Args:
        names: class names in label order (raw; cleaned here with `clean_category_name`).
        tokenizer: a fast (offset-mapping) BERT tokenizer, e.g. `TextEncoder.tokenizer`.
        max_tokens: padded length, [CLS] and [SEP] included (official 256).

    Raises:
        ValueError: invalid names (see CategoryPrompt), a slow tokenizer, or a caption longer than max_tokens
            (the message names the first class that does not fit).
    """
    cleaned = _clean_names(names)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"build_category_caption needs a fast tokenizer (offset mapping), "
                         f"got {type(tokenizer).__name__}")
    char_spans = []
    caption = ""
    for index, name in enumerate(cleaned):
        if index:
            caption += CAPTION_SEPARATOR
        char_spans.append((len(caption), len(caption) + len(name)))
        caption += name
    encoded = tokenizer(caption, return_offsets_mapping=True, add_special_tokens=True)
    offsets = encoded["offset_mapping"]
    special = set(tokenizer.all_special_ids)
    token_spans = []
    for name, (start, end) in zip(cleaned, char_spans, strict=True):
        span = tuple(i for i, (tok_start, tok_end) in enumerate(offsets)
                     if encoded["input_ids"][i] not in special and tok_start < end and tok_end > start)
        if not span:
            raise ValueError(f"category name {name!r} produced no token")
        if span[-1] >= max_tokens - 1:  # the last position is kept for [SEP]
            raise ValueError(f"category caption exceeds max_tokens={max_tokens}: class {name!r} ends at token "
                             f"{span[-1]} (total {len(offsets)} tokens incl. [CLS]/[SEP]); use fewer or shorter names")
        token_spans.append(span)
    padded = tokenizer(caption, padding="max_length", max_length=max_tokens, truncation=True, return_tensors="pt")
    return CategoryCaption(caption=caption, names=cleaned, input_ids=padded["input_ids"].to(torch.int64),
                           attention_mask=padded["attention_mask"].to(torch.int64), token_spans=tuple(token_spans))
