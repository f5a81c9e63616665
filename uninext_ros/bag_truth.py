"""Ground truth for a bag's frames: from annotation files in a format training reads, or from a reference bag.

Annotations (`--gt`): the dataset is resolved as uninext-eval resolves `--data`; bag frame k is frame k of the chosen
sequence (`--gt-sequence`, needed when the dataset has several), or image k of a still-image dataset (COCO, its
images in file order), and the counts must agree. Expressions are matched to the dataset's referrals of that sequence
(after the same cleaning the model applies), which gives the referred instance.

Reference bag (`--reference-bag`): the instance arrays of a topic, matched to frames by header stamp; for expression
tasks the top-scoring instance is the referent; frames without an array have no ground truth objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from uninext_core.data.records import Category
from uninext_core.eval.datasets import open_data, resolve_data
from uninext_core.eval.truth import FrameTruth, truth_from_instances, truth_from_target
from uninext_core.eval.units import MASK_TASKS, unit_names
from uninext_core.instances import Instances
from uninext_core.prompts import clean_category_name, clean_expression
from uninext_ros.bag_io import FrameHeader, instance_arrays, open_bag
from uninext_ros.conversions import msg_to_instances, stamp_to_ns

EXPRESSION_TASKS = ("rec", "res", "rvos")


@dataclass
class BagTruth:
    """Ground truth of every bag frame (None: frames whose truth comes from the reference bag, filled later).

    Attributes:
        truths: one FrameTruth per bag frame, or None until `fill_reference` runs.
        categories: dataset categories (annotations); empty for a reference bag (prompt class k is id k + 1).
        referrals: cleaned expression -> referred instance id (annotations).
        source: what it was read from, for the report.
        reference: stamp -> Instances of a reference bag.
    """

    truths: list[FrameTruth | None]
    categories: list[Category]
    referrals: dict[str, int]
    source: str
    reference: dict[int, Instances] = field(default_factory=dict)

    def category_list(self, names: Sequence[str]) -> list[Category]:
        """Categories of prompt classes `names` in prompt order (dataset ids by cleaned name, else k + 1).

        Raises:
            ValueError: a class the dataset does not have.
        """
        if not self.categories:
            return [Category(k + 1, name) for k, name in enumerate(names)]
        by_name = {clean_category_name(c.name): c for c in self.categories}
        missing = [n for n in names if clean_category_name(n) not in by_name]
        if missing:
            raise ValueError(f"prompt classes {missing} are not categories of {self.source} "
                             f"({[c.name for c in self.categories]})")
        return [by_name[clean_category_name(n)] for n in names]

    def referent(self, expression: str, *, source: str) -> int:
        """The instance an expression refers to (annotations), or 1 (reference bag: its top instance)."""
        if self.reference:
            return 1
        key = clean_expression(expression)
        if key not in self.referrals:
            raise ValueError(f"{source}: expression {expression!r} matches no referring expression of {self.source}")
        return self.referrals[key]


def truth_from_annotations(data: str | Path, *, task: str, frames: Sequence[FrameHeader], sequence: str = "",
                           reader: str | None = None, image_root: str | None = None, refs: str | None = None,
                           expressions: str | None = None, categories: tuple[str, ...] = (),
                           split: str = "") -> BagTruth:
    """Ground truth of the bag frames from a dataset (see the module docstring).

    Raises:
        ValueError: the dataset problems uninext-eval reports, an unknown or ambiguous sequence, or a frame count
            that differs from the bag's.
    """
    selection = resolve_data(data, task=task, reader=reader, image_root=image_root, refs=refs,
                             expressions=expressions, categories=categories, split=split)
    store = open_data(selection)
    names = unit_names(store)
    with_masks = task in MASK_TASKS
    if store.detection is not None:
        if sequence:
            raise ValueError(f"{selection.path} holds still images; --gt-sequence does not apply (bag frame k is "
                             f"image k)")
        if len(store) != len(frames):
            raise ValueError(f"{selection.path} has {len(store)} images but the bag has {len(frames)} frames")
        positions = [(k, 0) for k in range(len(store))]
        label = str(selection.path)
    else:
        if sequence:
            if sequence not in names:
                raise ValueError(f"sequence {sequence!r} is not in {selection.path}; sequences: {names[:20]}")
            unit = names.index(sequence)
        elif len(names) == 1:
            unit = 0
        else:
            raise ValueError(f"{selection.path} holds {len(names)} sequences; choose one with --gt-sequence "
                             f"(e.g. {names[:5]})")
        if store.num_frames[unit] != len(frames):
            raise ValueError(f"sequence {names[unit]} of {selection.path} has {store.num_frames[unit]} annotated "
                             f"frames but the bag has {len(frames)}")
        positions = [(unit, k) for k in range(len(frames))]
        label = f"{selection.path} sequence {names[unit]}"
    truths: list[FrameTruth | None] = []
    for unit_index, position in positions:
        image, target = store.load(unit_index, position, with_masks=with_masks)
        truths.append(truth_from_target(target, image_size=image.shape[:2]))
    referrals = {clean_expression(sentence): r.instance_id for r in store.referrals
                 if r.unit == positions[0][0] for sentence in r.sentences}
    return BagTruth(truths, list(store.categories), referrals, label)


def truth_from_reference_bag(path: str | Path, *, topic: str, frames: Sequence[FrameHeader]) -> BagTruth:
    """The instance arrays of a reference bag's topic, keyed by stamp (truths filled by `fill_reference`).

    Raises:
        BagError: a missing or damaged bag, a missing topic or one of another type.
    """
    bag = Path(path)
    reader = open_bag(bag)
    try:
        arrays = {stamp_to_ns(msg.header.stamp): msg_to_instances(msg) for _, msg in instance_arrays(reader, bag,
                                                                                                     topic)}
    finally:
        reader.close()
    matched = sum(1 for f in frames if f.stamp_ns in arrays)
    if matched == 0:
        raise ValueError(f"reference bag {bag}, topic {topic}: no instance array carries the stamp of a frame of the "
                         f"evaluated bag")
    return BagTruth([None] * len(frames), [], {}, f"{bag} {topic}", reference=arrays)


def fill_reference(truth: BagTruth, *, stamps_ns: Sequence[int], image_sizes: Sequence[tuple[int, int]],
                   task: str) -> None:
    """Make the FrameTruth of every frame from the reference arrays (expression tasks: the top instance, id 1)."""
    for k, (stamp, size) in enumerate(zip(stamps_ns, image_sizes, strict=True)):
        instances = truth.reference.get(int(stamp))
        if instances is None or len(instances) == 0:
            masks = np.zeros((0, *size), bool) if task in MASK_TASKS else None
            truth.truths[k] = FrameTruth(size, np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, np.int64), masks)
            continue
        frame_truth = truth_from_instances(instances)
        if task in EXPRESSION_TASKS:
            best = int(np.argmax(instances.scores))
            frame_truth = FrameTruth(frame_truth.image_size, np.array([1], np.int64),
                                     frame_truth.boxes_xyxy_px[best:best + 1], frame_truth.category_ids[best:best + 1],
                                     None if frame_truth.masks is None else frame_truth.masks[best:best + 1])
        truth.truths[k] = frame_truth
