"""One interface over every reader for training: units (images or videos), their frames and per-frame targets.

`open_store(spec)` reads a recipe dataset with its reader and returns a `FrameStore`:
    coco, refcoco       one unit per image (1 frame); refcoco also lists its referring expressions
    cocovid, ytvis      one unit per video; an R-VOS `expressions` file attaches expressions to tracks
    motchallenge        one unit per sequence folder under the root (class id k+1 = categories[k])
    lasot, got10k       one unit per sequence; the single target has id 1 and label 1 ("object")
    davis, youtube_vos  one unit per sequence, frames with a palette mask only; objects are the palette indices
Missing files raise ValueError naming the dataset and the path (the readers' DataFormatError is a ValueError too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from uninext_core.data.coco import read_coco_instances
from uninext_core.data.cocovid import read_cocovid
from uninext_core.data.image_io import read_image_rgb
from uninext_core.data.motchallenge import read_mot_sequence
from uninext_core.data.records import Category, DetectionDataset, MotSequence, SotSequence, VideoDataset, VosSequence
from uninext_core.data.refcoco import read_refcoco
from uninext_core.data.rvos import attach_expressions, read_rvos_expressions
from uninext_core.data.samples import load_image_sample, load_video_sample
from uninext_core.data.sot import list_sot_sequences, read_sot_sequence
from uninext_core.data.targets import Target, target_from_label_map, target_from_mot, target_from_sot
from uninext_core.data.vos import load_label_map, read_davis, read_youtube_vos
from uninext_core.data.ytvis import read_ytvis
from uninext_core.train.recipe import DatasetSpec

SOT_CATEGORY = Category(1, "object")


class Referral(NamedTuple):
    """A referring expression: `instance_id` of unit `unit` is the referent (annotation id or track id)."""

    unit: int
    instance_id: int
    sentences: tuple[str, ...]


@dataclass
class FrameStore:
    """Frames and targets of one dataset.

    Attributes:
        name: dataset name.
        source: annotation file or root (named in errors).
        categories: the dataset's categories.
        num_frames: frames per unit.
        landscape: (units,) bool, width >= height.
        referrals: referring expressions (refcoco, R-VOS), empty otherwise.
        has_masks: whether targets can carry masks.
        detection, video, mot, sot, vos: the records read (exactly one of them is set).
    """

    name: str
    source: Path
    categories: list[Category]
    num_frames: list[int]
    landscape: np.ndarray
    referrals: list[Referral] = field(default_factory=list)
    has_masks: bool = True
    detection: DetectionDataset | None = None
    video: VideoDataset | None = None
    mot: list[MotSequence] = field(default_factory=list)
    sot: list[SotSequence] = field(default_factory=list)
    vos: list[VosSequence] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.num_frames)

    def load(self, unit: int, frame: int, *, with_masks: bool) -> tuple[np.ndarray, Target]:
        """(H, W, 3) uint8 RGB frame and its Target (masks only when `with_masks` and available)."""
        with_masks = with_masks and self.has_masks
        if self.detection is not None:
            return load_image_sample(self.detection, unit, source=self.source, with_masks=with_masks)
        if self.video is not None:
            return load_video_sample(self.video, unit, frame, source=self.source, with_masks=with_masks)
        if self.mot:
            seq = self.mot[unit]
            image = read_image_rgb(seq.frame_path(frame + 1), source=seq.folder, record=f"frame {frame + 1}",
                                   expected_hw=(seq.height, seq.width))
            return image, target_from_mot(seq, frame + 1)
        if self.sot:
            seq = self.sot[unit]
            image = read_image_rgb(seq.frame_paths[frame], source=self.source, record=f"sequence {seq.name}")
            return image, target_from_sot(seq, frame)
        seq = self.vos[unit]
        annotated = sorted(seq.mask_paths)
        index = annotated[frame]
        image = read_image_rgb(seq.frame_paths[index], source=self.source, record=f"sequence {seq.name}")
        target = target_from_label_map(load_label_map(seq, index), sorted(seq.objects))
        if not with_masks:
            target = Target(target.boxes_xyxy_px, None, target.ids, target.labels)
        return image, target


def _require(spec: DatasetSpec, path: str, what: str) -> Path:
    if not path:
        raise ValueError(f"dataset {spec.name!r}: no {what} given")
    resolved = Path(path)
    if not resolved.exists():
        raise ValueError(f"dataset {spec.name!r} (reader {spec.reader}): {what} {resolved} does not exist")
    return resolved


def _landscape(sizes: list[tuple[int, int]]) -> np.ndarray:
    return np.array([w >= h for h, w in sizes], dtype=bool)


def _video_store(spec: DatasetSpec, dataset: VideoDataset, source: Path) -> FrameStore:
    referrals = []
    if spec.expressions:
        expressions_path = _require(spec, spec.expressions, "expressions file")
        attach_expressions(dataset, read_rvos_expressions(expressions_path), source=expressions_path)
        unit_of = {v.name: k for k, v in enumerate(dataset.videos)}
        referrals = [Referral(unit_of[e.video_name], e.track_id, (e.text,)) for e in dataset.expressions]
    return FrameStore(spec.name, source, list(dataset.categories), [len(v.file_names) for v in dataset.videos],
                      _landscape([(v.height, v.width) for v in dataset.videos]), referrals=referrals, video=dataset)


def open_store(spec: DatasetSpec) -> FrameStore:
    """Read the dataset of a recipe entry.

    Raises:
        ValueError: a missing annotation file, image folder or dataset root, or malformed annotations.
    """
    path = _require(spec, spec.path, "annotation file / dataset root")
    match spec.reader:
        case "coco":
            dataset = read_coco_instances(path, image_root=_require(spec, spec.image_root, "image_root"),
                                          check_images=False)
            return FrameStore(spec.name, path, list(dataset.categories), [1] * len(dataset.images),
                              _landscape([(r.height, r.width) for r in dataset.images]), detection=dataset)
        case "refcoco":
            referring = read_refcoco(_require(spec, spec.refs, "refs file"), path,
                                     image_root=_require(spec, spec.image_root, "image_root"), check_images=False)
            dataset = referring.detection
            unit_of = {r.id: k for k, r in enumerate(dataset.images)}
            referrals = [Referral(unit_of[r.image_id], r.ann_id, tuple(r.sentences)) for r in referring.refs]
            return FrameStore(spec.name, path, list(dataset.categories), [1] * len(dataset.images),
                              _landscape([(r.height, r.width) for r in dataset.images]), referrals=referrals,
                              detection=dataset)
        case "cocovid" | "ytvis":
            reader = read_cocovid if spec.reader == "cocovid" else read_ytvis
            image_root = _require(spec, spec.image_root, "image_root")
            return _video_store(spec, reader(path, image_root=image_root, check_images=False), path)
        case "motchallenge":
            folders = sorted(p.parent for p in path.glob("*/seqinfo.ini"))
            if not folders:
                raise ValueError(f"dataset {spec.name!r}: no MOTChallenge sequence (*/seqinfo.ini) under {path}")
            sequences = [read_mot_sequence(f, check_images=False) for f in folders]
            categories = [Category(k + 1, name) for k, name in enumerate(spec.categories)]
            return FrameStore(spec.name, path, categories, [s.length for s in sequences],
                              _landscape([(s.height, s.width) for s in sequences]), has_masks=False, mot=sequences)
        case "lasot" | "got10k":
            folders = list_sot_sequences(path, layout=spec.reader)
            if not folders:
                raise ValueError(f"dataset {spec.name!r}: no {spec.reader} sequence under {path}")
            sequences = [read_sot_sequence(f, layout=spec.reader) for f in folders]
            # SOT readers give no frame size without decoding; one aspect group for the whole dataset.
            return FrameStore(spec.name, path, [SOT_CATEGORY], [len(s.frame_paths) for s in sequences],
                              np.ones(len(sequences), dtype=bool), has_masks=False, sot=sequences)
        case "davis" | "youtube_vos":
            sequences = read_davis(path) if spec.reader == "davis" else read_youtube_vos(path)
            if not sequences:
                raise ValueError(f"dataset {spec.name!r}: no {spec.reader} sequence under {path}")
            return FrameStore(spec.name, path, [SOT_CATEGORY], [len(s.mask_paths) for s in sequences],
                              np.ones(len(sequences), dtype=bool), vos=sequences)
    raise ValueError(f"dataset {spec.name!r}: unknown reader {spec.reader!r}")
