"""Instance masks as COCO run-length encoding (the form uninext_msgs/RleMask carries).

pycocotools does the encoding; this module only fixes the conventions (bool H×W in, compressed ASCII counts out) so
the session, the ROS conversions, the rosbag tools and the evaluators agree byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


@dataclass(frozen=True)
class Rle:
    """COCO compressed RLE (column-major runs): `counts` is the ASCII string pycocotools writes, an empty string
    meaning an empty mask; size is (height, width). The one mask form shared by annotation files, the session's
    output, the ROS message and the evaluators."""

    height: int
    width: int
    counts: str

    def _coco(self) -> dict[str, Any]:
        return {"size": [self.height, self.width], "counts": self.counts.encode("ascii")}

    def to_coco(self) -> dict[str, Any]:
        """The JSON form pycocotools and COCO files use: {"size": [h, w], "counts": str}."""
        return {"size": [self.height, self.width], "counts": self.counts}

    def decode(self) -> np.ndarray:
        """(H, W) bool mask."""
        return decode_rle(self)

    def area(self) -> int:
        """Number of foreground pixels."""
        return int(mask_utils.area(self._coco())) if self.counts else 0

    def box_xyxy_px(self) -> tuple[float, float, float, float]:
        """Tight box (x1, y1, x2, y2) in pixels, x2/y2 exclusive; (0, 0, 0, 0) for an empty mask."""
        if not self.counts:
            return (0.0, 0.0, 0.0, 0.0)
        x, y, w, h = (float(v) for v in mask_utils.toBbox(self._coco()))
        return (x, y, x + w, y + h)

    def to_rle(self) -> Rle:
        """Itself (every segmentation form answers `to_rle`)."""
        return self


def encode_masks(masks: np.ndarray) -> list[Rle]:
    """Encode N masks at once.

    Args:
        masks: (N, H, W) bool (or 0/1 uint8) masks.

    Returns:
        N RLEs in input order.
    """
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    return [encode_mask(mask) for mask in masks]


def encode_mask(mask: np.ndarray) -> Rle:
    """Encode one (H, W) bool mask as COCO compressed RLE.

    The runs are found inside the mask's bounding region only (cost ∝ object area, not frame area, which matters
    for 20 objects on a 1280×720 frame: pycocotools.mask.encode needs the whole frame in Fortran order); pycocotools
    then turns the run lengths into its compressed string, so the result is byte-identical to
    `pycocotools.mask.encode(np.asfortranarray(mask))`.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    height, width = mask.shape
    mask = mask.astype(bool, copy=False)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return _compress([height * width], height, width)
    y0, y1 = rows[0], rows[-1] + 1
    cols = np.flatnonzero(mask[y0:y1].any(axis=0))  # only the rows that hold the mask
    x0, x1 = cols[0], cols[-1] + 1
    crop_height = y1 - y0
    # Column-major crop with one zero row above and below each column, so no run crosses a column boundary.
    padded = np.zeros((x1 - x0, crop_height + 2), dtype=np.int8)
    padded[:, 1:-1] = mask[y0:y1, x0:x1].T
    flat = padded.ravel()
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    column, row = np.divmod(change, crop_height + 2)
    transitions = (x0 + column) * height + (y0 + row - 1)
    # A run ending at the bottom of one column and one starting at the top of the next meet at the same index.
    touching = np.flatnonzero(transitions[1:] == transitions[:-1])
    if touching.size:
        transitions = np.delete(transitions, np.concatenate([touching, touching + 1]))
    end = [] if transitions[-1] == height * width else [height * width]  # a run reaching the last pixel ends there
    bounds = np.concatenate([[0], transitions, end])
    return _compress(np.diff(bounds).tolist(), height, width)


def _compress(counts: list[int], height: int, width: int) -> Rle:
    encoded = mask_utils.frPyObjects({"counts": counts, "size": [height, width]}, height, width)
    return Rle(height, width, encoded["counts"].decode("ascii"))


def decode_rle(rle: Rle) -> np.ndarray:
    """(H, W) bool mask of one RLE; an empty `counts` string decodes to an all-False mask."""
    if not rle.counts:
        return np.zeros((rle.height, rle.width), dtype=bool)
    return mask_utils.decode(rle._coco()).astype(bool)
