"""uninext-make-bag: an image folder (a synthetic-world video, any frame folder) or a video file -> rosbag2.

    uninext-make-bag --input data/synth/mot/train/SYN-001 --out bags/syn001 --fps 10
    uninext-make-bag --input data/synth/sot/star/star-1 --out bags/star1 --storage sqlite3 --compressed \\
        --scenario scenarios/star1.yaml

Writes `<topic>` (sensor_msgs/Image rgb8, or `<topic>/compressed` sensor_msgs/CompressedImage holding the JPEG / PNG
file bytes unchanged, so the pixels decode exactly as the files do), `<camera-info-topic>` (sensor_msgs/CameraInfo,
pinhole with the given horizontal field of view, no distortion) and, with --scenario, its prompts as
uninext_msgs/Prompt on `--prompt-topic` (logged at their time; template prompts carry their frame's stamp). Frame k
is stamped start + k / fps and logged at its stamp. Folders are read in file-name order; a folder holding `img/`
or `img1/` (LaSOT, MOTChallenge) uses that. The bag is written to a hidden `.<out>.partial` folder and moved to
`<out>` when complete.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage
from std_msgs.msg import Header
from tqdm import tqdm

from uninext_core.prompts import TemplatePrompt
from uninext_ros.bag_io import (
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    PROMPT_TYPE,
    STORAGES,
    BagOutput,
    bag_typestore,
)
from uninext_ros.bag_scenario import ScheduledPrompt, place_prompts, read_scenario
from uninext_ros.conversions import ns_to_stamp, rgb_to_image
from uninext_ros.prompt_conversions import msg_from_request

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


class SourceFrame(NamedTuple):
    """One input frame: (H, W, 3) uint8 RGB, and the file bytes when the file is JPEG/PNG (else None)."""

    rgb: np.ndarray
    encoded: bytes | None
    file_format: str


@dataclass(frozen=True)
class BagSummary:
    """What `make_bag` wrote: the bag, its frame count, stamps (ns) and topics."""

    path: Path
    frames: int
    stamps_ns: tuple[int, ...]
    image_topic: str
    camera_info_topic: str
    prompt_topic: str


def image_files(folder: str | Path) -> list[Path]:
    """The image files of a frame folder in name order (`img/` or `img1/` inside it when it has no images).

    Raises:
        ValueError: no such folder, or no .jpg / .jpeg / .png file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"input {folder} is not a folder or a video file")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        for sub in ("img", "img1"):
            if (folder / sub).is_dir():
                return image_files(folder / sub)
        raise ValueError(f"input {folder} holds no .jpg / .jpeg / .png frames")
    return files


def read_frames(source: str | Path) -> Iterator[SourceFrame]:
    """Frames of an image folder or a video file, in order.

    Raises:
        ValueError: a missing input, an undecodable image, or an unreadable video.
    """
    path = Path(source)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise ValueError(f"video {path} cannot be opened")
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield SourceFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, "")
        finally:
            capture.release()
        return
    for file in image_files(path):
        data = file.read_bytes()
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"image {file} cannot be decoded")
        file_format = "png" if file.suffix.lower() == ".png" else "jpeg"
        yield SourceFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), data, file_format)


