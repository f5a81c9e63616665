"""Bags through rosbags: uninext-make-bag in both storages, raw and compressed, read back with rosbags and the mcap
readers; the readers' refusals of damaged bags, missing topics, wrong types and stamps that go back in time."""

from __future__ import annotations

import glob
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from uninext_core.data.synthetic.__main__ import main as synth_main
from uninext_ros.bag_io import (
    IMAGE_TYPE,
    BagError,
    BagOutput,
    bag_typestore,
    frame_headers,
    image_frames,
    open_bag,
    prompt_messages,
)
from uninext_ros.bag_scenario import read_scenario
from uninext_ros.conversions import ns_to_stamp, rgb_to_image
from uninext_ros.make_bag import main as make_bag_main
from uninext_ros.make_bag import make_bag

START_NS = 1_000_000_000_000


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "mot"
    assert synth_main(["--out", str(out), "--task", "mot", "--num-videos", "1", "--num-frames", "5", "--size",
                       "64"]) == 0
    return out / "train" / "SYN-001"


def _files(video: Path) -> list[Path]:
    return sorted((video / "img1").glob("*.jpg"))


@pytest.mark.parametrize(("storage", "compressed"), [("mcap", False), ("sqlite3", True), ("mcap", True)])
def test_make_bag_reads_back_with_rosbags(video, tmp_path, storage: str, compressed: bool) -> None:
    summary = make_bag(video, tmp_path / "bag", storage=storage, compressed=compressed, fps=4.0, start_ns=START_NS)
    assert summary.frames == 5 and summary.stamps_ns == tuple(START_NS + k * 250_000_000 for k in range(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]  # no partial folder left
    reader = open_bag(summary.path)
    try:
        topics = {c.topic: c.msgtype for c in reader.connections}
        image_topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
        assert topics == {image_topic: "sensor_msgs/msg/CompressedImage" if compressed else IMAGE_TYPE,
                          "/camera/camera_info": "sensor_msgs/msg/CameraInfo"}
        frames = list(image_frames(reader, summary.path, image_topic))
        for frame, file in zip(frames, _files(video), strict=True):
            decoded = cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB)
            assert np.array_equal(frame.rgb, decoded)  # raw pixels, or the file bytes themselves
        assert [f.stamp_ns for f in frames] == list(summary.stamps_ns)
        assert [f.log_time_ns for f in frames] == list(summary.stamps_ns) and frames[0].frame_id == "camera"
        infos = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(
            connections=[c for c in reader.connections if c.topic == "/camera/camera_info"])]
        focal = 32.0 / math.tan(math.radians(30.0))
        assert len(infos) == 5 and (infos[0].height, infos[0].width) == (64, 64)
        assert infos[0].k.tolist() == pytest.approx([focal, 0, 31.5, 0, focal, 31.5, 0, 0, 1])
    finally:
        reader.close()


