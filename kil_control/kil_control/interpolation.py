"""Upsampling 10 Hz action chunks into servo setpoints, with the control path's safety limits.

The one implementation used by ``interpolator_node`` (on the robot), by the simulator's offline
rollouts and by the scripted experts, so that what the simulator trains on is what the robot
executes.

Semantics:
- A chunk's targets are due at ``stamp + i * step``. Only the first ``execute_steps`` targets
  are executed (all when 0); a newer chunk replaces the plan from its own first target on.
- Before a chunk's first target, the setpoint moves from where it was when the chunk arrived
  to that target; between targets, positions are linear and orientations slerped; after the
  last executable target the setpoint holds it.
- Safety, applied to every setpoint: positions clamped into the workspace box; the step from
  the previous setpoint limited by the linear and angular speed limits and by a maximum step
  length (the Lite6's servo mode rejects steps of 10 mm or more); gripper in [0, 1].
- Staleness: when the plan has run out ``stale_after_s`` ago and no chunk has arrived for as long,
  or the newest chunk is older than that when it arrives, the setpoint holds where it is
  (``Setpoint.holding``), until a fresh chunk arrives. (A policy's next chunk is due when its
  previous plan ends: its inference time must not count as staleness.)

Times are integer nanoseconds on one clock (ROS time on the robot, sim time offline).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kil_interfaces.data import ActionChunkData
from kil_interfaces.rotations import quat_angle, quat_slerp


@dataclass(frozen=True)
class SafetyLimits:
    """Limits every setpoint obeys.

    Attributes:
        workspace_min, workspace_max: corners of the allowed TCP box in the base frame (m).
        max_linear_speed: TCP speed limit (m/s).
        max_angular_speed: TCP rotation speed limit (rad/s).
        max_step_m: largest position change between consecutive setpoints (m).
        stale_after_s: hold when chunks stop arriving for this long (s).
    """

    workspace_min: tuple[float, float, float] = (0.05, -0.45, 0.0)
    workspace_max: tuple[float, float, float] = (0.70, 0.45, 0.50)
    max_linear_speed: float = 0.4
    max_angular_speed: float = 2.0
    max_step_m: float = 0.009
    stale_after_s: float = 0.5

    def __post_init__(self) -> None:
        if any(lo >= hi for lo, hi in zip(self.workspace_min, self.workspace_max, strict=True)):
            raise ValueError(
                f"SafetyLimits.workspace_min {self.workspace_min} must be below workspace_max {self.workspace_max}"
            )
        for name in ("max_linear_speed", "max_angular_speed", "max_step_m", "stale_after_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SafetyLimits.{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class InterpolatorConfig:
    """Attributes:
    rate_hz: setpoint rate (Hz); 100-250 for the Lite6's servo mode.
    limits: safety limits.
    """

    rate_hz: float = 200.0
    limits: SafetyLimits = field(default_factory=SafetyLimits)

    def __post_init__(self) -> None:
        if not 1.0 <= self.rate_hz <= 2000.0:
            raise ValueError(f"InterpolatorConfig.rate_hz must be in [1, 2000], got {self.rate_hz}")

    @property
    def period_ns(self) -> int:
        return round(1e9 / self.rate_hz)


@dataclass
class Setpoint:
    """One servo setpoint.

    Attributes:
        position: (3,) TCP position (m, base frame); quaternion: (4,) (x, y, z, w).
        gripper: opening command 0 (closed) .. 1 (open).
        holding: True when holding because the inputs went stale (or before any chunk).
        limited: True when a safety limit changed this setpoint.
    """

    position: np.ndarray
    quaternion: np.ndarray
    gripper: float
    holding: bool
    limited: bool = False


class ChunkInterpolator:
    """Turns timed action chunks into rate-limited servo setpoints.

    Args:
        config: rate and limits.
        position, quaternion, gripper: the robot's current command (the first setpoint holds it).
    """

    def __init__(
        self, config: InterpolatorConfig, position: np.ndarray, quaternion: np.ndarray, gripper: float
    ) -> None:
        self.config = config
        self._position = np.clip(
            np.asarray(position, np.float64), config.limits.workspace_min, config.limits.workspace_max
        )
        self._quaternion = np.asarray(quaternion, np.float64) / np.linalg.norm(quaternion)
        self._gripper = float(np.clip(gripper, 0.0, 1.0))
        self._times: np.ndarray | None = None  # (N+1,) ns: plan knots, knot 0 = start of the plan
        self._positions: np.ndarray | None = None
        self._quaternions: np.ndarray | None = None
        self._grippers: np.ndarray | None = None
        self._last_chunk_received_ns: int | None = None
        self._last_chunk_stamp_ns: int | None = None
        self._last_time_ns: int | None = None
        #: Why the last refused chunk was refused ('' after an accepted one).
        self.last_refusal = ""

    @property
    def has_plan(self) -> bool:
        return self._times is not None

    @property
    def plan_end_ns(self) -> int | None:
        """When the plan's last executable target is due (None before the first chunk)."""
        return None if self._times is None else int(self._times[-1])

    def add_chunk(self, chunk: ActionChunkData, now_ns: int) -> bool:
        """Replace the plan from the chunk's first target on; returns False (reason in
        ``last_refusal``) for a refused chunk.

        Refused: a chunk whose last executable target is already more than ``stale_after_s`` in
        the past (it was delayed, e.g. by a stalled policy), and one whose stamp is not newer than
        the last accepted chunk's (delivered out of order, or repeated).
        """
        steps = chunk.execute_steps or chunk.num_steps
        times = chunk.times_ns()[:steps]
        stale_ns = round(self.config.limits.stale_after_s * 1e9)
        if now_ns - int(times[-1]) > stale_ns:
            self.last_refusal = "it arrived already stale"
            return False
        if self._last_chunk_stamp_ns is not None and chunk.stamp_ns <= self._last_chunk_stamp_ns:
            kind = "repeats" if chunk.stamp_ns == self._last_chunk_stamp_ns else "is older than"
            self.last_refusal = f"its stamp {kind} the previous chunk's"
            return False
        self._last_chunk_stamp_ns = chunk.stamp_ns
        self.last_refusal = ""
        # Knot 0 is the current setpoint at the moment the chunk takes over.
        start = max(now_ns, self._last_time_ns or now_ns)
        keep = times > start
        if not np.any(keep):  # every target is due already: go to the last one
            keep[-1] = True
            times = times.copy()
            times[-1] = start + self.config.period_ns
        self._times = np.concatenate([[start], times[keep]]).astype(np.int64)
        self._positions = np.vstack([self._position, chunk.positions[:steps][keep]])
        self._quaternions = np.vstack([self._quaternion, chunk.quaternions[:steps][keep]])
        self._grippers = np.concatenate([[self._gripper], chunk.gripper[:steps][keep].astype(np.float64)])
        self._last_chunk_received_ns = now_ns
        return True

    def _plan_at(self, now_ns: int) -> tuple[np.ndarray, np.ndarray, float]:
        times = self._times
        if now_ns >= times[-1]:
            return self._positions[-1], self._quaternions[-1], float(self._grippers[-1])
        k = int(np.searchsorted(times, now_ns, side="right")) - 1
        k = max(k, 0)
        alpha = (now_ns - times[k]) / max(1, times[k + 1] - times[k])
        position = (1 - alpha) * self._positions[k] + alpha * self._positions[k + 1]
        quaternion = quat_slerp(self._quaternions[k], self._quaternions[k + 1], alpha)
        gripper = (1 - alpha) * self._grippers[k] + alpha * self._grippers[k + 1]
        return position, quaternion, float(gripper)

    def is_stale(self, now_ns: int) -> bool:
        """True when the plan ran out ``stale_after_s`` ago and no chunk arrived for as long."""
        if self._times is None:
            return True
        stale_ns = round(self.config.limits.stale_after_s * 1e9)
        return now_ns - max(self._last_chunk_received_ns, int(self._times[-1])) > stale_ns

    def setpoint(self, now_ns: int) -> Setpoint:
        """The setpoint for time ``now_ns`` (call at ``config.rate_hz``; times must not go back)."""
        limits = self.config.limits
        dt = 1.0 / self.config.rate_hz if self._last_time_ns is None else max(0.0, (now_ns - self._last_time_ns) * 1e-9)
        self._last_time_ns = now_ns
        if self.is_stale(now_ns):
            return Setpoint(self._position.copy(), self._quaternion.copy(), self._gripper, holding=True)
        position, quaternion, gripper = self._plan_at(now_ns)
        limited = False
        clipped = np.clip(position, limits.workspace_min, limits.workspace_max)
        limited |= not np.array_equal(clipped, position)
        delta = clipped - self._position
        max_move = min(limits.max_step_m, limits.max_linear_speed * dt)
        distance = float(np.linalg.norm(delta))
        if distance > max_move:
            delta *= max_move / distance
            limited = True
        angle = float(quat_angle(self._quaternion, quaternion))
        max_turn = limits.max_angular_speed * dt
        if angle > max_turn:
            quaternion = quat_slerp(self._quaternion, quaternion, max_turn / angle)
            limited = True
        self._position = self._position + delta
        self._quaternion = np.asarray(quaternion, np.float64)
        self._gripper = float(np.clip(gripper, 0.0, 1.0))
        return Setpoint(self._position.copy(), self._quaternion.copy(), self._gripper, holding=False, limited=limited)
