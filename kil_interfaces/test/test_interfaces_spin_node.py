"""spin_node, the main() of every kil node, in real processes with real rclpy: SIGTERM and
SIGINT end the node cleanly (its close() runs, exit code 0); a teardown that hangs is ended by
the watchdog with every thread's stack on stderr (exit code 1) instead of a process that never
ends; a second signal ends it at once; an exception in a callback fails the process."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

#: A node whose behaviour the test picks with argv: "hang-close" (close() never returns),
#: "raise" (its timer callback raises), anything else: a well-behaved node.
NODE = textwrap.dedent(
    """
    import sys, time
    from rclpy.node import Node
    from kil_interfaces.node_runtime import spin_node

    MODE = sys.argv[1]

    class Probe(Node):
        def __init__(self):
            super().__init__("spin_probe")
            self.ticks = 0
            self.create_timer(0.05, self.tick)

        def tick(self):
            self.ticks += 1
            if self.ticks == 1:
                print("spinning", flush=True)
            if MODE == "raise" and self.ticks == 3:
                raise RuntimeError("the probe's callback failed")

        def close(self):
            print("close ran", flush=True)
            if MODE == "hang-close":
                while True:
                    time.sleep(1)

    sys.exit(spin_node(Probe, ["probe", "--ros-args", "-r", "__node:=spin_probe"], shutdown_timeout_s=3.0))
    """
)


def _start(tmp_path: Path, mode: str) -> subprocess.Popen:
    script = tmp_path / "probe.py"
    script.write_text(NODE)
    process = subprocess.Popen(
        [sys.executable, str(script), mode], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    line = process.stdout.readline()  # (blocks until the first timer tick or the process's end)
    if mode != "raise":
        assert line.strip() == "spinning", line + process.communicate(timeout=60)[0]
    return process


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    try:
        output = process.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the node did not end within 60 s: {process.communicate()[0]}")
    return process.returncode, output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_node_cleanly(tmp_path: Path, signum: int) -> None:
    process = _start(tmp_path, "plain")
    process.send_signal(signum)
    code, output = _finish(process)
    assert code == 0, output
    assert "close ran" in output and "Traceback" not in output, output


def test_a_hanging_teardown_is_ended_by_the_watchdog(tmp_path: Path) -> None:
    process = _start(tmp_path, "hang-close")
    process.send_signal(signal.SIGTERM)
    code, output = _finish(process)  # (the watchdog fires after shutdown_timeout_s = 3 s)
    assert code == 1, output
    assert "close ran" in output
    assert "Timeout (0:00:03)!" in output and "in close" in output, output  # faulthandler's stack dump


def test_a_second_signal_ends_a_stop_at_once(tmp_path: Path) -> None:
    process = _start(tmp_path, "hang-close")
    process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while process.stdout.readline().strip() != "close ran" and time.monotonic() < deadline:
        pass
    process.send_signal(signal.SIGINT)
    code, output = _finish(process)
    assert code == 1, output
    assert "SIGINT again while stopping: exiting now" in output, output
    assert "Timeout (" not in output, output  # ended by the second signal, not by the watchdog


def test_an_exception_in_a_callback_fails_the_process(tmp_path: Path) -> None:
    process = _start(tmp_path, "raise")
    code, output = _finish(process)
    assert code == 1, output
    assert "RuntimeError: the probe's callback failed" in output and "close ran" in output, output
