"""Helpers for tests that talk to running nodes over DDS (every package's node tests use them)."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

_DOMAIN_LOCKS: list = []  # held open for the process's life: its claimed domains stay its own


def claim_ros_domain() -> int:
    """A DDS domain (1-100) that no other process on this machine has claimed: each domain has a
    lock file in the temp directory, and the first one this process can lock (from a pid-based
    offset on) is claimed until the process exits. Test runs set ``ROS_DOMAIN_ID`` to it, so two
    runs (or a run and a developer's tests) on one machine never see each other's nodes.

    Raises:
        RuntimeError: all 100 domains are claimed.
    """
    start = os.getpid() % 100
    for k in range(100):
        domain = 1 + (start + k) % 100
        handle = open(os.path.join(tempfile.gettempdir(), f"kil-ros-domain-{domain}.lock"), "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _DOMAIN_LOCKS.append(handle)
        return domain
    raise RuntimeError("every DDS domain 1-100 is claimed by another process on this machine")


def call_service(node, kind, service: str, request=None, timeout_s: float = 60.0, retry: bool = True):
    """Call service ``service`` of type ``kind`` from ``node`` and return its response. With
    ``retry`` (for idempotent requests) it asks again every 5 s while no answer comes: a restarted
    or killed node's endpoints linger in discovery until their lease ends, so a first request can
    go to a server that is gone while the new one is not yet matched. An earlier request stays
    awaited beside the later ones and the first answer wins: a live server that is merely slow
    (a recorder closing a large bag) answers the request it got first, not its repeat.

    Raises:
        AssertionError: no answer within ``timeout_s``.
    """
    import rclpy

    client = node.create_client(kind, service)
    request = kind.Request() if request is None else request
    deadline = time.monotonic() + timeout_s
    pending: list = []
    asked_at = -float("inf")
    try:
        while time.monotonic() < deadline:
            for future in pending:
                if future.done() and future.result() is not None:
                    return future.result()
            if (retry or not pending) and time.monotonic() - asked_at >= 5.0 and client.service_is_ready():
                pending.append(client.call_async(request))
                asked_at = time.monotonic()
            elif not pending:
                client.wait_for_service(timeout_sec=min(1.0, max(0.0, deadline - time.monotonic())))
                continue
            rclpy.spin_once(node, timeout_sec=min(0.1, max(0.0, deadline - time.monotonic())))
        raise AssertionError(f"{service} did not answer within {timeout_s} s")
    finally:
        for future in pending:
            client.remove_pending_request(future)
        node.destroy_client(client)


def call_trigger(node, service: str, timeout_s: float = 60.0):
    """Call a ``std_srvs/Trigger`` service (retrying, see ``call_service``); its response."""
    from std_srvs.srv import Trigger

    return call_service(node, Trigger, service, timeout_s=timeout_s)


def lifecycle_state(node, managed: str, timeout_s: float = 60.0) -> str:
    """The label of managed node ``managed``'s state (``/name/get_state``, retried)."""
    from lifecycle_msgs.srv import GetState

    return call_service(node, GetState, f"{managed}/get_state", timeout_s=timeout_s).current_state.label


def change_lifecycle_state(node, managed: str, transition: int, timeout_s: float = 60.0) -> bool:
    """Ask managed node ``managed`` for ``transition`` (a ``lifecycle_msgs/Transition`` id); whether
    it succeeded. A transition is not idempotent, so it is asked once, after an answered
    ``get_state`` has shown that the live server (not a lingering dead one) is matched."""
    from lifecycle_msgs.srv import ChangeState

    lifecycle_state(node, managed, timeout_s)
    request = ChangeState.Request()
    request.transition.id = transition
    return call_service(node, ChangeState, f"{managed}/change_state", request, timeout_s, retry=False).success


@contextmanager
def in_process(factory, parameters: dict[str, object]) -> Iterator[tuple]:
    """A node made by ``factory`` in this process (its parameters given as ``-p name:=value``
    overrides; write ``''`` for an empty string), a test node, and one executor serving both, for
    tests that reach into a running node (e.g. to inject a fault). rclpy is shut down at exit.

    Yields:
        (node, test node, executor).
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    args = ["--ros-args", *(a for name, value in parameters.items() for a in ("-p", f"{name}:={value}"))]
    rclpy.init(args=args)
    executor = SingleThreadedExecutor()
    try:
        node = factory()
        test = rclpy.create_node(f"{node.get_name()}_test")
        executor.add_node(node)
        executor.add_node(test)
        yield node, test, executor
    finally:
        executor.shutdown()
        rclpy.try_shutdown()


def spin_executor(executor, seconds: float) -> None:
    """Let ``executor`` serve every ready callback for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.01)


