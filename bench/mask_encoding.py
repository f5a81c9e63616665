"""Why uninext_msgs/RleMask carries COCO compressed RLE: bytes and time against one mono8 crop per instance.

20 instances on a 1280×720 frame (ellipses and rotated rectangles of 40-400 px, some touching the border). For each
encoding: payload bytes, serialized ROS message bytes (RleMask vs sensor_msgs/Image crops + a box), encode time on
the sender and decode time back to full-frame bool masks on the receiver. Median and p90 over repetitions, one JSON
line per encoding, then the ratios side by side.

    .venv/bin/python bench/mask_encoding.py [--instances 20] [--repeats 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from uninext_msgs.msg import RleMask

from uninext_core.masks import Rle, decode_rle, encode_masks

HEIGHT, WIDTH = 720, 1280


def make_masks(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((count, HEIGHT, WIDTH), dtype=np.uint8)
    for i in range(count):
        centre = (int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT)))
        axes = (int(rng.integers(20, 200)), int(rng.integers(20, 200)))
        angle = float(rng.uniform(0, 180))
        if i % 2:
            cv2.ellipse(masks[i], centre, axes, angle, 0, 360, 1, -1)
        else:
            box = cv2.boxPoints(((centre[0], centre[1]), (2 * axes[0], 2 * axes[1]), angle)).astype(np.int32)
            cv2.fillPoly(masks[i], [box], 1)
    return masks.astype(bool)


def boxes_of(masks: np.ndarray) -> list[tuple[int, int, int, int]]:
    boxes = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return boxes


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    masks = make_masks(args.instances)
    boxes = boxes_of(masks)

    # --- COCO compressed RLE (what RleMask carries)
    rles = encode_masks(masks)
    rle_msgs = [RleMask(height=r.height, width=r.width, counts=r.counts) for r in rles]
    assert all(np.array_equal(decode_rle(r), m) for r, m in zip(rles, masks, strict=True))
    rle_payload = sum(len(r.counts) + 8 for r in rles)
    rle_serialized = sum(len(serialize_message(m)) for m in rle_msgs)
    rle_encode = timed(lambda: encode_masks(masks), args.repeats)
    rle_decode = timed(lambda: [decode_rle(Rle(m.height, m.width, m.counts)) for m in rle_msgs], args.repeats)

    # --- one mono8 crop per instance (sensor_msgs/Image of the box region + the box to paste it back)
    def encode_crops() -> list[Image]:
        out = []
        for mask, (x0, y0, x1, y1) in zip(masks, boxes, strict=True):
            crop = mask[y0:y1, x0:x1].astype(np.uint8)
            out.append(Image(height=crop.shape[0], width=crop.shape[1], encoding="mono8", step=crop.shape[1],
                             data=crop.tobytes()))
        return out

    crop_msgs = encode_crops()

    def decode_crops() -> list[np.ndarray]:
        out = []
        for msg, (x0, y0, _, _) in zip(crop_msgs, boxes, strict=True):
            full = np.zeros((HEIGHT, WIDTH), dtype=bool)
            crop = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width)
            full[y0:y0 + msg.height, x0:x0 + msg.width] = crop.astype(bool)
            out.append(full)
        return out

    assert all(np.array_equal(a, b) for a, b in zip(decode_crops(), masks, strict=True))
    crop_payload = sum(len(m.data) + 16 for m in crop_msgs)  # + the 4 box coordinates
    crop_serialized = sum(len(serialize_message(m)) + 16 for m in crop_msgs)
    crop_encode = timed(encode_crops, args.repeats)
    crop_decode = timed(decode_crops, args.repeats)

    rows = {
        "coco_rle": (rle_payload, rle_serialized, rle_encode, rle_decode),
        "mono8_crop": (crop_payload, crop_serialized, crop_encode, crop_decode),
    }
    for name, (payload, serialized, encode, decode) in rows.items():
        print(json.dumps({"encoding": name, "instances": args.instances, "frame": f"{WIDTH}x{HEIGHT}",
                          "payload_bytes": payload, "serialized_bytes": serialized,
                          "encode_ms_median": round(encode[0], 3), "encode_ms_p90": round(encode[1], 3),
                          "decode_ms_median": round(decode[0], 3), "decode_ms_p90": round(decode[1], 3)}))
    print(f"\n{'':22}{'coco_rle':>12}{'mono8_crop':>12}{'crop/rle':>10}")
    labels = ["payload bytes", "serialized bytes", "encode ms (median)", "decode ms (median)"]
    values = [(rle_payload, crop_payload), (rle_serialized, crop_serialized), (rle_encode[0], crop_encode[0]),
              (rle_decode[0], crop_decode[0])]
    for label, (rle_value, crop_value) in zip(labels, values, strict=True):
        print(f"{label:22}{rle_value:12.3f}{crop_value:12.3f}{crop_value / rle_value:10.2f}")


if __name__ == "__main__":
    main()
