"""What each training sample is prompted with (reference §2.1, §8.3).

* Category prompts: every positive class of the image is kept (dropped only when the positives alone overflow the
  token budget, and then with their instances), plus negatives: with p = 0.5 all N = min(85, #classes + 1) draws,
  else a uniform number 1..N of draws, from every class index including "background"; draws that hit a positive
  are discarded; negatives that would overflow the budget are skipped; positives and negatives are shuffled.
  The token check is a callable `fits(names) -> bool`; `caption_fits` makes one from a tokenizer with
  `uninext_core.prompts.build_category_caption`.
* Expression prompts: one sentence of the object, lower-cased with punctuation removed.
* Template prompts (SOT/VOS): one instance present in every frame of the clip; its box and mask on the
  reference frame make the template, and the other frames keep only that instance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from uninext_core.data.records import Category
from uninext_core.data.targets import Target
from uninext_core.prompts import CategoryCaption, build_category_caption, clean_expression

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

BACKGROUND_ID = -1
BACKGROUND_NAME = "background"
MAX_NEGATIVES = 85


class CategoryPromptSample(NamedTuple):
    """The class list of one training sample.

    Attributes:
        names: class names in caption order (shuffled).
        category_ids: aligned with `names`; BACKGROUND_ID for the "background" negative.
        positive_ids: positive category ids kept in the prompt.
        dropped_ids: positive category ids left out for the token budget (their instances must be removed).
    """

    names: tuple[str, ...]
    category_ids: tuple[int, ...]
    positive_ids: tuple[int, ...]
    dropped_ids: tuple[int, ...]

    def prompt_labels(self, category_ids: np.ndarray) -> np.ndarray:
        """(N,) int64 index into `names` of each instance's category, -1 where it is not in the prompt."""
        index = {c: k for k, c in enumerate(self.category_ids)}
        return np.array([index.get(int(c), -1) for c in category_ids], dtype=np.int64)


def caption_fits(tokenizer: PreTrainedTokenizerBase, *, max_tokens: int = 256) -> Callable[[Sequence[str]], bool]:
    """A `fits(names)` check: True when the names make a caption within `max_tokens` (incl. [CLS]/[SEP])."""

    def fits(names: Sequence[str]) -> bool:
        try:
            build_category_caption(list(names), tokenizer, max_tokens=max_tokens)
        except ValueError:
            return False
        return True

    return fits


def sample_negative_count(rng: np.random.Generator, num_classes: int, *, max_negatives: int = MAX_NEGATIVES) -> int:
    """Number of negative draws: N = min(max_negatives, num_classes + 1) with p = 0.5, else uniform in 1..N."""
    n = min(max_negatives, num_classes + 1)
    return n if rng.random() < 0.5 else int(rng.integers(1, n + 1))


def sample_category_prompt(
    *, positive_ids: Sequence[int], categories: Sequence[Category], rng: np.random.Generator,
    fits: Callable[[Sequence[str]], bool], max_negatives: int = MAX_NEGATIVES,
) -> CategoryPromptSample:
    """Positives plus sampled negatives, shuffled, within the token budget `fits` checks.

    Args:
        positive_ids: category ids of the image's instances (repeats allowed).
        categories: the dataset's categories (names are used as given; the caption builder cleans them).
        rng: random stream.
        fits: True when a list of names fits the token budget.
        max_negatives: cap on negative draws (official 85).

    Raises:
        ValueError: an empty category list, a positive id that is not among the categories, or no name fitting
            the budget at all.
    """
    if not categories:
        raise ValueError("empty category list: a category prompt needs at least one category")
    by_id = {c.id: c.name for c in categories}
    positives = list(dict.fromkeys(int(c) for c in positive_ids))
    unknown = [c for c in positives if c not in by_id]
    if unknown:
        raise ValueError(f"positive category ids {unknown} are not among the {len(by_id)} categories")
    dropped: list[int] = []
    drop_order = [positives[k] for k in rng.permutation(len(positives))]
    while positives and not fits([by_id[c] for c in positives]):
        victim = drop_order.pop()
        positives.remove(victim)
        dropped.append(victim)
    vocabulary = [BACKGROUND_ID, *by_id]  # index 0 plays the official "__background__" entry
    count = sample_negative_count(rng, len(categories), max_negatives=max_negatives)
    draws = rng.choice(len(vocabulary), size=min(count, len(vocabulary)), replace=False)
    chosen_ids = list(positives)
    names = [by_id[c] for c in positives]
    for draw in draws:
        cat_id = vocabulary[int(draw)]
        if cat_id in chosen_ids:
            continue  # a draw that hits a positive (or repeats) is discarded
        name = BACKGROUND_NAME if cat_id == BACKGROUND_ID else by_id[cat_id]
        if fits([*names, name]):
            chosen_ids.append(cat_id)
            names.append(name)
    if not chosen_ids:
        raise ValueError(f"no category name fits the token budget (tried {len(draws)} negatives after dropping "
                         f"positives {dropped})")
    perm = rng.permutation(len(chosen_ids))
    return CategoryPromptSample(tuple(names[k] for k in perm), tuple(chosen_ids[k] for k in perm),
                                tuple(positives), tuple(dropped))


