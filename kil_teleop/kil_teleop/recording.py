"""Writing demonstration episodes as rosbag2 bags: the one writer of the project.

Used by ``recorder_node`` (live topics) and by ``kil_sim``'s offline demonstration generator.
One episode = one bag directory: MCAP storage with zstd-compressed chunks plus
``metadata.yaml`` (rosbag2 format version 8, which ``ros2 bag info/play`` on Jazzy reads), written
with ``rosbags`` so no ROS installation is needed.

Episodes are written under a hidden ``.partial/`` directory beside them and moved into place when
closed, so a directory of episodes only ever contains complete bags. An interrupted episode (a
crash, SIGKILL, power loss) leaves its partial bag behind: :func:`list_episodes` ignores it,
nothing deletes it, and :func:`recover_partial_episodes` (``python -m kil_teleop.recover DIR``)
turns it into a complete bag under ``interrupted/``.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import yaml
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
#: Topics of a running graph worth keeping to replay it in Foxglove or RViz: recorded when named in
#: the recorder's ``topics`` (their types are known, so the name is enough).
VIEW_TOPICS: dict[str, str] = {
    "/kil/keypoints/markers": "visualization_msgs/msg/MarkerArray",
    "/kil/keypoints/image": "sensor_msgs/msg/Image",
    "/kil/keypoints/annotations": "foxglove_msgs/msg/ImageAnnotations",
    "/kil/servo_target": "geometry_msgs/msg/PoseStamped",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    "/tf": "tf2_msgs/msg/TFMessage",
    "/tf_static": "tf2_msgs/msg/TFMessage",
}

PARTIAL_DIR = ".partial"
#: Inside a partial episode: the segment being written (a rosbags bag of its own until closed).
SEGMENTS_DIR = ".open_segment"
#: Where interrupted episodes go (a shutdown, a crash recovered by ``kil_teleop.recover``, a
#: failed write): complete, readable bags that training (which reads the episode directory
#: itself) does not pick up unless moved back.
INTERRUPTED_DIR = "interrupted"
BAG_VERSION = 8
_NS = 1_000_000_000
_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class RecordingError(RuntimeError):
    """An episode cannot be written; the text names the bag and topic."""


class EpisodeWriter:
    """Writes one episode bag; use as a context manager.

    With ``segment_s`` the episode is written as a split bag (as ``ros2 bag record
    --max-bag-duration`` does): a new storage file every ``segment_s`` seconds of message time, and
    after each one closes the episode's ``metadata.yaml`` is rewritten (atomically) to list every
    closed file. A process killed mid-episode therefore leaves under ``.partial/`` a bag that
    rosbag2 readers open as it is, holding every message older than ``segment_s``, each listed file
    a complete MCAP file; :func:`recover_partial_episodes` adds what the open file still holds.

    Args:
        path: the episode's final directory (must not exist yet).
        topics: topic name -> message type to record.
        typestore: a typestore knowing every type (``kil_interfaces.typestore.kil_typestore()``).
        compress: zstd-compress the MCAP chunks (rendered and real images shrink 3-10x).
        metadata: strings stored in the bag's ``custom_data`` (task, seed, success, ...).
        storage: "mcap" (default) or "sqlite3" (the Humble default).
        segment_s: split period in seconds of message time (None: one file, written at close).
    """

    def __init__(
        self,
        path: str | Path,
        topics: Mapping[str, str],
        typestore: Typestore,
        compress: bool = True,
        metadata: Mapping[str, str] | None = None,
        storage: str = "mcap",
        segment_s: float | None = None,
    ) -> None:
        self.path = Path(path)
        if storage not in _PLUGINS:
            raise RecordingError(f"{self.path}: storage must be mcap or sqlite3, got {storage!r}")
        if segment_s is not None and segment_s <= 0:
            raise RecordingError(f"{self.path}: segment_s must be > 0, got {segment_s}")
        if self.path.exists():
            raise RecordingError(f"{self.path}: an episode with this name exists already")
        unknown = [f"{t} ({m})" for t, m in topics.items() if m not in typestore.types]
        if unknown:
            raise RecordingError(f"{self.path}: types unknown to the typestore: {', '.join(unknown)}")
        self.partial_path = self.path.parent / PARTIAL_DIR / self.path.name
        if self.partial_path.exists():
            raise RecordingError(
                f"{self.partial_path}: an interrupted recording of this episode is there; recover it first "
                f"(python -m kil_teleop.recover {self.path.parent})"
            )
        for attempt in range(3):
            try:
                self.partial_path.mkdir(parents=True)
                break
            except FileNotFoundError:  # another writer removed the empty .partial/ between the two mkdirs
                if attempt == 2:
                    raise
        self._typestore, self._topics, self._storage, self._compress = typestore, dict(topics), storage, compress
        self.segment_ns = None if segment_s is None else round(segment_s * _NS)
        self._metadata = dict(metadata or {})
        self._closed_segments: list[dict] = []  # rosbag2 metadata of each closed file
        self._segment = None
        self._segment_index = 0
        self._segment_start_ns: int | None = None
        self.counts = dict.fromkeys(topics, 0)
        self._closed = False
        self._open_segment()

    # --- segments ---------------------------------------------------------------------------------

    def _open_segment(self) -> None:
        # One file: <episode>.mcap (as before splitting existed); split: <episode>_<k>.mcap.
        name = self.path.name if self.segment_ns is None else f"{self.path.name}_{self._segment_index}"
        self._segment_index += 1
        work = self.partial_path / SEGMENTS_DIR / name
        work.parent.mkdir(exist_ok=True)
        writer = Writer(work, version=BAG_VERSION, storage_plugin=_PLUGINS[self._storage])
        if self._compress and self._storage == "mcap":
            writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        writer.open()
        connections = {t: writer.add_connection(t, m, typestore=self._typestore) for t, m in self._topics.items()}
        self._segment = (writer, work, connections)
        self._segment_start_ns = None

    def _close_segment(self, keep_empty: bool = False) -> None:
        """Finish the open file, move it beside the others and rewrite the episode's metadata."""
        if self._segment is None:  # (a Ctrl-C cut the last rotation short: nothing is open)
            return
        writer, work, _ = self._segment
        self._segment = None
        writer.close()
        if self._segment_start_ns is None and not keep_empty:
            shutil.rmtree(work)  # nothing in it
            return
        self._closed_segments.append(_move_bag_files(work, self.partial_path))
        shutil.rmtree(work)
        write_bag_metadata(self.partial_path, self._closed_segments, self._metadata)

    def rotate_if_due(self, now_ns: int) -> None:
        """Close the open file once ``segment_s`` has passed since its first message, even when no
        message arrives (``recorder_node`` calls this from a timer)."""
        if self._closed or self.segment_ns is None:
            return
        if self._segment is None:
            self._open_segment()
        elif self._segment_start_ns is not None and now_ns - self._segment_start_ns >= self.segment_ns:
            self._close_segment()
            self._open_segment()

    # --- writing ----------------------------------------------------------------------------------

    def set_metadata(self, key: str, value: str) -> None:
        """Store a string in the bag's custom data (written when the episode is closed)."""
        self._metadata[str(key)] = str(value)

    def write(self, topic: str, stamp_ns: int, message) -> None:
        """Serialise a ``rosbags`` message object and write it at ``stamp_ns``."""
        self.write_serialized(topic, stamp_ns, self._typestore.serialize_cdr(message, self._topics.get(topic, "")))

    def write_serialized(self, topic: str, stamp_ns: int, data: bytes | memoryview) -> None:
        """Write CDR bytes as received (``rclpy.serialization.serialize_message``)."""
        self._check(topic)
        stamp_ns = int(stamp_ns)
        self.rotate_if_due(stamp_ns)
        if self._segment is None:
            self._open_segment()
        if self._segment_start_ns is None:
            self._segment_start_ns = stamp_ns
        writer, _, connections = self._segment
        writer.write(connections[topic], stamp_ns, data)
        self.counts[topic] += 1

    def _check(self, topic: str) -> None:
        if self._closed:
            raise RecordingError(f"{self.path}: episode already closed")
        if topic not in self._topics:
            raise RecordingError(f"{self.path}: topic {topic} is not recorded ({', '.join(self._topics)})")

    # --- ending -----------------------------------------------------------------------------------

    def close(self) -> Path:
        """Finish the bag (metadata.yaml) and move it to its final name; returns that path."""
        if not self._closed:
            if self._segment is None and not self._closed_segments:
                self._open_segment()  # an episode without messages is still a valid bag
            self._close_segment(keep_empty=not self._closed_segments)
            write_bag_metadata(self.partial_path, self._closed_segments, self._metadata)
            _remove_if_empty(self.partial_path / SEGMENTS_DIR)
            self.partial_path.rename(self.path)
            _remove_if_empty(self.partial_path.parent)
            self._closed = True
        return self.path

    def abandon(self) -> Path:
        """Stop writing after a failure (a full disk): what was closed stays readable under
        ``.partial/``; nothing is deleted. Returns the partial bag's directory."""
        if not self._closed:
            self._closed = True
            if self._segment is not None:
                writer = self._segment[0]
                self._segment = None
                try:
                    writer.close()
                except Exception:
                    pass
        return self.partial_path

    def abort(self) -> None:
        """Discard the episode (asked for: its partial directory is removed)."""
        if not self._closed:
            self.abandon()
            shutil.rmtree(self.partial_path, ignore_errors=True)
            _remove_if_empty(self.partial_path.parent)

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        # An exception (including Ctrl-C) leaves the unfinished episode under .partial/ (nothing
        # is deleted unless asked: recover_partial_episodes keeps it under interrupted/).
        if kind is None:
            self.close()
        else:
            self.abandon()


