"""Loading training/evaluation samples: a frame from disk together with its `Target`.

The image size on disk must match the record; a missing, undecodable or differently sized image raises
`DataFormatError` naming the annotation file and the record.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from uninext_core.data.image_io import read_image_rgb
from uninext_core.data.records import DetectionDataset, VideoDataset
from uninext_core.data.targets import Target, target_from_image, target_from_video_frame


class Sample(NamedTuple):
    """One frame: (H, W, 3) uint8 RGB image and its target."""

    image: np.ndarray
    target: Target


def _root(root: Path | None, source: str | Path) -> Path:
    if root is None:
        raise ValueError(f"dataset read from {source} has no image_root; pass image_root to the reader")
    return root


def load_image_sample(dataset: DetectionDataset, index: int, *, source: str | Path,
                      with_masks: bool = True) -> Sample:
    """Image `index` of a COCO-style dataset and its target (crowd regions left out).

    Args:
        dataset: from `read_coco_instances` / `read_refcoco` (with an image_root).
        index: position in `dataset.images`.
        source: the annotation file, named in errors.
    """
    record = dataset.images[index]
    path = _root(dataset.image_root, source) / record.file_name
    image = read_image_rgb(path, source=source, record=f"image id {record.id}",
                           expected_hw=(record.height, record.width))
    return Sample(image, target_from_image(record, with_masks=with_masks))


def load_video_sample(dataset: VideoDataset, video_index: int, frame: int, *, source: str | Path,
                      with_masks: bool = True) -> Sample:
    """Frame `frame` of video `video_index` of a YTVIS / COCO-video dataset and its target (ids = track ids)."""
    video = dataset.videos[video_index]
    path = _root(dataset.image_root, source) / video.file_names[frame]
    image = read_image_rgb(path, source=source, record=f"video id {video.id} frame {frame}",
                           expected_hw=(video.height, video.width))
    return Sample(image, target_from_video_frame(video, frame, with_masks=with_masks))
