"""A ``rosbags`` typestore that knows the kil messages, for reading and writing bags without ROS.

The message definitions are the package's own ``msg/*.msg`` files, found in the installed share
directory (``ament_index``) or in a directory given explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

PACKAGE = "kil_interfaces"


#: Interface packages registered too where installed (rosbags' stores lack them): Foxglove's image
#: annotations, published by keypoint_node where foxglove_msgs exists.
OPTIONAL_PACKAGES = ("foxglove_msgs",)


def _package_msg_dir(package: str) -> Path | None:
    """``share/<package>/msg`` on the first ``AMENT_PREFIX_PATH`` entry that has it."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        candidate = Path(prefix) / "share" / package / "msg"
        if prefix and candidate.is_dir():
            return candidate
    return None


def message_dir() -> Path:
    """The directory holding the kil ``*.msg`` files of the sourced workspace.

    Raises:
        FileNotFoundError: when ``kil_interfaces`` is on no ``AMENT_PREFIX_PATH`` entry.
    """
    found = _package_msg_dir(PACKAGE)
    if found is None:
        raise FileNotFoundError(
            f"{PACKAGE} message definitions not found on AMENT_PREFIX_PATH; source the workspace "
            "(source install/setup.bash) or pass msg_dir explicitly"
        )
    return found


def _definitions(msg_dir: Path, package: str) -> dict:
    types = {}
    for path in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
    return types


def kil_typestore(msg_dir: Path | None = None, store: Stores = Stores.ROS2_JAZZY) -> Typestore:
    """A typestore of the given ROS distribution with the kil messages registered, and those of
    :data:`OPTIONAL_PACKAGES` that are installed.

    Args:
        msg_dir: directory of the kil ``*.msg`` files; default :func:`message_dir`.
        store: base typestore (ROS2_JAZZY; ROS2_HUMBLE for Humble bags).
    """
    msg_dir = Path(msg_dir) if msg_dir is not None else message_dir()
    typestore = get_typestore(store)
    types = _definitions(msg_dir, PACKAGE)
    if not types:
        raise FileNotFoundError(f"no *.msg files in {msg_dir}")
    for package in OPTIONAL_PACKAGES:
        package_dir = _package_msg_dir(package)
        if package_dir is not None and not any(name.startswith(f"{package}/") for name in typestore.types):
            try:
                types.update(_definitions(package_dir, package))
            except Exception:  # (a release whose definitions rosbags cannot parse: bags go without it)
                continue
    typestore.register(types)
    return typestore


def topic_messages(bag: str | Path, topic: str, typestore: Typestore | None = None) -> Iterator[tuple[int, object]]:
    """(bag timestamp ns, deserialised ``rosbags`` message) of every message on ``topic``, in order.

    Raises:
        ValueError: naming the bag's topics, when ``topic`` is not among them.
    """
    from rosbags.rosbag2 import Reader

    typestore = typestore or kil_typestore()
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            topics = ", ".join(sorted({c.topic for c in reader.connections}))
            raise ValueError(f"{bag}: no topic {topic} (topics: {topics})")
        for connection, stamp, raw in reader.messages(connections=connections):
            yield stamp, typestore.deserialize_cdr(raw, connection.msgtype)
