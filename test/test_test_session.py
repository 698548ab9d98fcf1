"""The test session's own set-up (conftest.py): DDS without shared memory, and a test stuck in native
code, where pytest-timeout's signal cannot reach it, ending the run with every thread's stack instead
of holding CI until its limit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STUCK = """
import ctypes

import pytest


@pytest.mark.timeout(2)
def test_stuck_in_native_code():
    libc = ctypes.PyDLL(None)  # PyDLL keeps the GIL: no Python signal handler runs while it waits
    mutex = ctypes.create_string_buffer(64)
    libc.pthread_mutex_init(mutex, None)
    libc.pthread_mutex_lock(mutex)
    libc.pthread_mutex_lock(mutex)  # a default mutex locked twice by one thread: a deadlock


def test_after_the_stuck_one():
    pass
"""


def test_a_test_stuck_in_native_code_ends_the_run_with_its_stack(tmp_path: Path) -> None:
    (tmp_path / "test_stuck.py").write_text(STUCK)
    env = {**os.environ, "KIL_HANG_MARGIN_S": "3"}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"  # for -p conftest
    command = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-o", "timeout=300"]
    command += ["--rootdir", str(tmp_path), str(tmp_path / "test_stuck.py")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "Timeout (0:00:05)!" in output, output[-3000:]  # the marker's 2 s plus the 3 s margin
    assert 'test_stuck.py", line 13 in test_stuck_in_native_code' in output, output[-3000:]
    assert "test_after_the_stuck_one PASSED" not in output  # the run ended there


def test_nodes_of_the_test_session_use_no_shared_memory() -> None:
    """A node started under the session's environment maps no Fast DDS shared-memory segment
    (/dev/shm/fastrtps_*), and two such processes still talk (discovery and data over UDP on
    loopback)."""
    listener = (
        "import rclpy, time\n"
        "from std_msgs.msg import String\n"
        "rclpy.init(); node = rclpy.create_node('listener'); got = []\n"
        "node.create_subscription(String, '/session_check', lambda m: got.append(len(m.data)), 10)\n"
        "deadline = time.monotonic() + 60\n"
        "while time.monotonic() < deadline and not got: rclpy.spin_once(node, timeout_sec=0.1)\n"
        "maps = open('/proc/self/maps').read()\n"
        "print('GOT', got[:1], 'SHM', sorted({l.split()[-1] for l in maps.splitlines() if '/dev/shm/fastrtps' in l}))\n"
    )
    talker = (
        "import rclpy, time\n"
        "from std_msgs.msg import String\n"
        "rclpy.init(); node = rclpy.create_node('talker'); pub = node.create_publisher(String, '/session_check', 10)\n"
        "for _ in range(600):\n"
        "    pub.publish(String(data='x' * 300000)); time.sleep(0.1)\n"
    )
    talking = subprocess.Popen([sys.executable, "-c", talker])
    try:
        done = subprocess.run([sys.executable, "-c", listener], capture_output=True, text=True, timeout=120)
    finally:
        talking.kill()
        talking.wait()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "GOT [300000]" in done.stdout, done.stdout + done.stderr[-2000:]
    assert done.stdout.rstrip().endswith("SHM []"), done.stdout
    # the profile the README points users at is installed with kil_bringup
    installed = ROOT / "install" / "kil_bringup" / "share" / "kil_bringup" / "dds" / "fastdds_loopback_udp.xml"
    assert installed.read_text() == (ROOT / "kil_bringup" / "dds" / "fastdds_loopback_udp.xml").read_text()
