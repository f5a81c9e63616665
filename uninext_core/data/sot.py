"""Single-object tracking sequences in the LaSOT and GOT-10k layouts: reader and writer.

LaSOT: `<root>/<class>/<class>-<k>/img/00000001.jpg ...`, `groundtruth.txt` (one `x,y,w,h` line per frame),
`full_occlusion.txt` and `out_of_view.txt` (one line of comma-separated 0/1 flags), `nlp.txt` (a sentence).
GOT-10k: `<root>/<split>/GOT-10k_Train_000001/00000001.jpg ...`, `groundtruth.txt`, `absence.label` (one 0/1
per line; it covers occlusion and leaving the frame alike, so `out_of_view` reads as all False),
`meta_info.ini` ([METAINFO] with `object_class: ...`), `<split>/list.txt`.
Boxes are kept as the files give them (no 1-based shift, as the toolkits do); comma, tab or space separated.
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Literal

import numpy as np

from uninext_core.data.errors import DataFormatError
from uninext_core.data.records import SotSequence

SotLayout = Literal["lasot", "got10k"]
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def detect_layout(folder: str | Path) -> SotLayout:
    """"lasot" when the frames sit in an `img/` subfolder, else "got10k"."""
    return "lasot" if (Path(folder) / "img").is_dir() else "got10k"


def read_groundtruth(path: str | Path) -> np.ndarray:
    """(N, 4) float64 boxes (x1, y1, x2, y2) from an `x,y,w,h` per line file.

    Raises:
        DataFormatError: missing file, a line without exactly 4 numbers, NaN values or negative sizes.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "", "file not found")
    boxes = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.replace(",", " ").replace("\t", " ").split()
        try:
            x, y, w, h = (float(p) for p in parts)
        except ValueError:
            raise DataFormatError(path, f"line {line_no}", f"expected 4 numbers x,y,w,h, got {line!r}") from None
        if not all(np.isfinite([x, y, w, h])) or w < 0 or h < 0:
            raise DataFormatError(path, f"line {line_no}", f"invalid box {line!r} (finite, w ≥ 0, h ≥ 0 expected)")
        boxes.append((x, y, x + w, y + h))
    return np.array(boxes, dtype=np.float64).reshape(-1, 4)


def _read_flags(path: Path, n: int, *, one_line: bool) -> np.ndarray:
    """n 0/1 flags from one comma-separated line (LaSOT) or one per line (GOT-10k)."""
    if not path.is_file():
        raise DataFormatError(path, "", "file not found")
    text = path.read_text(encoding="utf-8")
    parts = text.replace(",", " ").split() if one_line else text.split()
    if len(parts) != n or any(p not in ("0", "1") for p in parts):
        raise DataFormatError(path, "", f"expected {n} flags of 0/1 (one per frame), got {len(parts)} values")
    return np.array([p == "1" for p in parts], dtype=bool)


def read_sot_sequence(folder: str | Path, *, layout: SotLayout | None = None) -> SotSequence:
    """Read one sequence folder.

    Args:
        folder: the sequence folder (`.../airplane/airplane-1` or `.../GOT-10k_Train_000001`).
        layout: None detects it with `detect_layout`.

    Raises:
        DataFormatError: no frames, a groundtruth line count that differs from the frame count, malformed
            boxes or flag files.
    """
    folder = Path(folder)
    layout = layout or detect_layout(folder)
    image_dir = folder / "img" if layout == "lasot" else folder
    frame_paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES) \
        if image_dir.is_dir() else []
    if not frame_paths:
        raise DataFormatError(image_dir, "", "no frames (.jpg/.png) found")
    gt_path = folder / "groundtruth.txt"
    boxes = read_groundtruth(gt_path)
    n = len(frame_paths)
    if len(boxes) != n:
        raise DataFormatError(gt_path, "", f"{len(boxes)} boxes for {n} frames")
    category, expression = "", ""
    if layout == "lasot":
        occluded = _read_flags(folder / "full_occlusion.txt", n, one_line=True)
        out_of_view = _read_flags(folder / "out_of_view.txt", n, one_line=True)
        category = folder.parent.name
        if (folder / "nlp.txt").is_file():
            expression = (folder / "nlp.txt").read_text(encoding="utf-8").strip()
    else:
        occluded = _read_flags(folder / "absence.label", n, one_line=False)
        out_of_view = np.zeros(n, dtype=bool)  # GOT-10k's absence flag covers both reasons
        meta = folder / "meta_info.ini"
        if meta.is_file():
            parser = configparser.ConfigParser()
            try:
                parser.read(meta, encoding="utf-8")
            except configparser.Error as exc:
                raise DataFormatError(meta, "", f"not an ini file: {exc}") from exc
            category = parser.get("METAINFO", "object_class", fallback="").strip()
    sizes_ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    visible = sizes_ok & ~occluded & ~out_of_view
    return SotSequence(folder.name, frame_paths, boxes, visible, out_of_view, category, expression)


def list_sot_sequences(root: str | Path, *, layout: SotLayout) -> list[Path]:
    """Sequence folders under a dataset root, sorted (LaSOT: `<class>/<class>-k`; GOT-10k: `list.txt` if present)."""
    root = Path(root)
    if layout == "got10k" and (root / "list.txt").is_file():
        names = [n.strip() for n in (root / "list.txt").read_text(encoding="utf-8").splitlines() if n.strip()]
        missing = [n for n in names if not (root / n).is_dir()]
        if missing:
            raise DataFormatError(root / "list.txt", f"sequence {missing[0]}", f"folder {root / missing[0]} not found")
        return [root / n for n in names]
    pattern = "*/*/groundtruth.txt" if layout == "lasot" else "*/groundtruth.txt"
    return sorted(p.parent for p in root.glob(pattern))


def write_sot_sequence(seq: SotSequence, folder: str | Path, *, layout: SotLayout) -> None:
    """Write the annotation files of one sequence into `folder` (frames are written by the caller).

    Absent frames are written with their stored box; `visible` is recovered on reading from the flag files
    (LaSOT: invisible frames not out of view become occlusion flags; GOT-10k: every invisible frame is "absent").
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for x1, y1, x2, y2 in seq.boxes_xyxy_px:
        lines.append(",".join(_num(v) for v in (x1, y1, x2 - x1, y2 - y1)) + "\n")
    (folder / "groundtruth.txt").write_text("".join(lines), encoding="utf-8")
    if layout == "lasot":
        occluded = ~seq.visible & ~seq.out_of_view
        (folder / "full_occlusion.txt").write_text(",".join(str(int(v)) for v in occluded) + "\n", encoding="utf-8")
        (folder / "out_of_view.txt").write_text(",".join(str(int(v)) for v in seq.out_of_view) + "\n",
                                                encoding="utf-8")
        if seq.expression:
            (folder / "nlp.txt").write_text(seq.expression + "\n", encoding="utf-8")
    else:
        (folder / "absence.label").write_text("".join(f"{int(not v)}\n" for v in seq.visible), encoding="utf-8")
        (folder / "meta_info.ini").write_text(f"[METAINFO]\nobject_class: {seq.category}\n", encoding="utf-8")


def write_got10k_list(root: str | Path, names: list[str]) -> None:
    """The split's `list.txt` (one sequence folder name per line)."""
    Path(root, "list.txt").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))