class QueuedWriter:
    """An :class:`EpisodeWriter` fed from a queue by its own thread, so that whoever calls
    :meth:`write_serialized` (a subscription callback) never waits on compression or the disk.

    A write error (a full disk) stops the writing and is kept in :attr:`error` for the owner to
    report; what was written stays readable. ``max_queued_bytes`` bounds the memory when the disk
    is slower than the input: beyond it messages are dropped and counted in :attr:`dropped`.
    """

    def __init__(self, writer: EpisodeWriter, max_queued_bytes: int = 1 << 30) -> None:
        self.writer = writer
        self.error: OSError | None = None
        self.dropped = 0
        self.max_queued_bytes = max_queued_bytes
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"writer {writer.path.name}", daemon=True)
        self._thread.start()

    @property
    def path(self) -> Path:
        return self.writer.path

    @property
    def counts(self) -> dict[str, int]:
        return self.writer.counts

    @property
    def queued_bytes(self) -> int:
        """Bytes waiting to be written."""
        return self._queued_bytes

    def write_serialized(self, topic: str, stamp_ns: int, data: bytes) -> None:
        with self._lock:
            if self._queued_bytes + len(data) > self.max_queued_bytes:
                self.dropped += 1
                return
            self._queued_bytes += len(data)
        self._queue.put((topic, stamp_ns, data))

    def rotate_if_due(self, now_ns: int) -> None:
        self._queue.put((None, now_ns, b""))

    def _run(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            topic, stamp_ns, data = item
            with self._lock:
                self._queued_bytes -= len(data)
            if self.error is not None:
                continue  # (drain after a failure)
            try:
                if topic is None:
                    self.writer.rotate_if_due(stamp_ns)
                else:
                    self.writer.write_serialized(topic, stamp_ns, data)
            except OSError as error:
                self.error = error

    def drain(self) -> None:
        """Write everything queued and stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def set_metadata(self, key: str, value: str) -> None:
        self.writer.set_metadata(key, value)

    def close(self) -> Path:
        self.drain()
        if self.error is not None:
            raise self.error
        return self.writer.close()

    def abandon(self) -> Path:
        self.drain()
        return self.writer.abandon()

    def abort(self) -> None:
        self.drain()
        self.writer.abort()


_STOP = object()


def _read_bag_metadata(bag: Path) -> dict:
    """The ``rosbag2_bagfile_information`` of ``bag/metadata.yaml``."""
    return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def _move_bag_files(bag: Path, episode: Path) -> dict:
    """Move the storage files of the single-file ``bag`` into ``episode``; returns the bag's
    rosbag2 metadata (which names them), for :func:`write_bag_metadata`."""
    info = _read_bag_metadata(bag)
    for name in info["relative_file_paths"]:
        os.replace(bag / name, episode / name)
    return info


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:  # not empty (another writer, or data to keep) or gone
        pass


def write_bag_metadata(directory: Path, segments: list[dict], custom_data: Mapping[str, str]) -> None:
    """Write ``directory/metadata.yaml`` (rosbag2 format) listing the files of ``segments`` (each
    file's own rosbag2 metadata), atomically (a reader sees the old or the new file, never half)."""
    first = segments[0]
    counts: dict[str, dict] = {}
    for segment in segments:
        for entry in segment["topics_with_message_count"]:
            name = entry["topic_metadata"]["name"]
            counts.setdefault(name, {"topic_metadata": entry["topic_metadata"], "message_count": 0})
            counts[name]["message_count"] += entry["message_count"]
    timed = [s for s in segments if s["message_count"]]
    start = min((s["starting_time"]["nanoseconds_since_epoch"] for s in timed), default=0)
    end = max((s["starting_time"]["nanoseconds_since_epoch"] + s["duration"]["nanoseconds"] for s in timed), default=0)
    info = {
        **first,
        "duration": {"nanoseconds": end - start},
        "starting_time": {"nanoseconds_since_epoch": start},
        "message_count": sum(s["message_count"] for s in segments),
        "topics_with_message_count": list(counts.values()),
        "relative_file_paths": [name for s in segments for name in s["relative_file_paths"]],
        "files": [f for s in segments for f in s.get("files", [])],
        "custom_data": dict(custom_data),
    }
    temporary = directory / ".metadata.yaml.tmp"
    with temporary.open("w") as stream:
        yaml.safe_dump({"rosbag2_bagfile_information": info}, stream, sort_keys=False)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, directory / "metadata.yaml")


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


def partial_episodes(directory: str | Path) -> list[Path]:
    """The episodes interrupted recordings left under ``directory/.partial/``, sorted by name."""
    partial = Path(directory) / PARTIAL_DIR
    return sorted(p for p in partial.iterdir() if p.is_dir()) if partial.is_dir() else []


def recover_partial_episodes(directory: str | Path, typestore: Typestore) -> list[tuple[Path, int]]:
    """Turn every interrupted recording under ``directory/.partial/`` into a complete bag under
    ``directory/interrupted/`` (``ros2 bag reindex`` for kil episodes): the closed files as they are,
    plus the messages the open file still holds (every complete MCAP chunk before the cut); nothing
    is deleted except the temporary files once their messages are copied.

    Returns:
        (recovered bag, messages salvaged from its open file) per episode.
    """
    from kil_teleop.salvage import salvage_mcap

    recovered = []
    for partial in partial_episodes(directory):
        segments = []
        if (partial / "metadata.yaml").exists():
            info = _read_bag_metadata(partial)
            custom = dict(info.get("custom_data") or {})
            segments = [info]  # the closed files, counted as one
        else:
            custom = {}
        salvaged = 0
        for work in sorted((partial / SEGMENTS_DIR).glob("*")) if (partial / SEGMENTS_DIR).is_dir() else []:
            target = partial / f"{work.name}_salvaged"
            try:
                messages = salvage_mcap(sorted(work.glob("*.mcap")), target, typestore)
            except ValueError:  # not MCAP (e.g. sqlite3 storage): left where it is
                continue
            if messages:
                segments.append(_move_bag_files(target, partial))
                salvaged += messages
            shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(work)
        _remove_if_empty(partial / SEGMENTS_DIR)
        if not segments:  # nothing was written before the interruption: left as it is
            _remove_if_empty(partial)
            continue
        custom["ended_by"] = "interrupted (recovered)"
        write_bag_metadata(partial, segments, custom)
        out = Path(directory) / INTERRUPTED_DIR / partial.name
        out.parent.mkdir(exist_ok=True)
        suffix = 1
        while out.exists():  # (never overwrite an earlier recovery)
            out, suffix = out.with_name(f"{partial.name}_{suffix}"), suffix + 1
        partial.rename(out)
        recovered.append((out, salvaged))
    _remove_if_empty(Path(directory) / PARTIAL_DIR)
    return recovered


def next_episode_index(directory: str | Path) -> int:
    """One more than the highest episode index in ``directory`` (its ``interrupted/`` and
    ``.partial/`` included, so an interrupted episode's name is never reused)."""
    directory = Path(directory)
    names = [p.name for p in list_episodes(directory)] + [p.name for p in list_episodes(directory / INTERRUPTED_DIR)]
    names += [p.name for p in partial_episodes(directory)]
    indices = [int(n.rsplit("_", 1)[1]) for n in names if n.startswith("episode_") and n.rsplit("_", 1)[1].isdigit()]
    return max(indices, default=-1) + 1


def parse_topics(items: list[str], known: Mapping[str, str] | None = None) -> dict[str, str]:
    """``["/kil/robot_state", "/wrist/image:sensor_msgs/msg/Image"]`` -> topic -> type.

    A bare topic takes its type from ``known`` (default: the demonstration, optional and view topics).
    """
    known = {**DEMONSTRATION_TOPICS, **OPTIONAL_TOPICS, **VIEW_TOPICS} if known is None else known
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
