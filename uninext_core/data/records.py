"""Plain records every reader returns and every writer takes.

Boxes are (x1, y1, x2, y2) in pixels of the original image (`box_xyxy_px`); files that store (x, y, w, h) are
converted at the reader/writer boundary. Masks are `RleMask` or `PolygonMask` (see `segmentation`). Ids are the
ones in the files: COCO annotation ids, track/instance ids for videos (persistent across frames).

`attributes` carries extra per-object fields a file may hold beyond its format (the synthetic world stores the
scene attributes there: kind, colour, size, texture, centre); readers keep them as given, writers write them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uninext_core.data.segmentation import Segmentation

BoxXyxy = tuple[float, float, float, float]


@dataclass(frozen=True)
class Category:
    """One category: the id used in annotation files and its name."""

    id: int
    name: str
    supercategory: str = ""


@dataclass
class InstanceAnnotation:
    """One object in one image (COCO `annotations` entry)."""

    id: int
    category_id: int
    box_xyxy_px: BoxXyxy
    segmentation: Segmentation | None = None
    iscrowd: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImageRecord:
    """One image and its annotations. `file_name` is relative to the dataset's image root."""

    id: int
    file_name: str
    height: int
    width: int
    annotations: list[InstanceAnnotation] = field(default_factory=list)


@dataclass
class DetectionDataset:
    """A COCO instances file: categories and images (with their annotations); `image_root` holds the files."""

    categories: list[Category]
    images: list[ImageRecord]
    image_root: Path | None = None


@dataclass
class RefExpression:
    """One referred object (RefCOCO `refs` entry): several sentences that each identify annotation `ann_id`."""

    ref_id: int
    image_id: int
    ann_id: int
    category_id: int
    sentences: list[str]
    split: str = "train"


@dataclass
class ReferringDataset:
    """RefCOCO-style data: the COCO instances it points into plus the referring expressions."""

    detection: DetectionDataset
    refs: list[RefExpression]


@dataclass
class VideoTrack:
    """One object through a video: per-frame box and mask, None on frames where it is absent.

    `boxes_xyxy_px` and `segmentations` have one entry per frame of the video.
    """

    id: int
    category_id: int
    boxes_xyxy_px: list[BoxXyxy | None]
    segmentations: list[Segmentation | None]
    iscrowd: bool = False
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class VideoRecord:
    """One video: frame files (relative to the image root, in temporal order) and its tracks."""

    id: int
    name: str
    file_names: list[str]
    height: int
    width: int
    tracks: list[VideoTrack] = field(default_factory=list)


@dataclass(frozen=True)
class VideoExpression:
    """A referring expression for one track of one video (Ref-YouTube-VOS `meta_expressions`)."""

    video_name: str
    expression_id: str
    text: str
    track_id: int


@dataclass
class VideoDataset:
    """YouTube-VIS or COCO-video data; `expressions` is filled by the R-VOS reader."""

    categories: list[Category]
    videos: list[VideoRecord]
    image_root: Path | None = None
    expressions: list[VideoExpression] = field(default_factory=list)


@dataclass
class MotSequence:
    """One MOTChallenge sequence (`seqinfo.ini` + `gt/gt.txt`), rows in file order.

    Attributes:
        frames: (N,) int64, 1-based frame numbers.
        track_ids: (N,) int64.
        boxes_xyxy_px: (N, 4) float64.
        consider: (N,) bool, the `conf` column of ground truth (0 = ignore this row).
        class_ids: (N,) int64 (MOT17: 1 pedestrian ... 12 occluder full).
        visibility: (N,) float64 in [0, 1].
    """

    name: str
    folder: Path
    image_dir: str
    image_ext: str
    frame_rate: float
    length: int
    width: int
    height: int
    frames: np.ndarray
    track_ids: np.ndarray
    boxes_xyxy_px: np.ndarray
    consider: np.ndarray
    class_ids: np.ndarray
    visibility: np.ndarray

    def frame_path(self, frame: int) -> Path:
        """Image file of a 1-based frame number (MOTChallenge names frames 000001.jpg ...)."""
        return self.folder / self.image_dir / f"{frame:06d}{self.image_ext}"


@dataclass
class SotSequence:
    """One single-object tracking sequence (LaSOT or GOT-10k layout).

    Attributes:
        frame_paths: absolute image paths in temporal order.
        boxes_xyxy_px: (N, 4) float64; rows of absent frames are whatever the file holds (often zeros).
        visible: (N,) bool, False where the target is absent (occluded, out of view or a degenerate box).
        out_of_view: (N,) bool, True where the target has left the frame (LaSOT `out_of_view.txt`, GOT-10k
            `cut_by_image.label`); the other invisible frames are occlusions.
        category: LaSOT class folder, or GOT-10k `object_class`, "" when unknown.
        expression: LaSOT `nlp.txt` sentence, "" when absent.
    """

    name: str
    frame_paths: list[Path]
    boxes_xyxy_px: np.ndarray
    visible: np.ndarray
    out_of_view: np.ndarray
    category: str = ""
    expression: str = ""


@dataclass
class VosSequence:
    """One video object segmentation sequence (DAVIS or YouTube-VOS layout).

    Attributes:
        frame_paths: absolute JPEG paths in temporal order.
        mask_paths: frame index → palette PNG of that frame (every frame for DAVIS; every 5th for YouTube-VOS train).
        objects: object id (the PNG's palette index, 1..255) → category name ("" when the layout has none).
        first_frames: object id → index of the first frame whose mask shows it.
    """

    name: str
    frame_paths: list[Path]
    mask_paths: dict[int, Path]
    objects: dict[int, str]
    first_frames: dict[int, int] = field(default_factory=dict)
