"""YouTube-VIS JSON (also OVIS and the COCO-as-one-frame-video files): reader and writer.

Format (youtube-vos.org, VIS track): {"videos": [{"id", "width", "height", "length", "file_names": [...]}],
"annotations": [{"id", "video_id", "category_id", "iscrowd", "segmentations": [RLE | null per frame],
"bboxes": [[x, y, w, h] | null per frame], "areas": [number | null per frame]}], "categories": [{"id", "name"}]}.
An annotation is one track; its id is the track id. Official files use uncompressed RLE; both RLE forms are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uninext_core.data.errors import DataFormatError
from uninext_core.data.json_fields import (
    box_from_xywh,
    box_to_xywh,
    categories_to_json,
    field_of,
    known_id,
    load_json,
    parse_categories,
    positive_int,
    unique_records,
    write_json,
)
from uninext_core.data.records import VideoDataset, VideoRecord, VideoTrack
from uninext_core.data.segmentation import segmentation_from_coco


def read_ytvis(path: str | Path, *, image_root: str | Path | None = None, check_images: bool = True) -> VideoDataset:
    """Read a YouTube-VIS file.

    Raises:
        DataFormatError: malformed records, per-frame lists whose length differs from the video's, unknown
            video/category ids, an empty category list, an RLE of the wrong size, or a missing frame file.
    """
    path = Path(path)
    data = load_json(path)
    categories = parse_categories(data, path=path)
    category_ids = {c.id for c in categories}
    videos: list[VideoRecord] = []
    by_id: dict[int, VideoRecord] = {}
    for video_id, record, item in unique_records(data, "videos", path=path, singular="video"):
        file_names = field_of(item, "file_names", list, path=path, record=record)
        if not file_names or not all(isinstance(f, str) for f in file_names):
            raise DataFormatError(path, record, "file_names must be a non-empty list of strings")
        length = item.get("length", len(file_names))
        if length != len(file_names):
            raise DataFormatError(path, record, f"length {length} but {len(file_names)} file_names")
        if image_root is not None and check_images:
            for name in file_names:
                if not (Path(image_root) / name).is_file():
                    raise DataFormatError(path, record, f"frame file {Path(image_root) / name} not found")
        name = item.get("name", file_names[0].split("/")[0])
        height = positive_int(item, "height", path=path, record=record)
        width = positive_int(item, "width", path=path, record=record)
        video = VideoRecord(video_id, str(name), list(file_names), height, width)
        by_id[video_id] = video
        videos.append(video)
    for track_id, record, item in unique_records(data, "annotations", path=path, singular="annotation"):
        video_id = known_id(item, "video_id", by_id, among="videos", path=path, record=record)
        video = by_id[video_id]
        category_id = known_id(item, "category_id", category_ids, among="categories", path=path, record=record)
        n = len(video.file_names)
        segs_json = item.get("segmentations", [None] * n)
        boxes_json = field_of(item, "bboxes", list, path=path, record=record)
        if not isinstance(segs_json, list) or len(segs_json) != n or len(boxes_json) != n:
            got = len(segs_json) if isinstance(segs_json, list) else repr(segs_json)
            raise DataFormatError(path, record, f"segmentations and bboxes need one entry per frame ({n}), got "
                                  f"{got} and {len(boxes_json)}")
        boxes = []
        segmentations = []
        for t, (seg, box) in enumerate(zip(segs_json, boxes_json, strict=True)):
            frame_record = f"{record} frame {t}"
            boxes.append(None if box is None else box_from_xywh(box, path=path, record=frame_record))
            segmentations.append(None if seg is None else segmentation_from_coco(
                seg, height=video.height, width=video.width, path=path, record=frame_record,
                image_label=f"video {video_id}"))
        attributes = item.get("attributes", {})
        if not isinstance(attributes, dict):
            raise DataFormatError(path, record, f"attributes must be an object, got {attributes!r:.60}")
        video.tracks.append(VideoTrack(track_id, category_id, boxes, segmentations, bool(item.get("iscrowd", 0)),
                                       dict(attributes)))
    return VideoDataset(categories, videos, Path(image_root) if image_root is not None else None)


def ytvis_to_json(dataset: VideoDataset) -> dict[str, Any]:
    """The dataset as a YouTube-VIS object (compressed RLE masks)."""
    videos = [{"id": v.id, "name": v.name, "width": v.width, "height": v.height, "length": len(v.file_names),
               "file_names": v.file_names} for v in dataset.videos]
    annotations = []
    for v in dataset.videos:
        for track in v.tracks:
            item: dict[str, Any] = {
                "id": track.id, "video_id": v.id, "category_id": track.category_id, "iscrowd": int(track.iscrowd),
                "height": v.height, "width": v.width, "length": len(v.file_names),
                "segmentations": [None if s is None else s.to_coco() for s in track.segmentations],
                "bboxes": [None if b is None else box_to_xywh(b) for b in track.boxes_xyxy_px],
                "areas": [None if s is None else float(s.area()) for s in track.segmentations],
            }
            if track.attributes:
                item["attributes"] = track.attributes
            annotations.append(item)
    return {"videos": videos, "annotations": annotations, "categories": categories_to_json(dataset.categories)}


def write_ytvis(dataset: VideoDataset, path: str | Path) -> None:
    """Write a YouTube-VIS file that `read_ytvis` reads back to an equal dataset."""
    if not dataset.categories:
        raise ValueError(f"cannot write {path}: empty category list")
    write_json(ytvis_to_json(dataset), path)
