"""record_demos: real rosbag2 episodes with the demonstration topics; Ctrl-C keeps finished
episodes and a second run resumes; episodes recorded in several processes are those one process
records."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader

from kil_eval.record_demos import record
from kil_interfaces import conversion as cv
from kil_interfaces.calibration import load_extrinsics
from kil_interfaces.typestore import kil_typestore
from kil_sim.camera import CameraConfig
from kil_teleop.recording import DEMONSTRATION_TOPICS, list_episodes

TYPESTORE = kil_typestore()


def test_recorded_episode_holds_every_stream(tmp_path: Path) -> None:
    paths = record("pick_pen", 1, tmp_path, camera_hz=5.0, width=160, height=120, progress=False)
    assert [p.name for p in paths] == ["episode_0000"]
    stamps: dict[str, list[int]] = defaultdict(list)
    first: dict[str, object] = {}
    with Reader(paths[0]) as reader:
        oracle = {"/kil/keypoints/oracle": "kil_interfaces/msg/KeypointArray"}
        assert {c.topic: c.msgtype for c in reader.connections} == {**DEMONSTRATION_TOPICS, **oracle}
        for connection, stamp, raw in reader.messages():
            stamps[connection.topic].append(stamp)
            first.setdefault(connection.topic, TYPESTORE.deserialize_cdr(raw, connection.msgtype))
    duration = (stamps["/kil/robot_state"][-1] - stamps["/kil/robot_state"][0]) / 1e9
    assert duration > 3.0
    for topic, rate in [("/kil/robot_state", 100), ("/kil/action_chunk", 10), ("/camera/color/image_raw", 5)]:
        assert abs(np.median(np.diff(stamps[topic])) / 1e9 - 1.0 / rate) < 1e-3, topic
    rgb = cv.image_to_numpy(first["/camera/color/image_raw"])
    depth = cv.image_to_numpy(first["/camera/depth/image_raw"])
    assert rgb.shape == (120, 160, 3) and depth.shape == (120, 160) and depth.dtype == np.uint16
    assert 300 < np.median(depth[depth > 0]) < 1500  # the table, in millimetres
    intrinsics = cv.camera_info_from_msg(first["/camera/color/camera_info"])
    expected = CameraConfig(width=160, height=120).intrinsics()
    assert (intrinsics.fx, intrinsics.cx, intrinsics.frame_id) == (expected.fx, expected.cx, expected.frame_id)
    chunk = cv.action_chunk_from_msg(first["/kil/action_chunk"])
    assert chunk.num_steps == 1 and chunk.step_ns == 100_000_000
    extrinsics = load_extrinsics(tmp_path / "calibration.yaml")
    np.testing.assert_allclose(extrinsics.translation, CameraConfig().position)
    assert "success: 'true'" in (paths[0] / "metadata.yaml").read_text()


def _digest(path: Path) -> str:
    return hashlib.sha256((path / f"{path.name}.mcap").read_bytes()).hexdigest()


def test_interrupt_keeps_finished_episodes_and_resumes(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "kil_eval.record_demos",
        "--task",
        "place_mouse",
        "--out",
        str(tmp_path),
        "--camera-hz",
        "5",
        "--width",
        "160",
        "--height",
        "120",
    ]
    # 50 episodes cannot finish before the signal arrives.
    process = subprocess.Popen(
        [*command, "--episodes", "50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not list_episodes(tmp_path) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    kept = list_episodes(tmp_path)
    assert process.returncode == 130, err
    assert "complete episode(s) kept" in err
    assert 1 <= len(kept) < 3
    digests = {p.name: _digest(p) for p in kept}
    for path in kept:
        with Reader(path) as reader:
            assert reader.message_count > 100
    resumed = subprocess.run(
        [*command, "--episodes", "3"], capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )
    assert resumed.returncode == 0, resumed.stderr
    final = list_episodes(tmp_path)
    assert [p.name for p in final] == ["episode_0000", "episode_0001", "episode_0002"]
    assert {p.name: _digest(p) for p in final if p.name in digests} == digests  # untouched
    assert not (tmp_path / ".partial").exists()


def _contents(path: Path) -> tuple[dict, dict[str, int], bytes]:
    """An episode's configuration metadata, message count per topic and last colour frame."""
    import yaml

    custom = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"]
    counts: dict[str, int] = defaultdict(int)
    last = b""
    with Reader(path) as reader:
        for connection, _, raw in reader.messages():
            counts[connection.topic] += 1
            if connection.topic == "/camera/color/image_raw":
                last = bytes(TYPESTORE.deserialize_cdr(raw, connection.msgtype).data)
    keys = ("configuration", "seed", "variants", "instance_categories", "success")
    return {k: custom[k] for k in keys}, dict(counts), last


