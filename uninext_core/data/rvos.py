"""Ref-YouTube-VOS `meta_expressions.json` (referring video object segmentation): reader and writer.

Format: {"videos": {"<video name>": {"expressions": {"<exp id>": {"exp": str, "obj_id": "<id>"}},
"frames": ["00000", ...]}}}. `obj_id` is the object's palette index in the Annotations PNGs (or, for the
synthetic world's COCO-video files, its instance_id).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uninext_core.data.errors import DataFormatError
from uninext_core.data.json_fields import field_of, load_json, write_json
from uninext_core.data.records import VideoDataset, VideoExpression


def read_rvos_expressions(path: str | Path) -> list[VideoExpression]:
    """Read every expression, in file order (video, then expression).

    Raises:
        DataFormatError: malformed structure, an empty expression or a non-integer obj_id.
    """
    path = Path(path)
    data = load_json(path)
    videos = field_of(data, "videos", dict, path=path, record="videos")
    out: list[VideoExpression] = []
    for name, video in videos.items():
        expressions = field_of(video, "expressions", dict, path=path, record=f"video {name}")
        for exp_id, item in expressions.items():
            record = f"video {name} expression {exp_id}"
            text = field_of(item, "exp", str, path=path, record=record)
            if not text.strip():
                raise DataFormatError(path, record, "empty expression")
            obj_id = field_of(item, "obj_id", (str, int), path=path, record=record)
            try:
                track_id = int(obj_id)
            except ValueError:
                raise DataFormatError(path, record, f"obj_id must be an integer, got {obj_id!r}") from None
            out.append(VideoExpression(str(name), str(exp_id), text, track_id))
    return out


def attach_expressions(dataset: VideoDataset, expressions: list[VideoExpression], *, source: str | Path) -> None:
    """Set `dataset.expressions` after checking every expression names an existing video and track.

    Raises:
        DataFormatError (naming `source`): an unknown video name or track id.
    """
    tracks = {v.name: {t.id for t in v.tracks} for v in dataset.videos}
    for e in expressions:
        record = f"video {e.video_name} expression {e.expression_id}"
        if e.video_name not in tracks:
            raise DataFormatError(source, record, f"video {e.video_name!r} is not in the video annotations")
        if e.track_id not in tracks[e.video_name]:
            raise DataFormatError(source, record, f"obj_id {e.track_id} is not a track of video {e.video_name!r}")
    dataset.expressions = list(expressions)


def rvos_to_json(dataset: VideoDataset) -> dict[str, Any]:
    """The dataset's expressions in meta_expressions form (frames = file stems)."""
    videos: dict[str, Any] = {}
    for v in dataset.videos:
        videos[v.name] = {"expressions": {}, "frames": [Path(f).stem for f in v.file_names]}
    for e in dataset.expressions:
        videos[e.video_name]["expressions"][e.expression_id] = {"exp": e.text, "obj_id": str(e.track_id)}
    return {"videos": videos}


def write_rvos_expressions(dataset: VideoDataset, path: str | Path) -> None:
    """Write meta_expressions.json for the dataset's expressions."""
    write_json(rvos_to_json(dataset), path)
