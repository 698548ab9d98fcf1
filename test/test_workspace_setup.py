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


def test_pip_sources_become_uv_options_once_each() -> None:
    """set-up's uv install gets the sources pip is configured with (wheels on local disk), each
    once, whatever scope names them and however many one value lists."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from pip_sources import uv_options
    finally:
        sys.path.pop(0)
    listing = (
        ":env:.find-links='/opt/wheels'\n"
        "global.cert='/etc/ssl/certs/ca.crt'\n"
        "global.extra-index-url='file:///a/simple file:///b/simple'\n"
        "global.find-links='/opt/wheels'\n"
        'user.index-url="https://mirror.example/simple"\n'
    )
    assert uv_options(listing) == [
        "--find-links", "/opt/wheels",
        "--extra-index-url", "file:///a/simple",
        "--extra-index-url", "file:///b/simple",
        "--index-url", "https://mirror.example/simple",
    ]  # fmt: skip
    assert uv_options("") == []