def test_episodes_recorded_in_processes_are_those_one_process_records(tmp_path: Path) -> None:
    one = record("place_mouse", 3, tmp_path / "one", camera_hz=5.0, width=96, height=72, progress=False)
    # Through the command line: the worker processes (and multiprocessing's helper) end with it.
    command = [
        sys.executable, "-m", "kil_eval.record_demos", "--task", "place_mouse", "--episodes", "3",
        "--out", str(tmp_path / "two"), "--camera-hz", "5", "--width", "96", "--height", "72", "--jobs", "2",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    two = list_episodes(tmp_path / "two")
    assert [p.name for p in two] == [p.name for p in one] == ["episode_0000", "episode_0001", "episode_0002"]
    for a, b in zip(one, two, strict=True):
        assert _contents(b) == _contents(a), b.name
    assert not (tmp_path / "two" / ".partial").exists()
    # An episode missing from the middle (a run stopped while another process went on) is recorded
    # again from its own configuration; the others are left as they are.
    kept = {p.name: _digest(p) for p in two if p.name != "episode_0001"}
    shutil.rmtree(two[1])
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    again = list_episodes(tmp_path / "two")
    assert [p.name for p in again] == ["episode_0000", "episode_0001", "episode_0002"]
    assert {p.name: _digest(p) for p in again if p.name in kept} == kept
    assert _contents(again[1]) == _contents(one[1])


def test_record_train_and_roll_out_a_policy_on_oracle_keypoints(tmp_path: Path) -> None:
    """The offline KIL loop without perception: demos -> training -> the policy drives the sim."""
    from kil_eval.controllers import PolicyController
    from kil_policy.data import TopicConfig, read_episode
    from kil_policy.runner import PolicyRunner
    from kil_policy.train import parse_config, train
    from kil_sim.rollout import RolloutConfig, run_episode
    from kil_sim.tasks import evaluation_configurations

    record("place_mouse", 2, tmp_path / "demos", camera_hz=2.0, width=64, height=48, progress=False)
    episode = read_episode(tmp_path / "demos" / "episode_0000", TopicConfig(keypoints="/kil/keypoints/oracle"))
    assert episode.keypoints.shape[1] == 9 and episode.valid.all()  # mouse (4) + pad (centre, 4 corners)
    small = [
        "policy.head.down_dims=[16,32,64]",
        "policy.encoder.d_model=16",
        "policy.encoder.num_layers=1",
        "policy.encoder.num_heads=2",
        "policy.encoder.mlp_dim=32",
        "policy.head.inference_steps=4",
    ]
    result = train(
        parse_config(
            None,
            [
                f"data=[{tmp_path / 'demos'}]",
                f"out={tmp_path / 'run'}",
                "steps=20",
                "batch_size=16",
                "topics.keypoints=/kil/keypoints/oracle",
                *small,
            ],
        )
    )
    chunks = []

    class Counting(PolicyController):
        def act(self, world, stamp_ns):
            chunk = super().act(world, stamp_ns)
            if chunk is not None:
                chunks.append(chunk)
            return chunk

    config = evaluation_configurations("place_mouse", "in_distribution", 1)[0]
    world = config.make_world()
    start = world.commanded_tcp_pose()[0]
    outcome = run_episode(
        config, Counting(PolicyRunner(result.policy)), RolloutConfig(camera_hz=0, max_duration_s=3.0), world=world
    )
    assert outcome.control_steps == 30 and len(chunks) == 4  # a chunk every 8 ticks of 10 Hz
    assert all(c.num_steps == 16 and c.execute_steps == 9 for c in chunks)
    assert np.linalg.norm(world.commanded_tcp_pose()[0] - start) > 0.01  # the policy's targets moved the arm
    world.close()
