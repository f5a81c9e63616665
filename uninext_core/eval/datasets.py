"""Which dataset `--data` names: the reader, annotation file, image root and side files, found from the path.

`--data` is a dataset folder or an annotation file in a format training reads (the readers of uninext_core.data,
through the training `FrameStore`, so evaluation sees exactly the frames and targets training would):

| reader       | `--data`                                                     | found beside it               |
|--------------|--------------------------------------------------------------|-------------------------------|
| coco         | instances JSON, or a folder with annotations/instances.json  | images/                       |
| refcoco      | refs JSON, or a folder / instances JSON with refs.json       | instances.json, images/       |
| cocovid      | COCO-video JSON (videos + images with video_id)               | frames/, meta_expressions.json |
| ytvis        | YouTube-VIS JSON (videos with file_names)                     | <stem>/JPEGImages/            |
| motchallenge | folder of sequence folders (*/seqinfo.ini) or its parent      | (classes from --categories)   |
| lasot/got10k | LaSOT root (<class>/<class>-k/) or GOT-10k split root        |                               |
| davis        | DAVIS root (JPEGImages/480p, ImageSets/2017/<split>.txt)     | split val if listed, else train |
| youtube_vos  | YouTube-VOS root (<split>/meta.json)                          | split valid if there, else train |

Every explicit option (reader, image root, refs, expressions, split) overrides what is found. Problems raise
ValueError naming the path and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uninext_core.data.json_fields import load_json
from uninext_core.data.vos import read_davis, read_youtube_vos
from uninext_core.train.frame_stores import SOT_CATEGORY, FrameStore, open_store
from uninext_core.train.recipe import DatasetSpec

EVAL_TASKS: tuple[str, ...] = ("detection", "instance_segmentation", "rec", "res", "rvos", "sot", "vos", "mot",
                               "mots", "vis")
TASK_READERS: dict[str, tuple[str, ...]] = {
    "detection": ("coco", "cocovid", "ytvis"),
    "instance_segmentation": ("coco", "cocovid", "ytvis"),
    "rec": ("refcoco",),
    "res": ("refcoco",),
    "rvos": ("cocovid", "ytvis"),
    "sot": ("lasot", "got10k", "cocovid", "ytvis"),
    "vos": ("davis", "youtube_vos"),
    "mot": ("motchallenge", "cocovid", "ytvis"),
    "mots": ("cocovid", "ytvis"),
    "vis": ("ytvis", "cocovid"),
}
ALL_READERS: tuple[str, ...] = ("coco", "refcoco", "cocovid", "ytvis", "motchallenge", "lasot", "got10k", "davis",
                                "youtube_vos")
_FOLDER_READERS = ("motchallenge", "lasot", "got10k", "davis", "youtube_vos")
# A training task that accepts each reader (DatasetSpec checks reader against task).
_SPEC_TASK = {"coco": "detection", "refcoco": "grounding", "cocovid": "vis", "ytvis": "vis", "motchallenge": "mot",
              "lasot": "sot", "got10k": "sot"}


@dataclass(frozen=True)
class DataSelection:
    """A dataset resolved from `--data` and the options.

    Attributes:
        reader: one of ALL_READERS.
        path: annotation file (coco, refcoco instances, cocovid, ytvis) or dataset root (the others).
        image_root: folder of the image files (file readers), else None.
        refs: refcoco refs file, else None.
        expressions: Ref-YouTube-VOS style meta_expressions.json for cocovid / ytvis, else None.
        categories: motchallenge class names (class id k + 1 = categories[k]).
        split: davis / youtube_vos split.
    """

    reader: str
    path: Path
    image_root: Path | None = None
    refs: Path | None = None
    expressions: Path | None = None
    categories: tuple[str, ...] = ()
    split: str = ""


def _json_reader(path: Path) -> str:
    """coco, cocovid, ytvis or refcoco (a refs list) from the JSON's structure."""
    content = load_json(path)
    if isinstance(content, list):
        return "refcoco"
    if isinstance(content, dict) and "videos" in content:
        videos = content["videos"]
        first = videos[0] if isinstance(videos, list) and videos else {}
        return "ytvis" if isinstance(first, dict) and "file_names" in first else "cocovid"
    if isinstance(content, dict) and "images" in content:
        return "coco"
    if isinstance(content, dict) and "videos" not in content and content:
        raise ValueError(f"{path}: a JSON object with keys {sorted(content)[:6]}; expected COCO instances (images, "
                         f"annotations, categories), COCO-video (videos, images), YouTube-VIS (videos with "
                         f"file_names) or a RefCOCO refs list")
    raise ValueError(f"{path}: empty or unrecognised JSON; expected COCO, COCO-video, YouTube-VIS or RefCOCO refs")


