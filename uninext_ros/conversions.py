"""ROS message <-> numpy conversions (no cv_bridge: the PyPI one breaks on numpy 2 and OpenCV 5).

Images become H×W×3 RGB uint8 arrays without copying where the layout allows (`np.frombuffer`, about 1 µs);
outputs are written with `bytes` (never an ndarray assigned to `msg.data`, which costs ~60 ms for 640×480).
No ROS type passes beyond this module into the session.
"""

from __future__ import annotations

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from uninext_msgs.msg import BoundingBox, Instance, InstanceArray, RleMask

from uninext_core.instances import Instances, Timings
from uninext_core.masks import Rle, decode_rle

# encoding -> (channels, conversion from that channel order to RGB, or None when already RGB)
_IMAGE_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}
SUPPORTED_IMAGE_ENCODINGS: tuple[str, ...] = tuple(_IMAGE_ENCODINGS)


def stamp_to_ns(stamp: Time) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(stamp_ns: int) -> Time:
    """Integer nanoseconds -> builtin_interfaces/Time."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> (H, W, 3) uint8 RGB.

    Raises:
        ValueError: unsupported encoding, or a data size that does not match height × step.
    """
    if msg.encoding not in _IMAGE_ENCODINGS:
        raise ValueError(f"image encoding {msg.encoding!r} is not supported; expected one of "
                         f"{list(SUPPORTED_IMAGE_ENCODINGS)}")
    channels, conversion = _IMAGE_ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ValueError(f"image is empty ({width}x{height})")
    if step < width * channels:
        raise ValueError(f"image step {step} is smaller than width {width} x {channels} channels")
    if len(msg.data) < height * step:
        raise ValueError(f"image data has {len(msg.data)} bytes, expected height {height} x step {step} = "
                         f"{height * step}")
    rows = np.frombuffer(msg.data, dtype=np.uint8, count=height * step).reshape(height, step)
    pixels = rows[:, : width * channels].reshape(height, width, channels)
    if conversion is None:
        return pixels
    return cv2.cvtColor(pixels, conversion)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png) -> (H, W, 3) uint8 RGB."""
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size == 0:
        raise ValueError(f"compressed image ({msg.format!r}) has no data")
    decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ValueError(f"compressed image ({msg.format!r}, {buffer.size} bytes) could not be decoded as jpeg/png")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def rgb_to_image(rgb: np.ndarray, header: Header, *, encoding: str = "rgb8") -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image in `encoding` (rgb8 or bgr8)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    if encoding == "bgr8":
        rgb = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding != "rgb8":
        raise ValueError(f"output encoding {encoding!r} is not supported; expected 'rgb8' or 'bgr8'")
    height, width = rgb.shape[:2]
    return Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0, step=width * 3,
                 data=np.ascontiguousarray(rgb).tobytes())


def instances_to_msg(instances: Instances, header: Header, *, latency_ms: float = 0.0) -> InstanceArray:
    """Session output -> uninext_msgs/InstanceArray carrying the source image's header.

    Masks are RLE-encoded once (`Instances.rles`, cached); the numeric columns are read with one `tolist` each
    rather than one numpy scalar conversion per field.
    """
    rles = instances.rles()
    height, width = instances.image_size
    prompt_id = int(instances.prompt_id)
    track_ids = instances.track_ids.tolist()
    class_indices = instances.class_indices.tolist()
    scores = instances.scores.tolist()
    items = [Instance(track_id=int(track_ids[i]), label=instances.labels[i], class_index=int(class_indices[i]),
                      score=float(scores[i]),
                      box=BoundingBox(x_min=float(x_min), y_min=float(y_min), x_max=float(x_max), y_max=float(y_max)),
                      mask=RleMask(height=height, width=width, counts=rles[i].counts if rles is not None else ""),
                      prompt_id=prompt_id)
             for i, (x_min, y_min, x_max, y_max) in enumerate(instances.boxes_xyxy.tolist())]
    timings = instances.timings
    return InstanceArray(header=header, task=instances.task, prompt_id=prompt_id, instances=items,
                         preprocess_ms=timings.preprocess_ms, inference_ms=timings.inference_ms,
                         postprocess_ms=timings.postprocess_ms, latency_ms=float(latency_ms))


def msg_to_instances(msg: InstanceArray, image_size: tuple[int, int] | None = None) -> Instances:
    """uninext_msgs/InstanceArray -> Instances (reference bags, replay comparisons).

    Masks are decoded when every instance carries one; `image_size` is needed only for an array with no instances
    whose masks' size cannot be read.
    """
    count = len(msg.instances)
    if count:
        size = (int(msg.instances[0].mask.height), int(msg.instances[0].mask.width))
    elif image_size is not None:
        size = image_size
    else:
        size = (0, 0)
    with_masks = count > 0 and all(item.mask.counts for item in msg.instances)
    masks = None
    if with_masks:
        masks = np.stack([decode_rle(Rle(int(i.mask.height), int(i.mask.width), i.mask.counts))
                          for i in msg.instances])
    return Instances(
        stamp_ns=stamp_to_ns(msg.header.stamp), image_size=size, task=msg.task, prompt_id=int(msg.prompt_id),
        track_ids=np.array([i.track_id for i in msg.instances], dtype=np.int64),
        boxes_xyxy=np.array([[i.box.x_min, i.box.y_min, i.box.x_max, i.box.y_max] for i in msg.instances],
                            dtype=np.float32).reshape(count, 4),
        scores=np.array([i.score for i in msg.instances], dtype=np.float32),
        class_indices=np.array([i.class_index for i in msg.instances], dtype=np.int64),
        labels=[i.label for i in msg.instances], masks=masks,
        timings=Timings(msg.preprocess_ms, msg.inference_ms, msg.postprocess_ms))