def camera_info(header: Header, *, height: int, width: int, fov_deg: float) -> CameraInfo:
    """Pinhole CameraInfo: focal length from the horizontal field of view, principal point at the centre."""
    focal = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return CameraInfo(header=header, height=height, width=width, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=[focal, 0.0, cx, 0.0, focal, cy, 0.0, 0.0, 1.0],
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[focal, 0.0, cx, 0.0, 0.0, focal, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


def _encode(frame: SourceFrame) -> tuple[bytes, str]:
    if frame.encoded is not None:
        return frame.encoded, frame.file_format
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ValueError("a frame could not be JPEG-encoded")
    return buffer.tobytes(), "jpeg"


def make_bag(source: str | Path, out: str | Path, *, storage: str = "mcap", compressed: bool = False,
             fps: float = 10.0, start_ns: int = 1_000_000_000_000, frame_id: str = "camera",
             image_topic: str = "/camera/image_raw", camera_info_topic: str = "/camera/camera_info",
             fov_deg: float = 60.0, prompts: Sequence[ScheduledPrompt] = (), prompt_topic: str = "/uninext/prompt",
             progress: bool = False) -> BagSummary:
    """Write the bag (see the module docstring).

    Args:
        source: image folder or video file.
        out: bag folder to create (must not exist).
        storage: "mcap" or "sqlite3".
        compressed: CompressedImage on `<image_topic>/compressed` instead of rgb8 Image.
        fps: frame rate of the stamps (> 0).
        start_ns: stamp of the first frame.
        frame_id: header.frame_id of images and camera info.
        image_topic, camera_info_topic, prompt_topic: topic names.
        fov_deg: horizontal field of view for CameraInfo, in (0, 180).
        prompts: scenario prompts to store as uninext_msgs/Prompt.
        progress: show a tqdm bar.

    Raises:
        ValueError: bad arguments or input (see read_frames); nothing is left at `out`.
    """
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    if not 0 < fov_deg < 180:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    if start_ns < 0:
        raise ValueError(f"start_ns must be >= 0, got {start_ns}")
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {list(STORAGES)}, got {storage!r}")
    period_ns = round(1e9 / fps)
    topic = f"{image_topic}/compressed" if compressed else image_topic
    output = BagOutput(out, storage=storage, typestore=bag_typestore())
    stamps: list[int] = []
    try:
        for k, frame in enumerate(tqdm(read_frames(source), desc="uninext-make-bag", unit="frame",
                                       disable=not progress, file=sys.stderr)):
            stamp = start_ns + k * period_ns
            header = Header(stamp=ns_to_stamp(stamp), frame_id=frame_id)
            height, width = frame.rgb.shape[:2]
            if compressed:
                data, file_format = _encode(frame)
                output.write(topic, COMPRESSED_TYPE, stamp, CompressedImage(header=header, format=file_format,
                                                                            data=data))
            else:
                output.write(topic, IMAGE_TYPE, stamp, rgb_to_image(frame.rgb, header))
            output.write(camera_info_topic, CAMERA_INFO_TYPE, stamp,
                         camera_info(header, height=height, width=width, fov_deg=fov_deg))
            stamps.append(stamp)
        if not stamps:
            raise ValueError(f"input {source} has no frames")
        for placed in place_prompts(prompts, stamps_ns=stamps, log_times_ns=stamps):
            before = placed.before_frame
            if isinstance(placed.request.prompt, TemplatePrompt) or before == len(stamps):
                log_time = stamps[before - 1] + 1  # just after the frame the targets are drawn on
            else:
                log_time = max(stamps[before] - 1, 0)  # just before the first frame it applies to
            header = Header(stamp=ns_to_stamp(log_time), frame_id=frame_id)
            msg = msg_from_request(placed.request, prompt_id=placed.request.prompt_id or 0,
                                   task=placed.request.task or "", header=header)
            output.write(prompt_topic, PROMPT_TYPE, log_time, msg)
    except BaseException:
        output.abort()
        raise
    path = output.commit()
    return BagSummary(path, len(stamps), tuple(stamps), topic, camera_info_topic, prompt_topic if prompts else "")


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(prog="uninext-make-bag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="image folder or video file")
    parser.add_argument("--out", required=True, help="bag folder to create")
    parser.add_argument("--storage", choices=tuple(STORAGES), default="mcap")
    parser.add_argument("--compressed", action="store_true", help="sensor_msgs/CompressedImage (file bytes)")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--start", type=float, default=1000.0, help="stamp of the first frame, seconds")
    parser.add_argument("--frame-id", default="camera")
    parser.add_argument("--topic", default="/camera/image_raw", help="image topic (raw; /compressed appended)")
    parser.add_argument("--camera-info-topic", default="/camera/camera_info")
    parser.add_argument("--fov", type=float, default=60.0, help="horizontal field of view, degrees")
    parser.add_argument("--scenario", default=None, help="prompt scenario YAML to store as Prompt messages")
    parser.add_argument("--prompt-topic", default="/uninext/prompt")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; 0 on success, 2 with the reason on bad input."""
    args = build_parser().parse_args(argv)
    try:
        prompts = read_scenario(args.scenario) if args.scenario else []
        summary = make_bag(args.input, args.out, storage=args.storage, compressed=args.compressed, fps=args.fps,
                           start_ns=round(args.start * 1e9), frame_id=args.frame_id, image_topic=args.topic,
                           camera_info_topic=args.camera_info_topic, fov_deg=args.fov, prompts=prompts,
                           prompt_topic=args.prompt_topic, progress=True)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {summary.path}: {summary.frames} frames on {summary.image_topic}, camera info on "
          f"{summary.camera_info_topic}" + (f", prompts on {summary.prompt_topic}" if summary.prompt_topic else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
