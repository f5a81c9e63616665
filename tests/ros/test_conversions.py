"""uninext_ros.conversions: every supported image encoding, compressed images, stamps, instances round trip."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from uninext_core.instances import Instances, Timings
from uninext_ros.conversions import (
    compressed_to_rgb,
    image_to_rgb,
    instances_to_msg,
    msg_to_instances,
    ns_to_stamp,
    rgb_to_image,
    stamp_to_ns,
)

RGB = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)


def _image(pixels: np.ndarray, encoding: str, row_padding: int = 0) -> Image:
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, row_padding), 255, np.uint8)], axis=1)
    return Image(height=height, width=width, encoding=encoding, step=padded.shape[1], data=padded.tobytes())


@pytest.mark.parametrize("row_padding", [0, 3])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_encodings_become_rgb(encoding: str, row_padding: int) -> None:
    alpha = np.full((5, 7, 1), 200, np.uint8)
    source = {"rgb8": RGB, "bgr8": RGB[..., ::-1], "rgba8": np.concatenate([RGB, alpha], axis=2),
              "bgra8": np.concatenate([RGB[..., ::-1], alpha], axis=2)}[encoding]
    assert np.array_equal(image_to_rgb(_image(np.ascontiguousarray(source), encoding, row_padding)), RGB)


def test_mono8_repeats_the_grey_value() -> None:
    grey = RGB[..., 0].copy()
    out = image_to_rgb(_image(grey, "mono8", 2))
    assert out.shape == (5, 7, 3) and all(np.array_equal(out[..., c], grey) for c in range(3))


def test_bad_images_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"16UC1.*not supported"):
        image_to_rgb(Image(height=2, width=2, encoding="16UC1", step=4, data=bytes(8)))
    with pytest.raises(ValueError, match="expected height 5 x step 21"):
        image_to_rgb(Image(height=5, width=7, encoding="rgb8", step=21, data=bytes(20)))
    with pytest.raises(ValueError, match="empty"):
        image_to_rgb(Image(height=0, width=7, encoding="rgb8", step=21, data=b""))
    with pytest.raises(ValueError, match="could not be decoded"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg"))


@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_compressed_images(extension: str) -> None:
    smooth = np.zeros((32, 48, 3), np.uint8)
    smooth[..., 0] = 200
    smooth[8:24, 10:30, 2] = 120
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR))
    assert ok
    decoded = compressed_to_rgb(CompressedImage(format=extension[1:], data=encoded.tobytes()))
    error = np.abs(decoded.astype(int) - smooth)
    assert decoded.shape == smooth.shape
    if extension == ".png":
        assert error.max() == 0
    else:  # lossy: chroma subsampling blurs the block edges, colours stay
        assert error.mean() < 4 and np.abs(decoded[2:6, 2:6].astype(int) - smooth[2:6, 2:6]).max() <= 4


def test_rgb_to_image_round_trip_and_stamps() -> None:
    header = Header(stamp=ns_to_stamp(12_500_000_001), frame_id="cam")
    for encoding in ("rgb8", "bgr8"):
        assert np.array_equal(image_to_rgb(rgb_to_image(RGB, header, encoding=encoding)), RGB)
    assert stamp_to_ns(Time(sec=12, nanosec=500_000_001)) == 12_500_000_001
    assert ns_to_stamp(12_500_000_001) == Time(sec=12, nanosec=500_000_001)


def test_instances_round_trip_through_the_message() -> None:
    masks = np.zeros((2, 6, 8), bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4:, :] = True
    instances = Instances(stamp_ns=3_000_000_007, image_size=(6, 8), task="mots", prompt_id=4,
                          track_ids=np.array([3, 9]), boxes_xyxy=np.array([[2, 1, 5, 3], [0, 4, 8, 6]], np.float32),
                          scores=np.array([0.9, 0.25], np.float32), class_indices=np.array([1, 0]),
                          labels=["car", "person"], masks=masks, timings=Timings(1.0, 2.0, 3.0))
    header = Header(stamp=ns_to_stamp(instances.stamp_ns), frame_id="cam")
    msg = instances_to_msg(instances, header, latency_ms=7.5)
    assert msg.header == header and msg.task == "mots" and msg.prompt_id == 4 and msg.latency_ms == 7.5
    assert [i.track_id for i in msg.instances] == [3, 9] and msg.instances[1].label == "person"
    back = msg_to_instances(msg)
    assert back.stamp_ns == instances.stamp_ns and back.image_size == (6, 8)
    for name in ("track_ids", "boxes_xyxy", "scores", "class_indices", "masks"):
        assert np.array_equal(getattr(back, name), getattr(instances, name)), name
    assert back.labels == instances.labels and back.timings == instances.timings


def test_instances_without_masks_and_empty() -> None:
    empty = Instances.empty(stamp_ns=5, image_size=(4, 4), task="detection", prompt_id=0)
    msg = instances_to_msg(empty, Header())
    assert msg.instances == [] and msg_to_instances(msg, image_size=(4, 4)).image_size == (4, 4)
    with pytest.raises(ValueError, match="task 'segmentation'"):
        Instances.empty(stamp_ns=0, image_size=(1, 1), task="segmentation", prompt_id=0)