def build_training_caption(sample: CategoryPromptSample, tokenizer: PreTrainedTokenizerBase, *,
                           max_tokens: int = 256) -> CategoryCaption:
    """The sample's names tokenised as one caption (token spans per name, in `sample.names` order)."""
    return build_category_caption(list(sample.names), tokenizer, max_tokens=max_tokens)


def positive_map(caption: CategoryCaption, prompt_labels: np.ndarray) -> np.ndarray:
    """(N, T) float32 binary token mask of each instance's class name (reference §2.1 `positive_map`).

    Args:
        caption: the sample's caption.
        prompt_labels: (N,) index into the caption's names (from `CategoryPromptSample.prompt_labels`), all ≥ 0.
    """
    if np.any(prompt_labels < 0) or np.any(prompt_labels >= len(caption.names)):
        raise ValueError(f"prompt labels must index the {len(caption.names)} caption names, got {prompt_labels}")
    out = np.zeros((len(prompt_labels), caption.max_tokens), dtype=np.float32)
    for row, label in enumerate(prompt_labels):
        out[row, list(caption.token_spans[int(label)])] = 1.0
    return out


def apply_category_prompt(target: Target, sample: CategoryPromptSample) -> tuple[Target, np.ndarray]:
    """Drop instances whose class left the prompt; return them with their (N,) prompt label indices."""
    labels = sample.prompt_labels(target.labels)
    keep = labels >= 0
    return target.select(keep), labels[keep]


def sample_expression(sentences: Sequence[str], rng: np.random.Generator) -> str:
    """One sentence, lower-cased with punctuation removed (`prompts.clean_expression`)."""
    if not sentences:
        raise ValueError("no sentences to sample an expression from")
    return clean_expression(sentences[int(rng.integers(len(sentences)))])


class TemplateSample(NamedTuple):
    """The template of a SOT/VOS sample.

    Attributes:
        reference_frame: index in the clip of the frame the template is cut from.
        instance_id: the followed instance.
        box_xyxy_px: (4,) float32 box on the reference frame.
        mask: (H, W) bool mask on the reference frame, or None for box-only data.
    """

    reference_frame: int
    instance_id: int
    box_xyxy_px: np.ndarray
    mask: np.ndarray | None


def sample_template(targets: Sequence[Target], *, rng: np.random.Generator,
                    reference_frame: int = 0) -> TemplateSample | None:
    """Pick one instance present in every frame of the clip; None when there is none."""
    common = set(targets[0].ids.tolist())
    for target in targets[1:]:
        common &= set(target.ids.tolist())
    if not common:
        return None
    instance_id = int(rng.choice(sorted(common)))
    ref = targets[reference_frame]
    row = int(np.flatnonzero(ref.ids == instance_id)[0])
    mask = None if ref.masks is None else ref.masks[row].copy()
    return TemplateSample(reference_frame, instance_id, ref.boxes_xyxy_px[row].copy(), mask)


def keep_instance(targets: Sequence[Target], instance_id: int) -> list[Target]:
    """Each frame's target reduced to the one followed instance (SOT losses use only it)."""
    return [t.select(t.ids == instance_id) for t in targets]
