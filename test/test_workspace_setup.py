"""The built workspace works from a new shell: `source install/setup.bash` is all it takes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_new_shell_sources_workspace_and_imports_messages(tmp_path: Path) -> None:
    # A login-free shell with none of this session's environment (no venv, no ROS variables).
    script = (
        f"source {ROOT}/install/setup.bash && cd {tmp_path} && "
        'python -c "from kil_interfaces.msg import KeypointArray, ActionChunk, RobotState; '
        'import kil_interfaces.conversion, rclpy; print(KeypointArray.__module__, rclpy.__file__)"'
    )
    result = subprocess.run(
        [
            "env",
            "-i",
            "HOME=/tmp",
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "bash",
            "--noprofile",
            "--norc",
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    module, rclpy_file = result.stdout.split()
    assert module == "kil_interfaces.msg._keypoint_array"
    assert rclpy_file.startswith(sys.prefix), rclpy_file  # the workspace's own ROS 2 (the venv)
