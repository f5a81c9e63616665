"""Reading and writing frames: RGB uint8 arrays, errors that name the annotation file and record."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from uninext_core.data.errors import DataFormatError


def read_image_rgb(
    path: str | Path,
    *,
    source: str | Path,
    record: str,
    expected_hw: tuple[int, int] | None = None,
) -> np.ndarray:
    """Load an image as (H, W, 3) uint8 RGB.

    Args:
        path: the image file.
        source: the annotation file that refers to it (named in errors).
        record: the record inside `source` (e.g. "image id 3").
        expected_hw: (height, width) the annotation declares; checked when given.

    Raises:
        DataFormatError: the file is missing or unreadable, or its size differs from `expected_hw`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(source, record, f"image file {path} not found")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataFormatError(source, record, f"image file {path} cannot be decoded")
    if expected_hw is not None and image.shape[:2] != tuple(expected_hw):
        raise DataFormatError(
            source, record, f"image {path.name} is {image.shape[0]}×{image.shape[1]}, annotation says "
            f"{expected_hw[0]}×{expected_hw[1]}"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image_rgb(path: str | Path, image: np.ndarray, *, jpeg_quality: int = 90) -> None:
    """Write an (H, W, 3) uint8 RGB image; JPEG quality applies to .jpg/.jpeg (parents created)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix.lower() in {".jpg", ".jpeg"} else []
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"cannot write image {path}")
