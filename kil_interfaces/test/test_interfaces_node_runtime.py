"""Warning helpers of every node: once per kind, or at most once per period per kind."""

from __future__ import annotations

import time

from kil_interfaces.node_runtime import ThrottledWarning, WarnOnce


class Recorder:
    """Collects what a logger would print."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, text: str) -> None:
        self.lines.append(text)


def test_warn_once_per_kind() -> None:
    log = Recorder()
    warn = WarnOnce(log)
    for _ in range(3):
        warn("stale", "inputs are stale")
    warn("mismatch", "keypoint count differs")
    assert log.lines == [
        "inputs are stale (further occurrences are not logged)",
        "keypoint count differs (further occurrences are not logged)",
    ]


def test_throttled_warning_per_kind_and_period() -> None:
    log = Recorder()
    warn = ThrottledWarning(log, period_s=0.2, prefix="frame dropped: ")
    for _ in range(5):
        warn("size", "sizes differ")
        warn("encoding", "mono8 is not colour")
    assert log.lines == ["frame dropped: sizes differ", "frame dropped: mono8 is not colour"]
    time.sleep(0.25)
    warn("size", "sizes differ")
    assert log.lines[-1] == "frame dropped: sizes differ" and len(log.lines) == 3
