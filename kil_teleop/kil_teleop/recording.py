"""Writing demonstration episodes as rosbag2 bags: the one writer of the project.

Used by ``recorder_node`` (live topics) and by ``kil_sim``'s offline demonstration generator.
One episode = one bag directory: MCAP storage with zstd-compressed chunks plus
``metadata.yaml`` (rosbag2 format version 8, which ``ros2 bag info/play`` on Jazzy reads), written
with ``rosbags`` so no ROS installation is needed.

Episodes are written under a hidden ``.partial/`` directory beside them and moved into place when
closed, so a directory of episodes only ever contains complete bags; an interrupted episode
leaves its partial bag behind, which :func:`list_episodes` ignores and
:func:`remove_partial_episodes` deletes.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys.store import Typestore

#: The topics of a demonstration (DESIGN.md), with their message types.
DEMONSTRATION_TOPICS: dict[str, str] = {
    "/camera/color/image_raw": "sensor_msgs/msg/Image",
    "/camera/depth/image_raw": "sensor_msgs/msg/Image",
    "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
    "/kil/robot_state": "kil_interfaces/msg/RobotState",
    "/kil/action_chunk": "kil_interfaces/msg/ActionChunk",
}
#: Optional topics recorded when present.
OPTIONAL_TOPICS: dict[str, str] = {"/kil/keypoints": "kil_interfaces/msg/KeypointArray"}

PARTIAL_DIR = ".partial"
#: Where ``recorder_node`` puts an episode cut short by a shutdown: complete, readable bags that
#: training (which reads the episode directory itself) does not pick up unless moved back.
INTERRUPTED_DIR = "interrupted"
BAG_VERSION = 8


class RecordingError(RuntimeError):
    """An episode cannot be written; the text names the bag and topic."""


class EpisodeWriter:
    """Writes one episode bag; use as a context manager.

    Args:
        path: the episode's final directory (must not exist yet).
        topics: topic name -> message type to record.
        typestore: a typestore knowing every type (``kil_interfaces.typestore.kil_typestore()``).
        compress: zstd-compress the MCAP chunks (rendered and real images shrink 3-10x).
        metadata: strings stored in the bag's ``custom_data`` (task, seed, success, ...).
        storage: "mcap" (default) or "sqlite3" (the Humble default).
    """

    def __init__(
        self,
        path: str | Path,
        topics: Mapping[str, str],
        typestore: Typestore,
        compress: bool = True,
        metadata: Mapping[str, str] | None = None,
        storage: str = "mcap",
    ) -> None:
        self.path = Path(path)
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise RecordingError(f"{self.path}: storage must be mcap or sqlite3, got {storage!r}")
        if self.path.exists():
            raise RecordingError(f"{self.path}: an episode with this name exists already")
        self.partial_path = self.path.parent / PARTIAL_DIR / self.path.name
        if self.partial_path.exists():
            shutil.rmtree(self.partial_path)
        self.partial_path.parent.mkdir(parents=True, exist_ok=True)
        self._typestore = typestore
        self._writer = Writer(self.partial_path, version=BAG_VERSION, storage_plugin=plugins[storage])
        if compress and storage == "mcap":
            self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._metadata = dict(metadata or {})
        self._writer.open()
        self._connections = {}
        for topic, msgtype in topics.items():
            if msgtype not in typestore.types:
                self._writer.close()
                raise RecordingError(f"{self.path}: topic {topic} has type {msgtype}, unknown to the typestore")
            self._connections[topic] = (self._writer.add_connection(topic, msgtype, typestore=typestore), msgtype)
        self.counts = dict.fromkeys(topics, 0)
        self._closed = False

    def set_metadata(self, key: str, value: str) -> None:
        """Store a string in the bag's custom data (written when the episode is closed)."""
        self._metadata[str(key)] = str(value)

    def write(self, topic: str, stamp_ns: int, message) -> None:
        """Serialise a ``rosbags`` message object and write it at ``stamp_ns``."""
        connection, msgtype = self._connection(topic)
        self._writer.write(connection, int(stamp_ns), self._typestore.serialize_cdr(message, msgtype))
        self.counts[topic] += 1

    def write_serialized(self, topic: str, stamp_ns: int, data: bytes | memoryview) -> None:
        """Write CDR bytes as received (``rclpy.serialization.serialize_message``)."""
        connection, _ = self._connection(topic)
        self._writer.write(connection, int(stamp_ns), data)
        self.counts[topic] += 1

    def _connection(self, topic: str):
        if self._closed:
            raise RecordingError(f"{self.path}: episode already closed")
        try:
            return self._connections[topic]
        except KeyError:
            raise RecordingError(
                f"{self.path}: topic {topic} is not recorded ({', '.join(self._connections)})"
            ) from None

    def close(self) -> Path:
        """Finish the bag (metadata.yaml) and move it to its final name; returns that path."""
        if not self._closed:
            for key, value in self._metadata.items():
                self._writer.set_custom_data(key, value)
            self._writer.close()
            self.partial_path.rename(self.path)
            self._remove_empty_partial_dir()
            self._closed = True
        return self.path

    def _remove_empty_partial_dir(self) -> None:
        try:
            self.partial_path.parent.rmdir()
        except OSError:  # not empty: another writer is busy beside this one
            pass

    def abort(self) -> None:
        """Discard the episode (its partial directory is removed)."""
        if not self._closed:
            self._writer.close()
            shutil.rmtree(self.partial_path, ignore_errors=True)
            self._remove_empty_partial_dir()
            self._closed = True

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        # An exception (including Ctrl-C) discards the unfinished episode; finished ones stay.
        if kind is None:
            self.close()
        else:
            self.abort()