def _first_dir(candidates: list[Path]) -> Path | None:
    return next((c for c in candidates if c.is_dir()), None)


def _image_root(annotation: Path) -> Path | None:
    base = annotation.parent
    return _first_dir([base.parent / "images", base.parent / "frames", base / annotation.stem / "JPEGImages",
                       base / "JPEGImages", base / "images", base / "frames"])


def _annotation_in_folder(folder: Path, task: str) -> Path:
    """The annotation file of a dataset folder (annotations/instances.json, or the folder's single JSON)."""
    if task in ("rec", "res") and (folder / "annotations" / "refs.json").is_file():
        return folder / "annotations" / "refs.json"
    for candidate in (folder / "annotations" / "instances.json", folder / "instances.json"):
        if candidate.is_file():
            return candidate
    files = sorted(p for p in folder.glob("*.json") if p.name != "meta_expressions.json")
    if len(files) == 1:
        return files[0]
    raise ValueError(f"{folder}: no dataset found: expected annotations/instances.json, one annotation JSON, "
                     f"MOTChallenge sequences (*/seqinfo.ini), LaSOT / GOT-10k sequences (groundtruth.txt) or a "
                     f"DAVIS / YouTube-VOS root; found {len(files)} JSON files")


def _folder_reader(folder: Path, task: str) -> tuple[str, Path]:
    """(reader, path) of a dataset folder that is not a single annotation file."""
    if (folder / "seqinfo.ini").is_file():
        raise ValueError(f"{folder} is one MOTChallenge sequence; give the folder that holds the sequence folders "
                         f"({folder.parent})")
    for root in (folder, folder / "train"):
        if any(root.glob("*/seqinfo.ini")):
            return "motchallenge", root
    if (folder / "JPEGImages" / "480p").is_dir() and (folder / "ImageSets").is_dir():
        return "davis", folder
    if any((folder / split / "meta.json").is_file() for split in ("valid", "train", "val", "test")):
        return "youtube_vos", folder
    if any(folder.glob("*/*/groundtruth.txt")) and any(folder.glob("*/*/img")):
        return "lasot", folder
    for root in (folder, folder / "train"):
        if any(root.glob("*/groundtruth.txt")):
            return "got10k", root
    if (folder / "groundtruth.txt").is_file():
        raise ValueError(f"{folder} is one SOT sequence; give the dataset root that holds the sequence folders")
    annotation = _annotation_in_folder(folder, task)
    return _json_reader(annotation), annotation


def _split(reader: str, root: Path, split: str) -> str:
    if split:
        return split
    if reader == "davis":
        return "val" if (root / "ImageSets" / "2017" / "val.txt").is_file() else "train"
    return "valid" if (root / "valid" / "meta.json").is_file() else "train"


