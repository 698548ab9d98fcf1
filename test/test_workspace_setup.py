"""The built workspace works from a new shell: `source install/setup.bash` is all it takes."""

from __future__ import annotations

import os
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


def _fix_cmake_paths():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fix_cmake", ROOT / "tools" / "fix_ros_wheel_cmake_paths.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fix_cmake_paths


def test_cmake_paths_are_rewritten_without_touching_the_installers_cache(tmp_path: Path) -> None:
    """The message wheels' CMake exports name the wheel build machine's include dirs, or (a venv
    made from a uv cache that an earlier fix wrote into) another venv's: both become this
    interpreter's, and the file is replaced, not written through a hard link into the cache."""
    import sysconfig

    import numpy

    fix_cmake_paths = _fix_cmake_paths()
    share = tmp_path / "venv" / "share"
    built = "/opt/python/cp311-cp311"
    exports = {
        "a_msgs": f'INTERFACE_INCLUDE_DIRECTORIES "{built}/include/python3.11;'
        f'{built}/lib/python3.11/site-packages/numpy/_core/include"\n',
        "b_msgs": 'INTERFACE_INCLUDE_DIRECTORIES "/gone/.venv/lib/python3.11/site-packages/numpy/_core/include;'
        '${_IMPORT_PREFIX}/include"\n',
    }
    cache = tmp_path / "cache"
    cache.mkdir()
    for package, text in exports.items():
        (share / package / "cmake").mkdir(parents=True)
        (cache / package).write_text(text)
        os.link(cache / package, share / package / "cmake" / f"export_{package}.cmake")  # as uv installs

    assert fix_cmake_paths(tmp_path / "venv") == 2
    a = (share / "a_msgs" / "cmake" / "export_a_msgs.cmake").read_text()
    b = (share / "b_msgs" / "cmake" / "export_b_msgs.cmake").read_text()
    include, numpy_include = sysconfig.get_paths()["include"], numpy.get_include()
    assert a == f'INTERFACE_INCLUDE_DIRECTORIES "{include};{numpy_include}"\n'
    assert b == f'INTERFACE_INCLUDE_DIRECTORIES "{numpy_include};${{_IMPORT_PREFIX}}/include"\n'
    assert [(cache / p).read_text() for p in exports] == list(exports.values()), "the cache was written"
    assert fix_cmake_paths(tmp_path / "venv") == 0  # idempotent
