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
    next_episode_index,
    partial_episodes,
    recover_partial_episodes,
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


def test_an_exception_keeps_the_unfinished_episode_out_of_the_finished_ones(tmp_path: Path) -> None:
    with EpisodeWriter(tmp_path / "episode_0000", DEMONSTRATION_TOPICS, TYPESTORE) as writer:
        writer.write("/kil/robot_state", 1, cv.robot_state_to_msg(_state(1), TYPES))
    with pytest.raises(KeyboardInterrupt):
        with EpisodeWriter(tmp_path / "episode_0001", DEMONSTRATION_TOPICS, TYPESTORE, segment_s=0.05) as writer:
            for i in range(20):
                writer.write("/kil/robot_state", i * 10_000_000, cv.robot_state_to_msg(_state(i), TYPES))
            raise KeyboardInterrupt
    assert [p.name for p in list_episodes(tmp_path)] == ["episode_0000"]
    with Reader(tmp_path / "episode_0000") as reader:
        assert reader.message_count == 1
    assert [p.name for p in partial_episodes(tmp_path)] == ["episode_0001"]  # kept, not deleted
    assert next_episode_index(tmp_path) == 2  # its name is not reused


def test_a_killed_writer_leaves_a_readable_split_bag_and_recovery_completes_it(tmp_path: Path) -> None:
    """segment_s: the metadata lists every closed file, so the partial bag opens as it is with every
    message older than segment_s; recovery adds the open file's complete chunks and moves the bag
    to interrupted/; nothing is lost or deleted."""
    import mcap.reader

    writer = EpisodeWriter(tmp_path / "episode_0003", DEMONSTRATION_TOPICS, TYPESTORE, segment_s=0.1)
    image = np.zeros((120, 160, 3), np.uint8)
    for i in range(100):  # 1 s of states at 100 Hz, an image every 10th
        writer.write("/kil/robot_state", i * 10_000_000, cv.robot_state_to_msg(_state(i), TYPES))
        if i % 10 == 0:
            writer.write("/camera/color/image_raw", i * 10_000_000, cv.numpy_to_image(image, "rgb8", i, "cam", TYPES))
    # The process "dies" here: the writer is never closed.
    partial = tmp_path / ".partial" / "episode_0003"
    assert list_episodes(tmp_path) == []
    with Reader(partial) as reader:  # the project's reader opens the partial bag as it is
        stamps = [stamp for _, stamp, _ in reader.messages()]
    assert max(stamps) >= 0.85e9 and len(stamps) >= 90 - 10  # all but the open (last) 0.1 s
    listed = yaml.safe_load((partial / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    independent = 0
    for name in listed["relative_file_paths"]:  # each listed file is a complete MCAP file
        with (partial / name).open("rb") as stream:
            independent += sum(1 for _ in mcap.reader.make_reader(stream).iter_messages())
    assert independent == len(stamps)
    ((bag, salvaged),) = recover_partial_episodes(tmp_path, TYPESTORE)
    assert bag == tmp_path / "interrupted" / "episode_0003" and not (tmp_path / ".partial").exists()
    with Reader(bag) as reader:
        # (In this process the open file's last bytes are still in Python's buffer; a killed
        # process's written chunks are salvaged: test_salvage_reads_every_complete_chunk_of_a_cut_file.)
        assert reader.message_count == len(stamps) + salvaged >= len(stamps)
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["custom_data"]["ended_by"] == "interrupted (recovered)"
    assert next_episode_index(tmp_path) == 4


def test_salvage_reads_every_complete_chunk_of_a_cut_file(tmp_path: Path) -> None:
    """A complete MCAP file cut anywhere: the salvaged bag holds exactly the messages of the chunks
    that end before the cut (rosbags closes a chunk every 1 MiB)."""
    from kil_teleop.salvage import salvage_mcap, scan

    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)  # incompressible
    with EpisodeWriter(tmp_path / "whole", DEMONSTRATION_TOPICS, TYPESTORE) as writer:
        for i in range(40):  # 40 x 230 kB: several 1 MiB chunks
            writer.write("/camera/color/image_raw", i, cv.numpy_to_image(image, "rgb8", i, "cam", TYPES))
    (data_file,) = (tmp_path / "whole").glob("*.mcap")
    data = data_file.read_bytes()
    _, channels, everything = scan(data)
    assert len(everything) == 40 and {t for t, _ in channels.values()} >= {"/camera/color/image_raw"}
    counts = []
    for fraction in (0.0, 0.3, 0.6, 0.9):
        cut = tmp_path / f"cut_{fraction}.mcap"
        cut.write_bytes(data[: int(len(data) * fraction)])
        salvaged = salvage_mcap([cut], tmp_path / f"salvaged_{fraction}", TYPESTORE)
        counts.append(salvaged)
        if salvaged:
            with Reader(tmp_path / f"salvaged_{fraction}") as reader:
                stamps = [stamp for _, stamp, _ in reader.messages()]
            assert stamps == list(range(salvaged))  # a prefix, in order, nothing invented
    assert counts[0] == 0 and counts == sorted(counts) and 0 < counts[2] < 40 and counts[3] > counts[1]
    with pytest.raises(ValueError, match=r"x\.mcap: not an MCAP file"):
        (tmp_path / "x.mcap").write_bytes(b"SQLite format 3" + bytes(100))
        salvage_mcap([tmp_path / "x.mcap"], tmp_path / "none", TYPESTORE)


def test_errors_name_bag_and_topic(tmp_path: Path) -> None:
    with EpisodeWriter(tmp_path / "e", {"/kil/robot_state": "kil_interfaces/msg/RobotState"}, TYPESTORE) as writer:
        with pytest.raises(RecordingError, match=r"e: topic /camera/color/image_raw is not recorded"):
            writer.write_serialized("/camera/color/image_raw", 0, b"")
    with pytest.raises(RecordingError, match="exists already"):
        EpisodeWriter(tmp_path / "e", {}, TYPESTORE)
    with pytest.raises(RecordingError, match=r"unknown to the typestore: /x \(foo_msgs/msg/Bar\)"):
        EpisodeWriter(tmp_path / "f", {"/x": "foo_msgs/msg/Bar"}, TYPESTORE)
