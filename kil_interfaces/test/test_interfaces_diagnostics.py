"""``kil_interfaces.diagnostics``: the threshold logic, and the /diagnostics publisher over DDS
(names, levels, values; a check that raises becomes an ERROR, the node keeps running)."""

from __future__ import annotations

import pytest
import rclpy
from rclpy.node import Node

from kil_interfaces.diagnostics import ERROR, OK, STALE, WARN, Check, Diagnostics, RollingStats, level_for, worst
from kil_interfaces.testing import DiagnosticsListener, in_process, spin_executor


def test_levels_follow_the_thresholds() -> None:
    assert [level_for(v, 0.4, 0.8) for v in (0.0, 0.39, 0.4, 0.79, 0.8, 5.0)] == [OK, OK, WARN, WARN, ERROR, ERROR]
    with pytest.raises(ValueError, match=r"warn threshold 0\.9 above the error threshold 0\.8"):
        level_for(0.5, 0.9, 0.8)
    assert worst(OK, WARN) == WARN and worst(WARN, ERROR, OK) == ERROR and worst(STALE, ERROR) == ERROR
    assert worst() == OK
    with pytest.raises(ValueError, match="level must be one of"):
        Check(7, "nonsense")


def test_rolling_percentiles_forget_old_values() -> None:
    stats = RollingStats(size=10)
    assert stats.percentile(50) is None
    for value in range(100):
        stats.add(value)
    assert stats.count == 100
    assert stats.percentile(0) == 90 and stats.percentile(100) == 99  # only the last 10
    assert stats.percentile(50) == pytest.approx(94.5)


class _Checked(Node):
    def __init__(self) -> None:
        super().__init__("checked_node")
        self.level = OK
        self.diagnostics = Diagnostics(self, hardware_id="bench")
        self.diagnostics.add("thing", lambda: Check(self.level, f"level {self.level}", {"x": 1.23456, "n": None}))
        self.diagnostics.add("broken", self._broken)

    def _broken(self) -> Check:
        raise RuntimeError("sensor unplugged")


def test_the_publisher_reports_each_check_and_survives_a_broken_one() -> None:
    with in_process(_Checked, {"diagnostics_period_s": 0.2}) as (node, test, executor):
        listener = DiagnosticsListener(test)

        def spin(seconds: float) -> None:
            spin_executor(executor, seconds)

        status = listener.wait(spin, "checked_node: thing", (OK,))
        assert status.hardware_id == "bench" and status.message == "level 0"
        assert DiagnosticsListener.values(status) == {"x": "1.235", "n": "n/a"}
        broken = listener.wait(spin, "checked_node: broken", (ERROR,))
        assert "RuntimeError: sensor unplugged" in broken.message
        node.level = WARN  # the next period reports the change
        assert listener.wait(spin, "checked_node: thing", (WARN,)).message == "level 1"
        assert rclpy.ok()


def test_period_zero_publishes_nothing_and_a_negative_one_is_refused() -> None:
    with in_process(_Checked, {"diagnostics_period_s": 0.0}) as (node, test, executor):
        listener = DiagnosticsListener(test)
        spin_executor(executor, 1.5)
        assert node.diagnostics.timer is None and listener.latest == {}
    with pytest.raises(ValueError, match="diagnostics_period_s must be >= 0"):
        with in_process(_Checked, {"diagnostics_period_s": -1.0}):
            pass
