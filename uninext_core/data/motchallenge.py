"""MOTChallenge sequences (MOT16/17/20; also the layout BDD100K MOT converts to): reader and writer.

Layout: `<seq>/seqinfo.ini` ([Sequence] name, imDir, frameRate, seqLength, imWidth, imHeight, imExt),
`<seq>/<imDir>/000001.jpg ...`, `<seq>/gt/gt.txt`. Each gt line is
`frame, id, bb_left, bb_top, bb_width, bb_height, conf, class, visibility` (frames 1-based; `conf` 0/1 marks rows
to ignore/consider; MOT15-style files with fewer or more trailing columns are accepted). MOTChallenge pixel
coordinates are 1-based: the reader subtracts 1 from bb_left/bb_top and the writer adds it back, so records hold
0-based `box_xyxy_px` like every other reader.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np

from uninext_core.data.errors import DataFormatError
from uninext_core.data.records import MotSequence

_SEQINFO_KEYS = ("name", "imDir", "frameRate", "seqLength", "imWidth", "imHeight", "imExt")


def read_seqinfo(folder: str | Path) -> dict[str, str]:
    """The [Sequence] section of `<folder>/seqinfo.ini`; every key of `_SEQINFO_KEYS` must be present."""
    path = Path(folder) / "seqinfo.ini"
    if not path.is_file():
        raise DataFormatError(path, "", "file not found")
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keep camelCase keys
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise DataFormatError(path, "", f"not an ini file: {exc}") from exc
    if "Sequence" not in parser:
        raise DataFormatError(path, "", "missing [Sequence] section")
    info = dict(parser["Sequence"])
    for key in _SEQINFO_KEYS:
        if key not in info:
            raise DataFormatError(path, "[Sequence]", f"missing key {key!r}")
    return info


def read_mot_sequence(folder: str | Path, *, gt_file: str = "gt/gt.txt", check_images: bool = True) -> MotSequence:
    """Read one sequence folder (seqinfo.ini and its ground truth).

    Raises:
        DataFormatError: missing files, a line with too few or non-numeric columns, a frame outside
            1..seqLength, negative box sizes, a repeated (frame, id) pair, or (with `check_images`) missing frames.
    """
    folder = Path(folder)
    info = read_seqinfo(folder)
    ini = folder / "seqinfo.ini"
    try:
        length, width, height = int(info["seqLength"]), int(info["imWidth"]), int(info["imHeight"])
        frame_rate = float(info["frameRate"])
    except ValueError as exc:
        raise DataFormatError(ini, "[Sequence]", f"non-numeric value: {exc}") from exc
    path = folder / gt_file
    if not path.is_file():
        raise DataFormatError(path, "", "file not found")
    rows = []
    seen: set[tuple[int, int]] = set()
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = f"line {line_no}"
        parts = [p.strip() for p in line.replace(" ", ",").split(",") if p.strip()]
        if len(parts) < 7:
            raise DataFormatError(path, record, f"expected ≥ 7 comma-separated columns, got {len(parts)}: {line!r}")
        try:
            values = [float(p) for p in parts[:9]]
        except ValueError:
            raise DataFormatError(path, record, f"non-numeric column in {line!r}") from None
        frame, track_id = int(values[0]), int(values[1])
        if values[0] != frame or not 1 <= frame <= length:
            raise DataFormatError(path, record, f"frame {parts[0]} outside 1..{length} (seqLength)")
        left, top, w, h = values[2:6]
        if w < 0 or h < 0:
            raise DataFormatError(path, record, f"negative box size {w}×{h}")
        if (frame, track_id) in seen and track_id >= 0:
            raise DataFormatError(path, record, f"id {track_id} appears twice in frame {frame}")
        seen.add((frame, track_id))
        class_id = int(values[7]) if len(values) > 7 else 1
        visibility = values[8] if len(values) > 8 else 1.0
        rows.append((frame, track_id, left - 1.0, top - 1.0, left - 1.0 + w, top - 1.0 + h, values[6] != 0, class_id,
                     visibility))
    seq = MotSequence(
        name=info["name"], folder=folder, image_dir=info["imDir"], image_ext=info["imExt"], frame_rate=frame_rate,
        length=length, width=width, height=height,
        frames=np.array([r[0] for r in rows], dtype=np.int64),
        track_ids=np.array([r[1] for r in rows], dtype=np.int64),
        boxes_xyxy_px=np.array([r[2:6] for r in rows], dtype=np.float64).reshape(-1, 4),
        consider=np.array([r[6] for r in rows], dtype=bool),
        class_ids=np.array([r[7] for r in rows], dtype=np.int64),
        visibility=np.array([r[8] for r in rows], dtype=np.float64),
    )
    if check_images:
        for frame in range(1, length + 1):
            if not seq.frame_path(frame).is_file():
                raise DataFormatError(ini, f"frame {frame}", f"image file {seq.frame_path(frame)} not found")
    return seq


def write_mot_sequence(seq: MotSequence, *, gt_file: str = "gt/gt.txt") -> None:
    """Write `seq.folder/seqinfo.ini` and the gt file (images are written by the caller into `seq.image_dir`)."""
    folder = Path(seq.folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame_rate = int(seq.frame_rate) if float(seq.frame_rate).is_integer() else seq.frame_rate
    info = {"name": seq.name, "imDir": seq.image_dir, "frameRate": frame_rate, "seqLength": seq.length,
            "imWidth": seq.width, "imHeight": seq.height, "imExt": seq.image_ext}
    (folder / "seqinfo.ini").write_text("[Sequence]\n" + "".join(f"{k}={v}\n" for k, v in info.items()),
                                        encoding="utf-8")
    write_mot_rows(folder / gt_file, frames=seq.frames, track_ids=seq.track_ids, boxes_xyxy_px=seq.boxes_xyxy_px,
                   confidences=seq.consider.astype(np.float64), class_ids=seq.class_ids, visibility=seq.visibility)


def write_mot_rows(
    path: str | Path, *, frames: np.ndarray, track_ids: np.ndarray, boxes_xyxy_px: np.ndarray,
    confidences: np.ndarray, class_ids: np.ndarray | None = None, visibility: np.ndarray | None = None,
) -> None:
    """Write MOTChallenge lines (ground truth with class/visibility, or tracker results with -1 placeholders).

    Args:
        frames: (N,) 1-based frame numbers; track_ids: (N,); boxes_xyxy_px: (N, 4) 0-based pixels.
        confidences: (N,) `conf` column (gt: 1 consider / 0 ignore; results: the score).
        class_ids, visibility: (N,) for ground truth; None writes "-1,-1,-1" as tracker results do.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(len(frames)):
        x1, y1, x2, y2 = (float(v) for v in boxes_xyxy_px[k])
        head = f"{int(frames[k])},{int(track_ids[k])},{_num(x1 + 1)},{_num(y1 + 1)},{_num(x2 - x1)},{_num(y2 - y1)}"
        if class_ids is None or visibility is None:
            lines.append(f"{head},{_num(float(confidences[k]))},-1,-1,-1\n")
        else:
            lines.append(f"{head},{_num(float(confidences[k]))},{int(class_ids[k])},{_num(float(visibility[k]))}\n")
    path.write_text("".join(lines), encoding="utf-8")


def _num(v: float) -> str:
    """Integers without a decimal point (as MOTChallenge files write them), other values with repr precision."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))
