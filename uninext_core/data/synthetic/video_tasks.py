"""Video exports (video, vis, mot, sot, vos): one synthetic video per item, written in each task's real layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from uninext_core.data.cocovid import write_cocovid
from uninext_core.data.image_io import write_image_rgb
from uninext_core.data.motchallenge import write_mot_sequence
from uninext_core.data.palette_masks import write_palette_png
from uninext_core.data.records import (
    BoxXyxy,
    MotSequence,
    SotSequence,
    VideoDataset,
    VideoExpression,
    VideoRecord,
    VideoTrack,
    VosSequence,
)
from uninext_core.data.rvos import write_rvos_expressions
from uninext_core.data.segmentation import Segmentation
from uninext_core.data.sot import write_got10k_list, write_sot_sequence
from uninext_core.data.synthetic.image_tasks import mask_segmentation
from uninext_core.data.synthetic.options import ExportOptions, ExportResult
from uninext_core.data.synthetic.world import CATEGORIES, CATEGORY_ID, TASKS, SynthVideo, synth_video
from uninext_core.data.vos import write_davis_split, write_youtube_vos_meta
from uninext_core.data.ytvis import write_ytvis

_WORD_ATTRIBUTES = ("kind", "colour", "size", "texture")


class TrackItem(NamedTuple):
    """One track of a written video: local id (1..N), fixed attributes, per-frame box/mask (None when absent)."""

    local_id: int
    kind: str
    attributes: dict[str, str]
    boxes: list[BoxXyxy | None]
    segmentations: list[Segmentation | None]
    visibility: list[float]
    expressions: list[str]


class VideoItem(NamedTuple):
    """One written video: name, frame file names, tracks, and the layout-specific record (SOT / VOS)."""

    name: str
    file_names: list[str]
    tracks: list[TrackItem]
    extra: Any


def video_name(options: ExportOptions, index: int) -> str:
    """Folder name of video `index` in the task's layout."""
    match options.task:
        case "mot":
            return f"SYN-{index + 1:03d}"
        case "sot" if options.sot_layout == "got10k":
            return f"GOT-10k_Train_{index + 1:06d}"
    return f"syn{index:05d}"


def _frame_files(options: ExportOptions, name: str, n: int, *, sot_kind: str = "") -> tuple[list[Path], list[str]]:
    """(absolute frame paths, file names relative to the image root) of n frames in the task's layout."""
    out = options.out
    match options.task:
        case "video":
            rel = [f"{name}/{t:05d}.jpg" for t in range(n)]
            return [out / "frames" / r for r in rel], rel
        case "vis":
            rel = [f"{name}/{t:05d}.jpg" for t in range(n)]
            return [out / "train" / "JPEGImages" / r for r in rel], rel
        case "mot":
            return [out / "train" / name / "img1" / f"{t + 1:06d}.jpg" for t in range(n)], []
        case "sot":
            folder = out / "train" / name if options.sot_layout == "got10k" else out / sot_kind / name
            sub = folder if options.sot_layout == "got10k" else folder / "img"
            return [sub / f"{t + 1:08d}.jpg" for t in range(n)], []
        case "vos":
            step = 5 if options.vos_layout == "youtube_vos" else 1
            root = out / "train" / "JPEGImages" if options.vos_layout == "youtube_vos" else out / "JPEGImages" / "480p"
            return [root / name / f"{step * t:05d}.jpg" for t in range(n)], []
    raise ValueError(f"not a video task: {options.task!r}")


def _sot_target(options: ExportOptions, index: int, synth: SynthVideo) -> int:
    """Track index followed in a SOT sequence: a random track visible on frame 0 (else the most visible one)."""
    candidates = np.flatnonzero(synth.present[0])
    if candidates.size == 0:
        return int(np.argmax(synth.present.sum(axis=0)))
    rng = np.random.default_rng([options.seed, TASKS.index("sot"), index, 1])
    return int(rng.choice(candidates))


