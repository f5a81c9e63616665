"""Video object segmentation layouts: DAVIS 2017 and YouTube-VOS (frames as JPEG, masks as palette PNGs).

DAVIS: `<root>/JPEGImages/480p/<seq>/00000.jpg`, `<root>/Annotations/480p/<seq>/00000.png` (every frame),
`<root>/ImageSets/2017/<split>.txt` (one sequence name per line).
YouTube-VOS: `<root>/<split>/JPEGImages/<vid>/00000.jpg`, `<root>/<split>/Annotations/<vid>/00000.png` (train: every
5th frame), `<root>/<split>/meta.json` = {"videos": {"<vid>": {"objects": {"<id>": {"category": str,
"frames": ["00000", ...]}}}}}.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from uninext_core.data.errors import DataFormatError
from uninext_core.data.json_fields import field_of, load_json, write_json
from uninext_core.data.palette_masks import read_palette_png
from uninext_core.data.records import VosSequence

_VOID = 255


def frame_size(path: Path, *, source: Path, record: str) -> tuple[int, int]:
    """(height, width) of an image from its header (no decoding)."""
    if not path.is_file():
        raise DataFormatError(source, record, f"frame file {path} not found")
    with Image.open(path) as image:
        return image.height, image.width


def load_label_map(seq: VosSequence, frame_index: int) -> np.ndarray:
    """(H, W) uint8 label map of an annotated frame, checked against the frame's size.

    Raises:
        DataFormatError: no mask for that frame, an unreadable PNG, or a PNG whose size differs from the JPEG.
    """
    if frame_index not in seq.mask_paths:
        raise DataFormatError(seq.frame_paths[frame_index], f"sequence {seq.name}", f"frame {frame_index} has no mask")
    frame = seq.frame_paths[frame_index]
    hw = frame_size(frame, source=seq.mask_paths[frame_index], record=f"sequence {seq.name} frame {frame.stem}")
    return read_palette_png(seq.mask_paths[frame_index], record=f"sequence {seq.name} frame {frame.stem}",
                            expected_hw=hw)


def _sequence(name: str, image_dir: Path, mask_dir: Path, *, source: Path) -> VosSequence:
    if not image_dir.is_dir():
        raise DataFormatError(source, f"sequence {name}", f"frame folder {image_dir} not found")
    frame_paths = sorted(image_dir.glob("*.jpg"))
    if not frame_paths:
        raise DataFormatError(source, f"sequence {name}", f"no .jpg frames in {image_dir}")
    mask_paths = {k: mask_dir / f"{p.stem}.png" for k, p in enumerate(frame_paths)
                  if (mask_dir / f"{p.stem}.png").is_file()}
    stems = {p.stem for p in frame_paths}
    stray = sorted(p.name for p in mask_dir.glob("*.png") if p.stem not in stems) if mask_dir.is_dir() else []
    if stray:
        raise DataFormatError(mask_dir / stray[0], f"sequence {name}", "mask without a matching JPEG frame")
    return VosSequence(name, frame_paths, mask_paths, {})


def read_davis(
    root: str | Path, *, split: str = "train", resolution: str = "480p", year: str = "2017"
) -> list[VosSequence]:
    """Read DAVIS sequences listed in `ImageSets/<year>/<split>.txt`; objects are scanned from every mask.

    Raises:
        DataFormatError: missing split file or folders, a sequence without a first-frame mask, a mask whose size
            differs from its frame, or an unreadable PNG.
    """
    root = Path(root)
    split_file = root / "ImageSets" / year / f"{split}.txt"
    if not split_file.is_file():
        raise DataFormatError(split_file, "", "file not found")
    names = [n.strip() for n in split_file.read_text(encoding="utf-8").splitlines() if n.strip()]
    sequences = []
    for name in names:
        seq = _sequence(name, root / "JPEGImages" / resolution / name, root / "Annotations" / resolution / name,
                        source=split_file)
        if 0 not in seq.mask_paths:
            raise DataFormatError(split_file, f"sequence {name}", "no mask for the first frame")
        for k in sorted(seq.mask_paths):
            for obj in np.unique(load_label_map(seq, k)).tolist():
                if obj not in (0, _VOID) and obj not in seq.objects:
                    seq.objects[obj] = ""
                    seq.first_frames[obj] = k
        seq.objects = dict(sorted(seq.objects.items()))
        sequences.append(seq)
    return sequences


def read_youtube_vos(root: str | Path, *, split: str = "train") -> list[VosSequence]:
    """Read YouTube-VOS videos of `<root>/<split>/meta.json` (objects, categories and first frames from the meta).

    Masks are checked for size when loaded (`load_label_map`), not here: YouTube-VOS has ~100k of them.

    Raises:
        DataFormatError: malformed meta.json, object ids outside 1..254, frames named in the meta without a JPEG.
    """
    split_root = Path(root) / split
    meta_path = split_root / "meta.json"
    meta = field_of(load_json(meta_path), "videos", dict, path=meta_path, record="videos")
    sequences = []
    for name, video in meta.items():
        record = f"video {name}"
        seq = _sequence(name, split_root / "JPEGImages" / name, split_root / "Annotations" / name, source=meta_path)
        index_of = {p.stem: k for k, p in enumerate(seq.frame_paths)}
        for obj_key, obj in field_of(video, "objects", dict, path=meta_path, record=record).items():
            obj_record = f"{record} object {obj_key}"
            if not obj_key.isdigit() or not 1 <= int(obj_key) < _VOID:
                raise DataFormatError(meta_path, obj_record, f"object id must be 1..254, got {obj_key!r}")
            frames = field_of(obj, "frames", list, path=meta_path, record=obj_record)
            if not frames or any(f not in index_of for f in frames):
                missing = next((f for f in frames if f not in index_of), None)
                problem = f"frame {missing!r} has no JPEG" if frames else "no frames"
                raise DataFormatError(meta_path, obj_record, problem)
            seq.objects[int(obj_key)] = str(obj.get("category", ""))
            seq.first_frames[int(obj_key)] = min(index_of[f] for f in frames)
        sequences.append(seq)
    return sequences


def write_davis_split(root: str | Path, names: list[str], *, split: str = "train", year: str = "2017") -> None:
    """Write `ImageSets/<year>/<split>.txt`."""
    path = Path(root) / "ImageSets" / year / f"{split}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


def write_youtube_vos_meta(root: str | Path, sequences: list[VosSequence], *, split: str = "train") -> None:
    """Write `<root>/<split>/meta.json` from sequences (object frames = stems of the frames whose mask shows it).

    Args:
        sequences: with `objects`, `first_frames` and `mask_paths` filled; an object is listed on every annotated
            frame from its first frame on whose label map contains it.
    """
    videos: dict[str, Any] = {}
    for seq in sequences:
        objects: dict[str, Any] = {}
        label_maps = {k: read_palette_png(p) for k, p in sorted(seq.mask_paths.items())}
        for obj, category in seq.objects.items():
            frames = [seq.frame_paths[k].stem for k, lm in label_maps.items() if np.any(lm == obj)]
            objects[str(obj)] = {"category": category, "frames": frames}
        videos[seq.name] = {"objects": objects}
    write_json({"videos": videos}, Path(root) / split / "meta.json")