def episode_name(index: int) -> str:
    return f"episode_{index:04d}"


def list_episodes(directory: str | Path) -> list[Path]:
    """Complete episode bags in ``directory`` (those with a metadata.yaml), sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "metadata.yaml").exists()
    )


def remove_partial_episodes(directory: str | Path) -> list[str]:
    """Delete the partial bags interrupted recordings left; returns their episode names."""
    partial = Path(directory) / PARTIAL_DIR
    removed = sorted(p.name for p in partial.iterdir()) if partial.is_dir() else []
    shutil.rmtree(partial, ignore_errors=True)
    return removed


def next_episode_index(directory: str | Path) -> int:
    """One more than the highest episode index in ``directory`` (its ``interrupted/`` included)."""
    directory = Path(directory)
    names = [p.name for p in list_episodes(directory)] + [p.name for p in list_episodes(directory / INTERRUPTED_DIR)]
    indices = [int(n.rsplit("_", 1)[1]) for n in names if n.startswith("episode_") and n.rsplit("_", 1)[1].isdigit()]
    return max(indices, default=-1) + 1


def parse_topics(items: list[str], known: Mapping[str, str] | None = None) -> dict[str, str]:
    """``["/kil/robot_state", "/wrist/image:sensor_msgs/msg/Image"]`` -> topic -> type.

    A bare topic takes its type from ``known`` (default: the demonstration and optional topics).
    """
    known = {**DEMONSTRATION_TOPICS, **OPTIONAL_TOPICS} if known is None else known
    topics = {}
    for item in items:
        topic, _, msgtype = item.strip().partition(":")
        if not topic.startswith("/"):
            raise ValueError(f"topic {item!r}: expected /name or /name:package/msg/Type")
        if not msgtype:
            if topic not in known:
                raise ValueError(f"topic {topic}: its type is not known; give it as {topic}:package/msg/Type")
            msgtype = known[topic]
        if msgtype.count("/") != 2:
            raise ValueError(f"topic {topic}: type {msgtype!r} is not package/msg/Type")
        topics[topic] = msgtype
    if not topics:
        raise ValueError("no topics to record")
    return topics
