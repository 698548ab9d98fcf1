"""``/diagnostics`` for every kil node (``diagnostic_msgs/DiagnosticArray``, the topic
``rqt_robot_monitor``, Foxglove's diagnostics panel and ``diagnostic_aggregator`` read).

A node registers named checks; each is a function returning a :class:`Check` (level, one-line
message, key/values) and is evaluated at ``diagnostics_period_s`` (a declared parameter, 1 s; 0 =
off). A status is named ``"<node name>: <check>"`` with the node's ``hardware_id``. A check that
raises reports ERROR with the exception instead of stopping the node: diagnostics never take the
control path down.

The threshold logic is plain Python (:func:`level_for`, :class:`RollingStats`), tested without ROS;
the nodes choose thresholds as parameters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


@dataclass
class Check:
    """One check's outcome: a ``DiagnosticStatus`` level, a one-line message and values."""

    level: int
    message: str
    values: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.level not in LEVEL_NAMES:
            raise ValueError(f"level must be one of {sorted(LEVEL_NAMES)} (OK, WARN, ERROR, STALE), got {self.level}")


def level_for(value: float, warn: float, error: float) -> int:
    """OK below ``warn``, WARN from ``warn``, ERROR from ``error`` (``warn <= error``)."""
    if warn > error:
        raise ValueError(f"warn threshold {warn} above the error threshold {error}")
    return ERROR if value >= error else WARN if value >= warn else OK


def worst(*levels: int) -> int:
    """The most severe of ``levels`` (STALE counts as less severe than ERROR)."""
    order = {OK: 0, WARN: 1, STALE: 2, ERROR: 3}
    return max(levels, key=order.__getitem__, default=OK)


class RollingStats:
    """The last ``size`` values of a measurement (e.g. inference latency) and their percentiles."""

    def __init__(self, size: int = 100) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.values: deque[float] = deque(maxlen=size)
        self.count = 0

    def add(self, value: float) -> None:
        self.values.append(float(value))
        self.count += 1

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) of the window, None when empty."""
        return float(np.percentile(self.values, q)) if self.values else None


def format_value(value: object) -> str:
    """KeyValue text: floats with 4 significant digits, None as 'n/a'."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Diagnostics:
    """Publishes the registered checks of ``node`` on ``/diagnostics``.

    Args:
        node: an rclpy node; ``diagnostics_period_s`` is declared on it.
        hardware_id: the ``hardware_id`` of every status (e.g. the checkpoint or the robot's IP).
    """

    def __init__(self, node, hardware_id: str = "") -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        from kil_interfaces.node_runtime import declare

        self.node = node
        self.hardware_id = hardware_id
        self.checks: dict[str, Callable[[], Check]] = {}
        period = declare(node, "diagnostics_period_s", 1.0, "period of /diagnostics (s); 0 = do not publish")
        if period < 0:
            raise ValueError(f"parameter diagnostics_period_s must be >= 0, got {period}")
        self.publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.timer = node.create_timer(period, self.publish) if period > 0 else None

    def add(self, name: str, check: Callable[[], Check]) -> None:
        """Register ``check`` under ``name`` (reported as ``"<node>: <name>"``)."""
        self.checks[name] = check

    def evaluate(self) -> dict[str, Check]:
        """Every check now; one that raises is an ERROR naming the exception."""
        out = {}
        for name, check in self.checks.items():
            try:
                out[name] = check()
            except Exception as error:
                out[name] = Check(ERROR, f"diagnostic check failed ({type(error).__name__}: {error})")
        return out

    def publish(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        array = DiagnosticArray()
        array.header.stamp = self.node.get_clock().now().to_msg()
        prefix = self.node.get_name()
        for name, check in self.evaluate().items():
            status = DiagnosticStatus()
            status.level = bytes([check.level])
            status.name = f"{prefix}: {name}"
            status.message = check.message
            status.hardware_id = self.hardware_id
            status.values = [KeyValue(key=str(k), value=format_value(v)) for k, v in check.values.items()]
            array.status.append(status)
        self.publisher.publish(array)


def keypoint_validity(keypoints, min_valid: int = 1, min_score: float = 0.0) -> Check:
    """Valid keypoints per object instance of one ``KeypointArrayData``: ERROR below ``min_valid``
    in all, WARN when an object has fewer than half of its keypoints valid, else OK. Values: one
    ``"category[instance]": "valid/total"`` per object, the total, and (``min_score`` > 0) how many
    matches that threshold rejected (invalid with a score below it)."""
    per_object: dict[str, list[int]] = {}
    for category, instance, valid in zip(keypoints.categories, keypoints.instances, keypoints.valid, strict=True):
        counts = per_object.setdefault(f"{category}[{int(instance)}]", [0, 0])
        counts[0] += int(valid)
        counts[1] += 1
    values: dict[str, object] = {name: f"{v}/{n}" for name, (v, n) in per_object.items()}
    total = int(np.sum(keypoints.valid))
    values["valid"] = total
    if min_score > 0:
        values["rejected_by_min_score"] = int(np.sum((np.asarray(keypoints.scores) < min_score) & ~keypoints.valid))
    if total < min_valid:
        return Check(ERROR, f"only {total} valid keypoints (min_valid_keypoints {min_valid})", values)
    weak = [name for name, (v, n) in per_object.items() if v < 0.5 * n]
    if weak:
        return Check(WARN, f"fewer than half of the keypoints valid on {', '.join(weak)}", values)
    return Check(OK, f"{total}/{len(keypoints.valid)} keypoints valid", values)
