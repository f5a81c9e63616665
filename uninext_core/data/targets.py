"""Per-frame training targets: the arrays the transforms keep consistent with the image.

Readers give records (files' view); `Target` is the model's view of one frame: (N, 4) boxes_xyxy_px, optional
(N, H, W) bool masks, (N,) instance ids (annotation ids for stills, track ids for videos), (N,) category ids, and
at most one referring expression for the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from uninext_core.data.records import ImageRecord, MotSequence, SotSequence, VideoRecord


@dataclass
class Target:
    """Annotations of one frame.

    Attributes:
        boxes_xyxy_px: (N, 4) float32, pixels of the frame, x2 > x1 and y2 > y1.
        masks: (N, H, W) bool, or None for box-only data.
        ids: (N,) int64 instance ids (persistent across the frames of a video).
        labels: (N,) int64 category ids.
        expression: the referring expression of this sample, or None.
    """

    boxes_xyxy_px: np.ndarray
    masks: np.ndarray | None
    ids: np.ndarray
    labels: np.ndarray
    expression: str | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.boxes_xyxy_px.shape != (n, 4) or self.labels.shape != (n,):
            raise ValueError(f"boxes must be (N, 4) and labels (N,) for N={n} ids, got {self.boxes_xyxy_px.shape} "
                             f"and {self.labels.shape}")
        if self.masks is not None and (self.masks.ndim != 3 or self.masks.shape[0] != n):
            raise ValueError(f"masks must be (N, H, W) with N={n}, got {self.masks.shape}")

    def __len__(self) -> int:
        return len(self.ids)

    def select(self, keep: np.ndarray) -> Target:
        """The instances where `keep` (bool (N,) or indices) holds."""
        return replace(self, boxes_xyxy_px=self.boxes_xyxy_px[keep], ids=self.ids[keep], labels=self.labels[keep],
                       masks=None if self.masks is None else self.masks[keep])

    @classmethod
    def empty(cls, height: int, width: int, *, with_masks: bool = True) -> Target:
        """No instances (masks (0, H, W) when `with_masks`)."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0, height, width), bool) if with_masks else None,
                   np.zeros(0, np.int64), np.zeros(0, np.int64))


def _build(boxes: list, masks: list | None, ids: list, labels: list, height: int, width: int) -> Target:
    mask_array = None
    if masks is not None:
        mask_array = np.stack(masks).astype(bool) if masks else np.zeros((0, height, width), bool)
    return Target(np.array(boxes, np.float32).reshape(-1, 4), mask_array, np.array(ids, np.int64),
                  np.array(labels, np.int64))


def target_from_image(record: ImageRecord, *, with_masks: bool = True, include_crowd: bool = False) -> Target:
    """Target of a still image (ids = annotation ids); crowd regions are left out unless `include_crowd`.

    With `with_masks`, an annotation without a segmentation gets an all-False mask.
    """
    anns = [a for a in record.annotations if include_crowd or not a.iscrowd]
    masks = None
    if with_masks:
        masks = [a.segmentation.decode() if a.segmentation is not None
                 else np.zeros((record.height, record.width), bool) for a in anns]
    return _build([a.box_xyxy_px for a in anns], masks, [a.id for a in anns], [a.category_id for a in anns],
                  record.height, record.width)


def target_from_video_frame(video: VideoRecord, t: int, *, with_masks: bool = True) -> Target:
    """Target of frame t of a video (ids = track ids; absent tracks left out)."""
    tracks = [tr for tr in video.tracks if tr.boxes_xyxy_px[t] is not None]
    masks = None
    if with_masks:
        masks = [tr.segmentations[t].decode() if tr.segmentations[t] is not None
                 else np.zeros((video.height, video.width), bool) for tr in tracks]
    return _build([tr.boxes_xyxy_px[t] for tr in tracks], masks, [tr.id for tr in tracks],
                  [tr.category_id for tr in tracks], video.height, video.width)


def target_from_mot(seq: MotSequence, frame: int) -> Target:
    """Box-only target of a 1-based MOT frame, rows with conf 0 (ignore) left out."""
    rows = np.flatnonzero((seq.frames == frame) & seq.consider)
    return Target(seq.boxes_xyxy_px[rows].astype(np.float32), None, seq.track_ids[rows].copy(),
                  seq.class_ids[rows].copy())


def target_from_sot(seq: SotSequence, t: int, *, object_id: int = 1, label: int = 1) -> Target:
    """Box-only target of frame t of a SOT sequence: the one target when visible, else empty."""
    if not seq.visible[t]:
        return Target(np.zeros((0, 4), np.float32), None, np.zeros(0, np.int64), np.zeros(0, np.int64))
    return Target(seq.boxes_xyxy_px[t:t + 1].astype(np.float32), None, np.array([object_id], np.int64),
                  np.array([label], np.int64))


def target_from_label_map(label_map: np.ndarray, object_ids: list[int], *, label: int = 1) -> Target:
    """Target of a VOS palette label map: one mask per listed object that shows on this frame (box from mask)."""
    boxes, masks, ids = [], [], []
    for k in object_ids:
        mask = label_map == k
        if not mask.any():
            continue
        rows, cols = np.nonzero(mask)
        boxes.append((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1))
        masks.append(mask)
        ids.append(k)
    return _build(boxes, masks, ids, [label] * len(ids), *label_map.shape)
