"""COCO-video JSON (BDD100K MOT/MOTS "cocofmt", TAO, UNINEXT's SOT/VOS conversions): reader and writer.

Format: COCO instances plus {"videos": [{"id", "name"}]}, each image carrying "video_id" and "frame_id" (0-based
position in the video) and each annotation an "instance_id" that persists across frames. The reader orders frames
by frame_id and groups annotations into tracks by instance_id, giving the same `VideoDataset` as the YTVIS reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uninext_core.data.coco import parse_instance
from uninext_core.data.errors import DataFormatError
from uninext_core.data.json_fields import (
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


def read_cocovid(path: str | Path, *, image_root: str | Path | None = None, check_images: bool = True) -> VideoDataset:
    """Read a COCO-video file into videos and tracks.

    Frames of one video must share one size and have distinct frame_ids; a track takes the category and
    attributes of its first annotation and must not change category.

    Raises:
        DataFormatError: malformed records, unknown ids, duplicate frame ids, size changes within a video,
            category changes within a track, an empty category list, or a missing frame file.
    """
    path = Path(path)
    data = load_json(path)
    categories = parse_categories(data, path=path)
    category_ids = {c.id for c in categories}
    videos: dict[int, VideoRecord] = {}
    for video_id, _, item in unique_records(data, "videos", path=path, singular="video"):
        videos[video_id] = VideoRecord(video_id, str(item.get("name", video_id)), [], 0, 0)
    frames_of: dict[int, list[tuple[int, dict[str, Any]]]] = {v: [] for v in videos}
    image_pos: dict[int, tuple[int, int]] = {}  # image id -> (video id, frame index) once sorted
    for _, record, item in unique_records(data, "images", path=path, singular="image"):
        video_id = known_id(item, "video_id", videos, among="videos", path=path, record=record)
        frame_id = field_of(item, "frame_id", int, path=path, record=record)
        field_of(item, "file_name", str, path=path, record=record)
        positive_int(item, "height", path=path, record=record)
        positive_int(item, "width", path=path, record=record)
        frames_of[video_id].append((frame_id, item))
    for video_id, frames in frames_of.items():
        video = videos[video_id]
        frames.sort(key=lambda f: f[0])
        for t, (frame_id, item) in enumerate(frames):
            record = f"image id {item['id']}"
            if t and frame_id == frames[t - 1][0]:
                raise DataFormatError(path, record, f"frame_id {frame_id} repeats in video {video_id}")
            if t == 0:
                video.height, video.width = item["height"], item["width"]
            elif (item["height"], item["width"]) != (video.height, video.width):
                raise DataFormatError(path, record, f"size {item['height']}×{item['width']} differs from the video's "
                                      f"{video.height}×{video.width}")
            if image_root is not None and check_images and not (Path(image_root) / item["file_name"]).is_file():
                raise DataFormatError(path, record, f"image file {Path(image_root) / item['file_name']} not found")
            video.file_names.append(item["file_name"])
            image_pos[item["id"]] = (video_id, t)
    tracks: dict[tuple[int, int], VideoTrack] = {}
    for _, record, item in unique_records(data, "annotations", path=path, singular="annotation"):
        image_id = known_id(item, "image_id", image_pos, among="images", path=path, record=record)
        video_id, t = image_pos[image_id]
        video = videos[video_id]
        instance_id = field_of(item, "instance_id", int, path=path, record=record)
        ann = parse_instance(item, height=video.height, width=video.width, path=path, record=record,
                             category_ids=category_ids, image_label=f"image {image_id}")
        key = (video_id, instance_id)
        if key not in tracks:
            n = len(video.file_names)
            tracks[key] = VideoTrack(instance_id, ann.category_id, [None] * n, [None] * n, ann.iscrowd,
                                     ann.attributes)
            video.tracks.append(tracks[key])
        track = tracks[key]
        if track.category_id != ann.category_id:
            raise DataFormatError(path, record, f"instance {instance_id} changes category from {track.category_id} "
                                  f"to {ann.category_id}")
        if track.boxes_xyxy_px[t] is not None:
            raise DataFormatError(path, record, f"instance {instance_id} appears twice on image {image_id}")
        track.boxes_xyxy_px[t] = ann.box_xyxy_px
        track.segmentations[t] = ann.segmentation
    return VideoDataset(categories, list(videos.values()), Path(image_root) if image_root is not None else None)


def cocovid_to_json(dataset: VideoDataset) -> dict[str, Any]:
    """The dataset as a COCO-video object; image and annotation ids are numbered from 1 in video/frame order."""
    videos, images, annotations = [], [], []
    for v in dataset.videos:
        videos.append({"id": v.id, "name": v.name})
        first_image_id = len(images) + 1
        for t, name in enumerate(v.file_names):
            images.append({"id": first_image_id + t, "video_id": v.id, "frame_id": t, "file_name": name,
                           "height": v.height, "width": v.width})
        for t in range(len(v.file_names)):
            for track in v.tracks:
                box, seg = track.boxes_xyxy_px[t], track.segmentations[t]
                if box is None:
                    continue
                x, y, w, h = box_to_xywh(box)
                item: dict[str, Any] = {"id": len(annotations) + 1, "image_id": first_image_id + t,
                                        "category_id": track.category_id, "instance_id": track.id,
                                        "bbox": [x, y, w, h], "area": float(seg.area()) if seg is not None else w * h,
                                        "iscrowd": int(track.iscrowd)}
                if seg is not None:
                    item["segmentation"] = seg.to_coco()
                if track.attributes:
                    item["attributes"] = track.attributes
                annotations.append(item)
    return {"videos": videos, "images": images, "annotations": annotations,
            "categories": categories_to_json(dataset.categories)}


def write_cocovid(dataset: VideoDataset, path: str | Path) -> None:
    """Write a COCO-video file that `read_cocovid` reads back to an equal dataset (absent frames: no annotation)."""
    if not dataset.categories:
        raise ValueError(f"cannot write {path}: empty category list")
    for v in dataset.videos:
        for track in v.tracks:
            for t, (box, seg) in enumerate(zip(track.boxes_xyxy_px, track.segmentations, strict=True)):
                if box is None and seg is not None:
                    raise ValueError(f"video {v.id} track {track.id} frame {t}: a mask without a box cannot be "
                                     "written as COCO-video")
    write_json(cocovid_to_json(dataset), path)
