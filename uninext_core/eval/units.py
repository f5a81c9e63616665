"""What is evaluated, sample by sample, and with which prompt: the test-time protocol of reference §7.

An `EvalUnit` is a run of frames the session sees between two resets, with the prompt taken from the annotations:

| task                          | unit                                   | prompt                                      |
|-------------------------------|----------------------------------------|---------------------------------------------|
| detection, instance_seg.      | an image (coco) or a video's frames    | every category name of the dataset          |
| rec, res                      | an image and one expression            | the expression (every expression of every   |
|                               |                                        | referred object: RefCOCO's protocol)        |
| rvos                          | a video and one expression of a track  | the expression, every frame (no tracking)   |
| sot                           | a sequence (lasot, got10k) or a track  | template: the target's box on its first     |
|                               | (cocovid, ytvis) from its first frame  | visible frame                               |
| vos                           | a sequence from its first object frame | template: box + mask of every object there  |
| mot, mots, vis                | a video                                | every category name of the dataset          |

Template prompts refer to the unit's first frame, which the session buffers before the prompt is set (as a robot
would: the frame is seen, then a target is drawn on it). VOS objects that appear after that frame get no template
and are scored as missed (the Session restarts tracks on a new prompt, so it cannot add objects mid-stream).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from uninext_core.eval.truth import FrameTruth, truth_from_target
from uninext_core.prompts import CategoryPrompt, ExpressionPrompt, TemplatePrompt, TemplateTarget
from uninext_core.train.frame_stores import FrameStore

MASK_TASKS: tuple[str, ...] = ("instance_segmentation", "res", "rvos", "vos", "mots", "vis")
TEMPLATE_TASKS: tuple[str, ...] = ("sot", "vos")


@dataclass(frozen=True)
class EvalUnit:
    """One evaluated sample.

    Attributes:
        name: readable name (image file, video, sequence, "<video>/<track>: <expression>").
        store_unit: unit index in the FrameStore (image, video or sequence).
        frames: frame positions within that unit, in temporal order (at least one).
        task: the session task.
        prompt: category or expression prompt set before the first frame; None for template tasks (the template
            is drawn from the first frame's ground truth, `template_prompt`).
        referent_ids: rec/res/rvos: the referred instance; sot: the target; vos: the objects on the first frame;
            empty for category tasks.
    """

    name: str
    store_unit: int
    frames: tuple[int, ...]
    task: str
    prompt: CategoryPrompt | ExpressionPrompt | None
    referent_ids: tuple[int, ...] = ()


def category_prompt(store: FrameStore) -> CategoryPrompt:
    """Every category name of the dataset, in dataset order (prompt class index k = store.categories[k])."""
    return CategoryPrompt(tuple(c.name for c in store.categories))


def load_frame(store: FrameStore, unit: EvalUnit, position: int) -> tuple[np.ndarray, FrameTruth]:
    """((H, W, 3) uint8 RGB frame, its FrameTruth) of frame position `position` of the unit's store unit."""
    image, target = store.load(unit.store_unit, position, with_masks=unit.task in MASK_TASKS)
    return image, truth_from_target(target, image_size=image.shape[:2])


def template_prompt(truth: FrameTruth, *, task: str, referent_ids: tuple[int, ...], stamp_ns: int,
                    labels: dict[int, str] | None = None) -> TemplatePrompt:
    """SOT: the target's box; VOS: box and mask of every referent present on the frame stamped `stamp_ns`.

    Raises:
        ValueError: no referent is present on that frame.
    """
    targets = []
    for object_id in referent_ids:
        row = truth.index_of(object_id)
        if row is None:
            continue
        box = tuple(float(v) for v in truth.boxes_xyxy_px[row])
        mask = truth.masks[row] if task == "vos" and truth.masks is not None else None
        if mask is not None and not mask.any():
            mask = None
        targets.append(TemplateTarget(object_id=int(object_id), box_xyxy=box, mask=mask,  # type: ignore[arg-type]
                                      label=(labels or {}).get(int(object_id), f"object {object_id}")))
    if not targets:
        raise ValueError(f"none of the objects {list(referent_ids)} is annotated on the template frame")
    return TemplatePrompt(tuple(targets), frame_stamp_ns=int(stamp_ns))


def unit_names(store: FrameStore) -> list[str]:
    """Name of every store unit: image file name, video or sequence name."""
    if store.detection is not None:
        return [r.file_name for r in store.detection.images]
    if store.video is not None:
        return [v.name for v in store.video.videos]
    if store.mot:
        return [s.name for s in store.mot]
    if store.sot:
        return [s.name for s in store.sot]
    return [s.name for s in store.vos]


def _sot_units(store: FrameStore) -> list[EvalUnit]:
    units = []
    if store.sot:
        for k, seq in enumerate(store.sot):
            visible = np.flatnonzero(seq.visible)
            if visible.size:
                units.append(EvalUnit(seq.name, k, tuple(range(int(visible[0]), len(seq.frame_paths))), "sot",
                                      None, (1,)))
        return units
    if store.video is None:
        raise ValueError(f"SOT evaluation needs sequences (lasot, got10k) or videos (cocovid, ytvis); "
                         f"{store.source} holds still images")
    for k, video in enumerate(store.video.videos):
        for track in video.tracks:
            present = [t for t, box in enumerate(track.boxes_xyxy_px) if box is not None]
            if present:
                units.append(EvalUnit(f"{video.name}/{track.id}", k, tuple(range(present[0], len(video.file_names))),
                                      "sot", None, (track.id,)))
    return units


def _vos_units(store: FrameStore) -> list[EvalUnit]:
    units = []
    for k, seq in enumerate(store.vos):
        annotated = sorted(seq.mask_paths)
        if not seq.first_frames:
            continue
        start_frame = min(seq.first_frames.values())
        start = int(np.searchsorted(annotated, start_frame))
        first_objects = tuple(sorted(o for o, f in seq.first_frames.items() if f == start_frame))
        units.append(EvalUnit(seq.name, k, tuple(range(start, len(annotated))), "vos", None, first_objects))
    return units


def build_units(store: FrameStore, *, task: str, limit: int | None = None) -> list[EvalUnit]:
    """The units of `store` for `task` (see the module table), the first `limit` of them when given.

    Raises:
        ValueError: a dataset without what the task needs (expressions, sequences), or no unit at all.
    """
    names = unit_names(store)
    match task:
        case "detection" | "instance_segmentation" | "mot" | "mots" | "vis":
            prompt = category_prompt(store)
            units = [EvalUnit(names[k], k, tuple(range(store.num_frames[k])), task, prompt)
                     for k in range(len(store)) if store.num_frames[k] > 0]
        case "rec" | "res" | "rvos":
            if not store.referrals:
                raise ValueError(f"task {task} needs referring expressions; {store.source} has none")
            units = [EvalUnit(f"{names[r.unit]}/{r.instance_id}: {sentence}", r.unit,
                              tuple(range(store.num_frames[r.unit])), task, ExpressionPrompt(sentence),
                              (r.instance_id,))
                     for r in store.referrals for sentence in r.sentences]
        case "sot":
            units = _sot_units(store)
        case "vos":
            units = _vos_units(store)
        case _:
            raise ValueError(f"unknown task {task!r}")
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        units = units[:limit]
    if not units:
        raise ValueError(f"{store.source}: nothing to evaluate for task {task} (no image, sequence or expression)")
    return units
