"""Options of a synthetic export and what it returns (shared by the image and video task writers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from uninext_core.data.synthetic.world import TASKS

MaskFormat = Literal["rle", "polygon"]


@dataclass(frozen=True)
class ExportOptions:
    """What to generate.

    Attributes:
        out: output folder (created).
        task: one of `world.TASKS`.
        count: number of images (detection, referring) or videos (the other tasks).
        seed: world seed.
        size: image side in pixels (square frames).
        difficulty: "easy", "medium" or "hard".
        num_frames: frames per video.
        mask_format: COCO-family masks as compressed RLE or polygons (instances with holes stay RLE).
        sot_layout: "lasot" or "got10k"; vos_layout: "davis" or "youtube_vos".
        max_expressions: expressions per object (referring) or per track (video, sot).
        split: RefCOCO split name written into refs.
        workers: processes used to make items.
        jpeg_quality: JPEG quality of every frame.
    """

    out: Path
    task: str
    count: int
    seed: int = 0
    size: int = 320
    difficulty: str = "medium"
    num_frames: int = 24
    mask_format: MaskFormat = "rle"
    sot_layout: Literal["lasot", "got10k"] = "lasot"
    vos_layout: Literal["davis", "youtube_vos"] = "davis"
    max_expressions: int = 3
    split: str = "train"
    workers: int = 1
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.count < 1 or self.size < 32 or self.num_frames < 2 or self.workers < 1:
            raise ValueError(f"need count ≥ 1, size ≥ 32, num_frames ≥ 2, workers ≥ 1; got count={self.count}, "
                             f"size={self.size}, num_frames={self.num_frames}, workers={self.workers}")
        if self.mask_format not in ("rle", "polygon"):
            raise ValueError(f"mask_format must be 'rle' or 'polygon', got {self.mask_format!r}")


class ExportResult(NamedTuple):
    """What was written: the main annotation file(s) and the records exactly as they were written.

    `records` is a DetectionDataset (detection), ReferringDataset (referring), VideoDataset (video, vis),
    list[MotSequence] (mot), list[SotSequence] (sot) or list[VosSequence] (vos).
    """

    task: str
    files: tuple[Path, ...]
    records: Any