def make_video_item(options: ExportOptions, index: int) -> VideoItem:
    """Draw video `index`, write its frames (and VOS masks / SOT files) and return its annotations."""
    synth = synth_video(seed=options.seed, index=index, height=options.size, width=options.size,
                        num_frames=options.num_frames, difficulty=options.difficulty, task=options.task,
                        with_expressions=options.task in ("video", "sot"), max_expressions=options.max_expressions)
    name = video_name(options, index)
    target = _sot_target(options, index, synth) if options.task == "sot" else -1
    if options.task == "sot" and options.sot_layout == "lasot":
        name = f"{synth.tracks[target].kind}-{index + 1}"  # LaSOT names sequences <class>-<k>
    sot_kind = synth.tracks[target].kind if options.task == "sot" else ""
    paths, rel = _frame_files(options, name, len(synth.frames), sot_kind=sot_kind)
    for path, frame in zip(paths, synth.frames, strict=True):
        write_image_rgb(path, frame, jpeg_quality=options.jpeg_quality)
    mask_format = options.mask_format if options.task == "video" else "rle"
    tracks = []
    for n, obj in enumerate(synth.tracks):
        boxes: list[BoxXyxy | None] = []
        segs: list[Segmentation | None] = []
        for t in range(len(synth.frames)):
            if synth.present[t, n]:
                seg, box = mask_segmentation(synth.masks[t, n], mask_format)
                boxes.append(box)
                segs.append(seg)
            else:
                boxes.append(None)
                segs.append(None)
        tracks.append(TrackItem(obj.id, obj.kind, {a: getattr(obj, a) for a in _WORD_ATTRIBUTES}, boxes, segs,
                                [float(v) for v in synth.visibility[:, n]],
                                [e.text for e in synth.expressions.get(obj.id, [])]))
    extra: Any = None
    if options.task == "sot":
        extra = _write_sot(options, name, paths, synth, tracks[target], target)
    elif options.task == "vos":
        extra = _write_vos(options, name, paths, synth)
    return VideoItem(name, rel, tracks, extra)


def _write_sot(options: ExportOptions, name: str, paths: list[Path], synth: SynthVideo, track: TrackItem,
               target: int) -> SotSequence:
    boxes = np.array([b if b is not None else (0.0, 0.0, 0.0, 0.0) for b in track.boxes], dtype=np.float64)
    lasot = options.sot_layout == "lasot"  # GOT-10k has no out-of-view flag and no sentence
    out_of_view = ~synth.in_frame[:, target] if lasot else np.zeros(len(paths), dtype=bool)
    expression = track.expressions[0] if lasot and track.expressions else ""
    seq = SotSequence(name, paths, boxes, synth.present[:, target].copy(), out_of_view, track.kind, expression)
    write_sot_sequence(seq, paths[0].parent if options.sot_layout == "got10k" else paths[0].parent.parent,
                       layout=options.sot_layout)
    return seq


def _write_vos(options: ExportOptions, name: str, paths: list[Path], synth: SynthVideo) -> VosSequence:
    """Palette PNG per frame; DAVIS labels the tracks visible on frame 0, YouTube-VOS every track."""
    davis = options.vos_layout == "davis"
    labelled = [n for n in range(len(synth.tracks)) if synth.present[:, n].any() and (synth.present[0, n] or not davis)]
    mask_root = options.out / "Annotations" / "480p" if davis else options.out / "train" / "Annotations"
    mask_paths = {}
    objects: dict[int, str] = {}
    first_frames: dict[int, int] = {}
    for t, path in enumerate(paths):
        label_map = np.zeros(synth.masks.shape[2:], dtype=np.uint8)
        for n in labelled:
            if synth.present[t, n]:
                label_map[synth.masks[t, n]] = synth.tracks[n].id
                first_frames.setdefault(synth.tracks[n].id, t)
        mask_paths[t] = mask_root / name / f"{path.stem}.png"
        write_palette_png(mask_paths[t], label_map)
    for n in labelled:
        objects[synth.tracks[n].id] = "" if davis else synth.tracks[n].kind
    return VosSequence(name, paths, mask_paths, dict(sorted(objects.items())), dict(sorted(first_frames.items())))