def resolve_data(data: str | Path, *, task: str, reader: str | None = None, image_root: str | Path | None = None,
                 refs: str | Path | None = None, expressions: str | Path | None = None,
                 categories: tuple[str, ...] = (), split: str = "") -> DataSelection:
    """Resolve `--data` for `task` (see the module table).

    Raises:
        ValueError: a missing path, an unknown layout, a reader the task cannot use, or a missing side file.
    """
    if task not in EVAL_TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {list(EVAL_TASKS)}")
    path = Path(data).expanduser()
    if not path.exists():
        raise ValueError(f"--data {path} does not exist")
    if reader is not None and reader not in ALL_READERS:
        raise ValueError(f"unknown reader {reader!r}; expected one of {list(ALL_READERS)}")
    if path.is_dir() and reader in _FOLDER_READERS:
        found = reader
    elif path.is_dir():
        found, path = _folder_reader(path, task) if reader is None else (reader, _annotation_in_folder(path, task))
    else:
        found = _json_reader(path)
    chosen = reader or found
    if chosen not in TASK_READERS[task]:
        raise ValueError(f"task {task} cannot be evaluated on {chosen} data ({path}); it needs one of "
                         f"{list(TASK_READERS[task])}")
    selection = DataSelection(reader=chosen, path=path, categories=tuple(categories))
    if chosen in ("coco", "refcoco", "cocovid", "ytvis"):
        selection = _with_side_files(selection, task=task, image_root=image_root, refs=refs, expressions=expressions)
    if chosen == "motchallenge" and not categories:
        raise ValueError(f"MOTChallenge data ({path}) names no classes: give --categories (class id k+1 is the k-th "
                         f"name, e.g. pedestrian for MOT17 class 1)")
    if chosen in ("davis", "youtube_vos"):
        selection = DataSelection(reader=chosen, path=path, split=_split(chosen, path, split))
    return selection


def _with_side_files(selection: DataSelection, *, task: str, image_root: str | Path | None, refs: str | Path | None,
                     expressions: str | Path | None) -> DataSelection:
    path = selection.path
    refs_path = Path(refs) if refs else None
    if selection.reader == "refcoco":
        if refs_path is None and _json_reader(path) == "refcoco":  # --data is the refs file itself
            refs_path, path = path, path.parent / "instances.json"
        elif refs_path is None:
            refs_path = path.parent / "refs.json"
        for needed, what in ((refs_path, "refs file"), (path, "instances file")):
            if not needed.is_file():
                raise ValueError(f"RefCOCO data: {what} {needed} does not exist (give --refs / the instances JSON)")
    expressions_path = Path(expressions) if expressions else None
    if task == "rvos" and expressions_path is None:
        expressions_path = path.parent / "meta_expressions.json"
        if not expressions_path.is_file():
            raise ValueError(f"task rvos needs referring expressions: no {expressions_path}; give --expressions")
    root = Path(image_root) if image_root else _image_root(path)
    if root is None or not root.is_dir():
        raise ValueError(f"no image folder for {path}: looked for images/, frames/ and JPEGImages/ beside it; give "
                         f"--image-root")
    return DataSelection(reader=selection.reader, path=path, image_root=root, refs=refs_path,
                         expressions=expressions_path, categories=selection.categories)


def open_data(selection: DataSelection, *, name: str = "eval") -> FrameStore:
    """Read the selected dataset into a training FrameStore (frames and per-frame targets).

    Raises:
        ValueError: missing or malformed files (the readers name the file and the record).
    """
    if selection.reader in ("davis", "youtube_vos"):
        sequences = (read_davis(selection.path, split=selection.split) if selection.reader == "davis"
                     else read_youtube_vos(selection.path, split=selection.split))
        if not sequences:
            raise ValueError(f"{selection.path}: no {selection.reader} sequence in split {selection.split!r}")
        return FrameStore(name, selection.path, [SOT_CATEGORY], [len(s.mask_paths) for s in sequences],
                          np.ones(len(sequences), dtype=bool), vos=sequences)
    task = "rvos" if selection.expressions is not None else _SPEC_TASK[selection.reader]
    spec = DatasetSpec(name=name, task=task, reader=selection.reader, path=str(selection.path),  # type: ignore[arg-type]
                       image_root=str(selection.image_root or ""), refs=str(selection.refs or ""),
                       expressions=str(selection.expressions or ""), categories=selection.categories)
    return open_store(spec)
