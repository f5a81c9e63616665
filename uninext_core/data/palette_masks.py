"""Palette PNG label maps (DAVIS, YouTube-VOS, Ref-YouTube-VOS annotations).

A mask file is an 8-bit PNG in palette mode ("P"): pixel value k > 0 is object k, 0 is background (DAVIS uses 255
for "void" in some releases). The palette only colours the file; the indices are the labels. Grayscale ("L") files
are read the same way (DAVIS-2016 style 0/255 masks become one object with id 255).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from uninext_core.data.errors import DataFormatError


def davis_palette() -> np.ndarray:
    """(256, 3) uint8 palette of the DAVIS / PASCAL VOC colour map (index bits spread over R, G, B)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[index] = (r, g, b)
    return palette


def read_palette_png(
    path: str | Path, *, record: str = "", expected_hw: tuple[int, int] | None = None
) -> np.ndarray:
    """(H, W) uint8 label map of a palette (or grayscale) PNG.

    Args:
        path: the PNG.
        record: what the file is (e.g. "sequence bear frame 3"), for error messages.
        expected_hw: (height, width) of the frame it annotates; checked when given.

    Raises:
        DataFormatError: missing or undecodable file, a colour (RGB) image, or a size that differs from expected_hw.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, record, "mask file not found")
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode not in ("P", "L", "1"):
                raise DataFormatError(path, record, f"expected a palette (P) or grayscale PNG, got mode {mode}")
            labels = np.array(image.convert("L") if mode == "1" else image, dtype=np.uint8)
    except OSError as exc:
        raise DataFormatError(path, record, f"cannot decode PNG: {exc}") from exc
    if mode == "1":
        labels = (labels > 0).astype(np.uint8)
    if expected_hw is not None and labels.shape != tuple(expected_hw):
        raise DataFormatError(path, record, f"mask is {labels.shape[0]}×{labels.shape[1]}, the frame is "
                              f"{expected_hw[0]}×{expected_hw[1]}")
    return labels


def write_palette_png(path: str | Path, label_map: np.ndarray) -> None:
    """Write an (H, W) uint8 label map as a palette PNG with the DAVIS colours (parents created)."""
    if label_map.ndim != 2 or label_map.dtype != np.uint8:
        raise ValueError(f"label_map must be (H, W) uint8, got {label_map.shape} {label_map.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label_map)  # mode "L"; putpalette turns it into "P" keeping the indices
    image.putpalette(davis_palette().reshape(-1).tolist())
    image.save(path, format="PNG")


def label_map_to_masks(label_map: np.ndarray, object_ids: list[int]) -> np.ndarray:
    """(K, H, W) bool masks, one per id in `object_ids` (all False for an id not in the map)."""
    return np.stack([label_map == k for k in object_ids]) if object_ids else np.zeros((0, *label_map.shape), bool)


def masks_to_label_map(masks: np.ndarray, object_ids: list[int]) -> np.ndarray:
    """(H, W) uint8 label map from (K, H, W) bool masks; later masks overwrite earlier ones where they overlap.

    Raises:
        ValueError: an id outside 1..255 or a count that differs from the number of masks.
    """
    if masks.ndim != 3 or len(object_ids) != masks.shape[0]:
        raise ValueError(f"need (K, H, W) masks and K ids, got {masks.shape} and {len(object_ids)} ids")
    if any(not 1 <= k <= 255 for k in object_ids):
        raise ValueError(f"object ids must be in 1..255, got {object_ids}")
    label_map = np.zeros(masks.shape[1:], dtype=np.uint8)
    for mask, k in zip(masks, object_ids, strict=True):
        label_map[mask] = k
    return label_map
