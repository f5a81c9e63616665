"""Instance masks as stored in annotation files: COCO compressed RLE or COCO polygons.

pycocotools does all encoding, decoding, areas and boxes; the RLE form is uninext_core.masks.Rle (imported here as
`RleMask`); this module adds `PolygonMask`, parses the three JSON spellings COCO uses (polygon lists, uncompressed RLE
with integer counts, compressed RLE with a string) and checks them against the image size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from uninext_core.data.errors import DataFormatError
from uninext_core.masks import Rle as RleMask


@dataclass(frozen=True)
class PolygonMask:
    """COCO polygons: each polygon is a flat (x0, y0, x1, y1, ...) tuple in pixel coordinates, at least 3 points."""

    height: int
    width: int
    polygons: tuple[tuple[float, ...], ...]

    def to_rle(self) -> RleMask:
        """The polygons rasterised by pycocotools and merged into one RLE."""
        parts = mask_utils.frPyObjects([list(p) for p in self.polygons], self.height, self.width)
        merged = mask_utils.merge(parts)
        return RleMask(self.height, self.width, merged["counts"].decode("ascii"))

    def decode(self) -> np.ndarray:
        """(H, W) bool mask."""
        return self.to_rle().decode()

    def area(self) -> int:
        """Number of foreground pixels of the rasterised polygons."""
        return self.to_rle().area()

    def box_xyxy_px(self) -> tuple[float, float, float, float]:
        """Tight box of the rasterised polygons, (x1, y1, x2, y2) in pixels."""
        return self.to_rle().box_xyxy_px()

    def to_coco(self) -> list[list[float]]:
        """JSON form: a list of flat coordinate lists."""
        return [list(p) for p in self.polygons]


Segmentation = RleMask | PolygonMask


def mask_to_polygons(mask: np.ndarray) -> PolygonMask | None:
    """Outer contours of a mask as COCO polygons (pixel-corner coordinates), or None when it cannot be a polygon.

    None is returned for an empty mask and for a mask with holes (COCO polygons cannot express holes; such
    instances are written as RLE, as COCO itself does).

    Args:
        mask: (H, W) bool mask.
    """
    mask_u8 = mask.astype(np.uint8)
    contours, hierarchy = cv2.findContours(mask_u8, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours or hierarchy is None:
        return None
    if np.any(hierarchy[0][:, 3] >= 0):  # a contour with a parent is a hole
        return None
    polygons = []
    for contour in contours:
        points = contour.reshape(-1, 2).astype(np.float64)
        if len(points) < 3:
            # Lines and single pixels: use the pixel's corners so the polygon has an area.
            x1, y1 = points.min(axis=0)
            x2, y2 = points.max(axis=0) + 1
            points = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=np.float64)
        else:
            points = points + 0.5  # contour runs through pixel centres; pycocotools samples at pixel centres
        polygons.append(tuple(float(v) for v in points.reshape(-1)))
    return PolygonMask(int(mask.shape[0]), int(mask.shape[1]), tuple(polygons))


def compressed_counts(counts: str) -> list[int] | None:
    """Run lengths of a COCO compressed RLE string, or None when the string is malformed.

    The format (pycocotools `rleFrString`): each run is a little-endian sequence of 5-bit groups stored as
    characters 48 + value, bit 0x20 meaning "another group follows" and bit 0x10 of the last group the sign; from
    the third run on, the value is a difference to the run two places earlier.
    """
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                return None
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                return None
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def segmentation_from_coco(
    obj: Any, *, height: int, width: int, path: str | Path, record: str, image_label: str = "the image"
) -> Segmentation:
    """Parse one COCO `segmentation` value and check it against the image size.

    Args:
        obj: a list of polygons, or a dict {"size": [h, w], "counts": str | list[int]}.
        height, width: the image size the mask must have.
        path, record: where the value came from, for the error message.
        image_label: how the error names the image ("image 3").

    Raises:
        DataFormatError: malformed value, or an RLE whose size differs from (height, width).
    """
    if isinstance(obj, list):
        polygons = []
        for k, poly in enumerate(obj):
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                raise DataFormatError(path, record, f"polygon {k} must be a flat list of ≥ 3 (x, y) pairs, got {poly}")
            if not all(isinstance(v, int | float) for v in poly):
                raise DataFormatError(path, record, f"polygon {k} holds a non-number: {poly!r}")
            polygons.append(tuple(float(v) for v in poly))
        if not polygons:
            raise DataFormatError(path, record, "segmentation is an empty polygon list")
        return PolygonMask(height, width, tuple(polygons))
    if isinstance(obj, dict) and "size" in obj and "counts" in obj:
        size = obj["size"]
        if list(size) != [height, width]:
            raise DataFormatError(
                path, record, f"segmentation RLE size {list(size)} does not match {image_label} ({height}×{width})"
            )
        counts = obj["counts"]
        if isinstance(counts, list):  # uncompressed RLE (COCO crowd regions)
            if sum(counts) != height * width or any((not isinstance(c, int)) or c < 0 for c in counts):
                raise DataFormatError(
                    path, record, f"uncompressed RLE counts must be ≥ 0 integers summing to {height * width}"
                )
            compressed = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
            return RleMask(height, width, compressed["counts"].decode("ascii"))
        if isinstance(counts, str):
            runs = compressed_counts(counts)
            if runs is None or any(r < 0 for r in runs) or sum(runs) != height * width:
                raise DataFormatError(path, record, f"RLE counts string {counts[:40]!r} does not decode to runs "
                                      f"summing to {height}×{width} pixels")
            return RleMask(height, width, counts)
        raise DataFormatError(path, record, f"RLE counts must be a string or a list, got {type(counts).__name__}")
    raise DataFormatError(path, record, f"segmentation must be a polygon list or an RLE dict, got {obj!r:.80}")
