"""EpisodeWriter: real rosbag2 (MCAP) bags read back with rosbags; interrupted episodes never
leave a half-written bag among the finished ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from rclpy.serialization import serialize_message
from rosbags.rosbag2 import Reader

from kil_interfaces import conversion as cv
from kil_interfaces.data import RobotStateData
from kil_interfaces.typestore import kil_typestore
from kil_teleop.recording import (
    DEMONSTRATION_TOPICS,
    EpisodeWriter,
    RecordingError,
    list_episodes,
    remove_partial_episodes,
)

TYPESTORE = kil_typestore()
TYPES = cv.MessageTypes.rosbags(TYPESTORE)


def _state(i: int) -> RobotStateData:
    return RobotStateData(i * 10_000_000, "link_base", [0.3, 0.01 * i, 0.2], [1, 0, 0, 0], 0.5)


def test_written_bag_reads_back(tmp_path: Path) -> None:
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    with EpisodeWriter(tmp_path / "episode_0000", DEMONSTRATION_TOPICS, TYPESTORE, metadata={"task": "t"}) as writer:
        for i in range(20):
            writer.write("/kil/robot_state", i * 10_000_000, cv.robot_state_to_msg(_state(i), TYPES))
        writer.write("/camera/color/image_raw", 5, cv.numpy_to_image(image, "rgb8", 5, "cam", TYPES))
        # rclpy-serialised bytes (what recorder_node receives) go in unchanged.
        writer.write_serialized("/kil/robot_state", 300_000_000, serialize_message(cv.robot_state_to_msg(_state(30))))
        writer.set_metadata("success", "true")
    bag = tmp_path / "episode_0000"
    assert list_episodes(tmp_path) == [bag]
    assert not (tmp_path / ".partial").exists()
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["custom_data"] == {"task": "t", "success": "true"}
    assert info["storage_identifier"] == "mcap" and info["version"] == 8
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts["/kil/robot_state"] == 21 and counts["/camera/color/image_raw"] == 1
        states, images = [], []
        for connection, stamp, raw in reader.messages():
            msg = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
            if connection.topic == "/kil/robot_state":
                states.append((stamp, cv.robot_state_from_msg(msg)))
            else:
                images.append(cv.image_to_numpy(msg))
    assert [s.position[1] for _, s in states] == pytest.approx([0.01 * i for i in range(20)] + [0.3])
    assert all(stamp == state.stamp_ns for stamp, state in states)
    np.testing.assert_array_equal(images[0], image)


def test_exception_discards_only_the_unfinished_episode(tmp_path: Path) -> None:
    with EpisodeWriter(tmp_path / "episode_0000", DEMONSTRATION_TOPICS, TYPESTORE) as writer:
        writer.write("/kil/robot_state", 1, cv.robot_state_to_msg(_state(1), TYPES))
    with pytest.raises(KeyboardInterrupt):
        with EpisodeWriter(tmp_path / "episode_0001", DEMONSTRATION_TOPICS, TYPESTORE) as writer:
            writer.write("/kil/robot_state", 1, cv.robot_state_to_msg(_state(1), TYPES))
            raise KeyboardInterrupt
    assert [p.name for p in list_episodes(tmp_path)] == ["episode_0000"]
    with Reader(tmp_path / "episode_0000") as reader:
        assert reader.message_count == 1


def test_partial_episodes_are_ignored_and_removed(tmp_path: Path) -> None:
    writer = EpisodeWriter(tmp_path / "episode_0003", DEMONSTRATION_TOPICS, TYPESTORE)
    writer.write("/kil/robot_state", 1, cv.robot_state_to_msg(_state(1), TYPES))
    # The process "dies" here: the writer is never closed.
    assert list_episodes(tmp_path) == []
    assert remove_partial_episodes(tmp_path) == ["episode_0003"]
    assert not (tmp_path / ".partial").exists()


def test_errors_name_bag_and_topic(tmp_path: Path) -> None:
    with EpisodeWriter(tmp_path / "e", {"/kil/robot_state": "kil_interfaces/msg/RobotState"}, TYPESTORE) as writer:
        with pytest.raises(RecordingError, match=r"e: topic /camera/color/image_raw is not recorded"):
            writer.write_serialized("/camera/color/image_raw", 0, b"")
    with pytest.raises(RecordingError, match="exists already"):
        EpisodeWriter(tmp_path / "e", {}, TYPESTORE)
    with pytest.raises(RecordingError, match="type foo_msgs/msg/Bar, unknown to the typestore"):
        EpisodeWriter(tmp_path / "f", {"/x": "foo_msgs/msg/Bar"}, TYPESTORE)