class DiagnosticsListener:
    """The newest ``/diagnostics`` status of each name, as a monitor would see it.

    ``wait(spin, name, levels)`` spins (``spin(seconds)``) until the status ``name`` has one of
    ``levels`` (0 OK, 1 WARN, 2 ERROR), and returns it.
    """

    def __init__(self, node) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.latest: dict[str, object] = {}
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_array, 10)

    def _on_array(self, msg) -> None:
        for status in msg.status:
            self.latest[status.name] = status

    @staticmethod
    def level(status) -> int:
        return status.level[0] if isinstance(status.level, bytes) else int(status.level)

    @staticmethod
    def values(status) -> dict[str, str]:
        return {kv.key: kv.value for kv in status.values}

    def wait(self, spin, name: str, levels: tuple[int, ...], timeout_s: float = 60.0, message: str = "", until=None):
        """The status ``name`` once its level is in ``levels``, its message contains ``message`` and
        ``until(values)`` holds (``values``: its key/values as a dict; None = no condition).

        Raises:
            AssertionError: not within ``timeout_s``; says what was last seen.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.latest.get(name)
            if status is not None and self.level(status) in levels and message in status.message:
                if until is None or until(self.values(status)):
                    return status
            spin(0.1)
        status = self.latest.get(name)
        seen = "nothing" if status is None else f"level {self.level(status)}: {status.message!r}"
        wanted = f"level {levels}" + (f" with {message!r}" if message else "")
        raise AssertionError(f"/diagnostics {name!r} never reached {wanted} in {timeout_s} s (last: {seen})")


def stop_process(process, timeout_s: float = 20.0) -> str:
    """Terminate a node process started with a text stdout pipe; its output (killed if it does not
    exit within ``timeout_s``)."""
    import subprocess

    process.terminate()
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output or ""


def spin_while_alive(node, done, timeout_s: float, processes, period_s: float = 0.1) -> bool:
    """Spin ``node`` until ``done()`` or ``timeout_s`` (waiting at most ``period_s`` per callback);
    fails as soon as one of ``processes`` exits."""
    import rclpy

    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=period_s)
        assert all(p.poll() is None for p in processes), "a node exited"
    return bool(done())


#: Environment variable every process of one test run inherits (its value: the run's pid), so the
#: processes a test started, and theirs, can be found again after it (see :func:`processes_of_run`).
RUN_MARKER = "KIL_TEST_RUN"


def processes_of_run(marker: str, exclude: int | None = None) -> dict[int, str]:
    """Live processes (not zombies) whose environment holds ``RUN_MARKER=marker``: pid -> command line.

    Reads /proc, so it finds grandchildren and orphans too (a node started by a launcher that died);
    a zombie's environment reads empty, and other users' processes are unreadable: neither is listed."""
    wanted = f"{RUN_MARKER}={marker}".encode()
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == exclude:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if wanted not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                found[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def describe_processes(processes: dict[int, str]) -> str:
    """``pid: command line`` of each process (commands cut at 160 characters), ``; ``-separated."""
    return "; ".join(f"{pid}: {command[:160]}" for pid, command in processes.items())


def reap_leftovers(marker: str, exclude: int | None = None, grace_s: float = 5.0) -> dict[int, str]:
    """Wait up to ``grace_s`` for the run's processes to end, then SIGKILL the rest; returns those
    that had to be killed (pid -> command line). A test that leaves nodes running would otherwise
    starve every later test of CPU on a small machine."""
    import signal

    deadline = time.monotonic() + grace_s
    left = processes_of_run(marker, exclude)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = processes_of_run(marker, exclude)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left
