"""KeypointArray, ActionChunk and RobotState cross real DDS between two OS processes intact."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

from interfaces_dds_peer import TOPICS
from interfaces_samples import assert_same

PEER = Path(__file__).with_name("interfaces_dds_peer.py")


def test_messages_survive_dds_between_processes(tmp_path: Path) -> None:
    stop_file, out_file = tmp_path / "stop", tmp_path / "received.pkl"
    env = dict(os.environ)  # carries the test run's own ROS_DOMAIN_ID (conftest.py)
    assert env["ROS_DOMAIN_ID"]
    publisher = subprocess.Popen([sys.executable, str(PEER), "publish", str(stop_file)], env=env)
    try:
        echo = subprocess.run(
            [sys.executable, str(PEER), "echo", str(out_file)],
            env=env,
            timeout=60,
            capture_output=True,
            text=True,
        )
    finally:
        stop_file.touch()
        publisher_code = publisher.wait(timeout=30)
    assert echo.returncode == 0, f"echo process failed:\n{echo.stdout}\n{echo.stderr}"
    assert publisher_code == 0
    received = pickle.loads(out_file.read_bytes())
    assert set(received) == set(TOPICS)
    for topic, (_, sample, _, _) in TOPICS.items():
        assert_same(sample(), received[topic])