def _ordered_tracks(item: VideoItem) -> list[TrackItem]:
    """Tracks that appear at least once, by first frame shown then drawing order (COCO-video's reading order)."""
    shown = [tr for tr in item.tracks if any(b is not None for b in tr.boxes)]
    return sorted(shown, key=lambda tr: next(t for t, b in enumerate(tr.boxes) if b is not None))


def _video_dataset(options: ExportOptions, items: list[VideoItem], image_root: Path) -> VideoDataset:
    """VideoDataset with video ids 1.. and track ids 1.. numbered across the whole dataset."""
    videos, expressions = [], []
    next_track = 1
    for index, item in enumerate(items):
        video = VideoRecord(index + 1, item.name, item.file_names, options.size, options.size)
        for tr in _ordered_tracks(item):
            video.tracks.append(VideoTrack(next_track, CATEGORY_ID[tr.kind], list(tr.boxes), list(tr.segmentations),
                                           attributes=dict(tr.attributes)))
            for text in tr.expressions:
                count = sum(e.video_name == item.name for e in expressions)
                expressions.append(VideoExpression(item.name, str(count), text, next_track))
            next_track += 1
        videos.append(video)
    return VideoDataset(list(CATEGORIES), videos, image_root, expressions)


def _mot_sequence(options: ExportOptions, item: VideoItem) -> MotSequence:
    rows = [(t + 1, tr.local_id, box, CATEGORY_ID[tr.kind], tr.visibility[t])
            for tr in item.tracks for t, box in enumerate(tr.boxes) if box is not None]
    return MotSequence(
        name=item.name, folder=options.out / "train" / item.name, image_dir="img1", image_ext=".jpg",
        frame_rate=10.0, length=options.num_frames, width=options.size, height=options.size,
        frames=np.array([r[0] for r in rows], dtype=np.int64), track_ids=np.array([r[1] for r in rows], dtype=np.int64),
        boxes_xyxy_px=np.array([r[2] for r in rows], dtype=np.float64).reshape(-1, 4),
        consider=np.ones(len(rows), dtype=bool), class_ids=np.array([r[3] for r in rows], dtype=np.int64),
        visibility=np.array([r[4] for r in rows], dtype=np.float64),
    )


def write_video_task(options: ExportOptions, items: list[VideoItem]) -> ExportResult:
    """Write the task's annotation files for gathered video items."""
    out = options.out
    match options.task:
        case "video":
            dataset = _video_dataset(options, items, out / "frames")
            instances, meta = out / "annotations" / "instances.json", out / "annotations" / "meta_expressions.json"
            write_cocovid(dataset, instances)
            write_rvos_expressions(dataset, meta)
            return ExportResult("video", (instances, meta), dataset)
        case "vis":
            dataset = _video_dataset(options, items, out / "train" / "JPEGImages")
            dataset.expressions = []
            write_ytvis(dataset, out / "train.json")
            return ExportResult("vis", (out / "train.json",), dataset)
        case "mot":
            sequences = [_mot_sequence(options, item) for item in items]
            for seq in sequences:
                write_mot_sequence(seq)
            return ExportResult("mot", tuple(s.folder / "gt" / "gt.txt" for s in sequences), sequences)
        case "sot":
            sequences = [item.extra for item in items]
            if options.sot_layout == "got10k":
                write_got10k_list(out / "train", [s.name for s in sequences])
                return ExportResult("sot", (out / "train" / "list.txt",), sequences)
            return ExportResult("sot", tuple(s.frame_paths[0].parents[1] / "groundtruth.txt" for s in sequences),
                                sequences)
        case "vos":
            sequences = [item.extra for item in items]
            if options.vos_layout == "davis":
                write_davis_split(out, [s.name for s in sequences])
                return ExportResult("vos", (out / "ImageSets" / "2017" / "train.txt",), sequences)
            write_youtube_vos_meta(out, sequences)
            return ExportResult("vos", (out / "train" / "meta.json",), sequences)
    raise ValueError(f"not a video task: {options.task!r}")
