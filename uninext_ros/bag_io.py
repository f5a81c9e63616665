"""rosbag2 input and output through the `rosbags` library (mcap and sqlite3 storage), for the bag tools.

Reading: `open_bag` checks the path and opens an `AnyReader` whose type store knows uninext_msgs (registered from
the package's msg/*.msg files); `image_frames` yields decoded frames of a raw or compressed image topic, refusing
stamps that go back in time; `prompt_messages` and `instance_arrays` deserialise those topics. Messages come out
as rosbags objects and go through the node's own conversions (`uninext_ros.conversions`,
`uninext_ros.prompt_conversions`), whose attribute access they satisfy.

Writing: `BagOutput` writes a new bag into a hidden `.<name>.partial` folder and moves it to `<path>` only when
closed after success, so a failed run never leaves a complete-looking bag. Messages built with the rclpy message
classes (what the conversions return) are serialised to CDR with rclpy and stored with rosbags, next to raw copies of
input topics.
Every problem raises `BagError` (a ValueError) naming the bag, and the topic when there is one.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rclpy.serialization import serialize_message
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from uninext_ros.conversions import compressed_to_rgb, image_to_rgb, stamp_to_ns

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
PROMPT_TYPE = "uninext_msgs/msg/Prompt"
INSTANCES_TYPE = "uninext_msgs/msg/InstanceArray"
STORAGES: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
# Nested types first: a message type is registered after the types it contains.
_UNINEXT_MESSAGES = ("BoundingBox", "RleMask", "RoiTemplate", "Instance", "InstanceArray", "Prompt")


class BagError(ValueError):
    """A bag that cannot be used as asked; the message names the bag (and topic)."""


@dataclass(frozen=True)
class BagFrame:
    """One decoded image message.

    Attributes:
        index: position among the topic's messages (0-based).
        log_time_ns: when the recorder stored it.
        stamp_ns: header.stamp (capture time).
        frame_id: header.frame_id.
        rgb: (H, W, 3) uint8 RGB.
    """

    index: int
    log_time_ns: int
    stamp_ns: int
    frame_id: str
    rgb: Any


def _message_folders() -> list[Path]:
    folders = []
    try:
        from ament_index_python.packages import get_package_share_directory

        folders.append(Path(get_package_share_directory("uninext_msgs")) / "msg")
    except (ImportError, LookupError, ValueError):
        pass
    folders.append(Path(__file__).resolve().parents[1] / "msg")  # the source tree
    return folders


def bag_typestore() -> Typestore:
    """The ROS 2 Kilted type store with the uninext_msgs types added."""
    store = get_typestore(Stores.ROS2_KILTED)
    folder = next((f for f in _message_folders() if (f / "InstanceArray.msg").is_file()), None)
    if folder is None:
        raise BagError(f"uninext_msgs message definitions not found in {[str(f) for f in _message_folders()]}")
    for name in _UNINEXT_MESSAGES:
        store.register(get_types_from_msg((folder / f"{name}.msg").read_text(encoding="utf-8"),
                                          f"uninext_msgs/msg/{name}"))
    return store


def open_bag(path: str | Path) -> AnyReader:
    """An opened AnyReader on a rosbag2 folder (mcap or sqlite3); close it with `.close()`.

    Raises:
        BagError: a missing path, a folder that is no rosbag2, or a damaged bag (the reader's reason included).
    """
    bag = Path(path)
    if not bag.exists():
        raise BagError(f"bag {bag} does not exist")
    if not bag.is_dir() or not (bag / "metadata.yaml").is_file():
        raise BagError(f"bag {bag} is not a rosbag2 folder (expected metadata.yaml and .mcap or .db3 files)")
    try:
        reader = AnyReader([bag], default_typestore=bag_typestore())
        reader.open()
    except Exception as error:  # rosbags raises several types for damaged files; all mean "unreadable"
        raise BagError(f"bag {bag} cannot be read: {type(error).__name__}: {error}") from error
    return reader


def connections_of(reader: AnyReader, bag: Path, topic: str, expected_types: Sequence[str]) -> list[Connection]:
    """The connections of `topic`, checked to carry one of `expected_types`.

    Raises:
        BagError: the topic is absent (the bag's topics are listed) or has another type.
    """
    found = [c for c in reader.connections if c.topic == topic]
    if not found:
        topics = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
        raise BagError(f"bag {bag} has no topic {topic}; its topics: {topics}")
    wrong = sorted({c.msgtype for c in found if c.msgtype not in expected_types})
    if wrong:
        raise BagError(f"bag {bag}, topic {topic}: type {wrong[0]}, expected {' or '.join(expected_types)}")
    return found


def _messages(reader: AnyReader, bag: Path, topic: str, connections: list[Connection]) -> Iterator[tuple[int, Any]]:
    try:
        for connection, log_time, raw in reader.messages(connections=connections):
            yield log_time, reader.deserialize(raw, connection.msgtype)
    except BagError:
        raise
    except Exception as error:  # damaged chunks surface while iterating
        raise BagError(f"bag {bag}, topic {topic}: cannot read a message: {type(error).__name__}: {error}") from error


@dataclass(frozen=True)
class FrameHeader:
    """Where an image message sits: index on its topic, log time, header stamp and frame_id."""

    index: int
    log_time_ns: int
    stamp_ns: int
    frame_id: str


def frame_headers(reader: AnyReader, bag: Path, topic: str) -> list[FrameHeader]:
    """Headers of a sensor_msgs/Image or CompressedImage topic, in recording order (images not decoded).

    Raises:
        BagError: wrong topic or type, no message, or a header stamp not after the previous frame's.
    """
    connections = connections_of(reader, bag, topic, (IMAGE_TYPE, COMPRESSED_TYPE))
    headers: list[FrameHeader] = []
    for index, (log_time, msg) in enumerate(_messages(reader, bag, topic, connections)):
        stamp = stamp_to_ns(msg.header.stamp)
        if headers and stamp <= headers[-1].stamp_ns:
            raise BagError(f"bag {bag}, topic {topic}: frame {index} has stamp {stamp} ns, not after the previous "
                           f"frame's {headers[-1].stamp_ns} ns (stamps must increase)")
        headers.append(FrameHeader(index, log_time, stamp, msg.header.frame_id))
    if not headers:
        raise BagError(f"bag {bag}, topic {topic}: no image message")
    return headers


def image_frames(reader: AnyReader, bag: Path, topic: str) -> Iterator[BagFrame]:
    """Decoded frames of a sensor_msgs/Image or CompressedImage topic, in recording order.

    Raises:
        BagError: wrong topic or type, an undecodable image, or a header stamp not after the previous frame's.
    """
    connections = connections_of(reader, bag, topic, (IMAGE_TYPE, COMPRESSED_TYPE))
    previous: int | None = None
    for index, (log_time, msg) in enumerate(_messages(reader, bag, topic, connections)):
        stamp = stamp_to_ns(msg.header.stamp)
        if previous is not None and stamp <= previous:
            raise BagError(f"bag {bag}, topic {topic}: frame {index} has stamp {stamp} ns, not after the previous "
                           f"frame's {previous} ns (stamps must increase)")
        previous = stamp
        try:
            rgb = compressed_to_rgb(msg) if hasattr(msg, "format") else image_to_rgb(msg)
            if not rgb.flags.writeable:  # a view on the reader's read-only buffer
                rgb = rgb.copy()
        except ValueError as error:
            raise BagError(f"bag {bag}, topic {topic}: frame {index} (stamp {stamp} ns): {error}") from error
        yield BagFrame(index, log_time, stamp, msg.header.frame_id, rgb)


def prompt_messages(reader: AnyReader, bag: Path, topic: str) -> list[tuple[int, Any]]:
    """(log time, uninext_msgs/Prompt) of a prompt topic, in recording order."""
    return list(_messages(reader, bag, topic, connections_of(reader, bag, topic, (PROMPT_TYPE,))))


def instance_arrays(reader: AnyReader, bag: Path, topic: str) -> list[tuple[int, Any]]:
    """(log time, uninext_msgs/InstanceArray) of an instances topic, in recording order."""
    return list(_messages(reader, bag, topic, connections_of(reader, bag, topic, (INSTANCES_TYPE,))))


class BagOutput:
    """A rosbag2 written under `.<name>.partial/` beside `path`, moved to `path` by `commit()`, removed by `abort()`.

    Args:
        path: the finished bag folder (must not exist).
        storage: "mcap" or "sqlite3".
        typestore: message definitions for the connections (bag_typestore()).
    """

    def __init__(self, path: str | Path, *, storage: str, typestore: Typestore) -> None:
        if storage not in STORAGES:
            raise BagError(f"storage {storage!r} is not one of {list(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"output bag {self.path} exists already; remove it or choose another folder")
        # rosbags names the storage file after the bag folder: write <parent>/.<name>.partial/<name>, then move it.
        self.partial = self.path.parent / f".{self.path.name}.partial"
        if self.partial.exists():
            shutil.rmtree(self.partial)  # left by a run that was killed
        self.partial.mkdir(parents=True)
        self._typestore = typestore
        self._writer = Writer(self.partial / self.path.name, version=9, storage_plugin=STORAGES[storage])
        self._writer.open()
        self._connections: dict[str, Connection] = {}

    def connection(self, topic: str, msgtype: str, typestore: Typestore | None = None) -> Connection:
        """The connection of `topic`, added on first use (definitions from `typestore`, default the bag tools')."""
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype,
                                                                   typestore=typestore or self._typestore)
        elif self._connections[topic].msgtype != msgtype:
            raise BagError(f"output bag {self.path}: topic {topic} already carries "
                           f"{self._connections[topic].msgtype}, not {msgtype}")
        return self._connections[topic]

    def write(self, topic: str, msgtype: str, log_time_ns: int, msg: Any) -> None:
        """Store an rclpy message (serialised to CDR by rclpy)."""
        self._writer.write(self.connection(topic, msgtype), int(log_time_ns), serialize_message(msg))

    def write_raw(self, topic: str, msgtype: str, log_time_ns: int, data: bytes | memoryview,
                  typestore: Typestore | None = None) -> None:
        """Store already serialised CDR bytes (copies of input topics, defined by the input bag's `typestore`)."""
        self._writer.write(self.connection(topic, msgtype, typestore), int(log_time_ns), data)

    def commit(self) -> Path:
        """Close the bag and move it to its final name; returns that path."""
        self._writer.close()
        (self.partial / self.path.name).rename(self.path)
        self.partial.rmdir()
        return self.path

    def abort(self) -> None:
        """Close and delete what was written."""
        try:
            self._writer.close()
        finally:
            shutil.rmtree(self.partial, ignore_errors=True)


def copy_topics(reader: AnyReader, output: BagOutput, topics: Sequence[str] = ()) -> int:
    """Copy the raw messages of `topics` (all topics when empty) into `output`; returns the count."""
    connections = [c for c in reader.connections if not topics or c.topic in topics]
    count = 0
    for connection, log_time, raw in reader.messages(connections=connections):
        output.write_raw(connection.topic, connection.msgtype, log_time, raw, typestore=reader.typestore)
        count += 1
    return count