def test_mcap_bag_reads_back_with_the_mcap_readers(video, tmp_path) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text("prompts:\n  - {time: 0.0, task: mot, classes: [circle, square]}\n")
    summary = make_bag(video, tmp_path / "bag", compressed=True, prompts=read_scenario(scenario))
    (path,) = glob.glob(str(summary.path / "*.mcap"))
    with open(path, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        decoded = [(channel.topic, message.log_time, msg) for _, channel, message, msg in
                   reader.iter_decoded_messages()]
    prompts = [m for topic, _, m in decoded if topic == "/uninext/prompt"]
    images = [(t, m) for topic, t, m in decoded if topic == "/camera/image_raw/compressed"]
    assert len(images) == 5 and images[0][1].format == "jpeg"
    assert bytes(images[0][1].data) == _files(video)[0].read_bytes()
    assert len(prompts) == 1 and list(prompts[0].categories) == ["circle", "square"] and prompts[0].task == "mot"
    bag = open_bag(summary.path)
    try:
        ((log_time, prompt),) = prompt_messages(bag, summary.path, "/uninext/prompt")
    finally:
        bag.close()
    assert log_time == START_NS - 1  # just before the first frame it applies to
    assert prompt.kind == prompt.KIND_CATEGORIES


def test_make_bag_cli_refuses_bad_input(tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert make_bag_main(["--input", str(empty), "--out", str(tmp_path / "bag")]) == 2
    assert "holds no .jpg / .jpeg / .png frames" in capsys.readouterr().err
    assert not (tmp_path / "bag").exists() and not (tmp_path / ".bag.partial").exists()
    assert make_bag_main(["--input", str(tmp_path / "nowhere"), "--out", str(tmp_path / "bag")]) == 2
    assert "is not a folder or a video file" in capsys.readouterr().err


def _bag_with_stamps(path: Path, stamps_s: list[float], storage: str = "mcap") -> Path:
    output = BagOutput(path, storage=storage, typestore=bag_typestore())
    for k, stamp in enumerate(stamps_s):
        header = Header(stamp=ns_to_stamp(round(stamp * 1e9)), frame_id="camera")
        output.write("/camera/image_raw", IMAGE_TYPE, START_NS + k, rgb_to_image(np.zeros((8, 8, 3), np.uint8),
                                                                                 header))
    output.write("/camera/other", "std_msgs/msg/Header", START_NS, Header())
    return output.commit()


def test_frames_whose_stamps_go_back_are_refused(tmp_path) -> None:
    bag = _bag_with_stamps(tmp_path / "bag", [1.0, 2.0, 1.5])
    reader = open_bag(bag)
    try:
        with pytest.raises(BagError, match=r"bag .*bag, topic /camera/image_raw: frame 2 has stamp 1500000000 ns, "
                                           r"not after the previous frame's 2000000000 ns"):
            frame_headers(reader, bag, "/camera/image_raw")
    finally:
        reader.close()


def test_missing_topic_and_wrong_type_are_named(tmp_path) -> None:
    bag = _bag_with_stamps(tmp_path / "bag", [1.0, 2.0], storage="sqlite3")
    reader = open_bag(bag)
    try:
        with pytest.raises(BagError, match=r"has no topic /camera/color; its topics: \['/camera/image_raw"):
            frame_headers(reader, bag, "/camera/color")
        with pytest.raises(BagError, match=r"topic /camera/other: type std_msgs/msg/Header, expected "
                                           r"sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage"):
            frame_headers(reader, bag, "/camera/other")
    finally:
        reader.close()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_damaged_bags_are_refused_naming_the_bag(tmp_path, storage: str) -> None:
    damaged = _bag_with_stamps(tmp_path / "damaged", [1.0, 2.0, 3.0], storage=storage)
    (data_file,) = [p for p in damaged.iterdir() if p.suffix in (".mcap", ".db3")]
    data_file.write_bytes(data_file.read_bytes()[: len(data_file.read_bytes()) // 3] + b"\x00garbage")
    with pytest.raises(BagError, match=r"bag .*damaged"):
        reader = open_bag(damaged)
        try:
            list(image_frames(reader, damaged, "/camera/image_raw"))
        finally:
            reader.close()
    (damaged / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, bag")
    with pytest.raises(BagError, match=r"bag .*damaged cannot be read"):
        open_bag(damaged)
    with pytest.raises(BagError, match=r"is not a rosbag2 folder"):
        open_bag(data_file)
    with pytest.raises(BagError, match=r"does not exist"):
        open_bag(tmp_path / "nowhere")


def test_an_aborted_output_bag_leaves_nothing(tmp_path) -> None:
    output = BagOutput(tmp_path / "bag", storage="mcap", typestore=bag_typestore())
    output.write("/camera/image_raw", IMAGE_TYPE, START_NS, Image())
    output.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BagError, match=r"exists already"):
        _bag_with_stamps(tmp_path / "bag", [1.0])
        BagOutput(tmp_path / "bag", storage="mcap", typestore=bag_typestore())


def test_make_bag_from_a_video_file(tmp_path) -> None:
    video_path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi files in this build"
    for k in range(4):
        writer.write(np.full((24, 32, 3), 60 * k, np.uint8))
    writer.release()
    summary = make_bag(video_path, tmp_path / "bag", compressed=True, fps=5.0, start_ns=0)
    assert summary.frames == 4 and summary.stamps_ns == (0, 200_000_000, 400_000_000, 600_000_000)
    reader = open_bag(summary.path)
    try:
        frames = list(image_frames(reader, summary.path, "/camera/image_raw/compressed"))
    finally:
        reader.close()
    assert [f.rgb.shape for f in frames] == [(24, 32, 3)] * 4
    assert [float(f.rgb.mean()) for f in frames] == pytest.approx([0, 60, 120, 180], abs=3)
