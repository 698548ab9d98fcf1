"""UFactory Lite6 through xarm_ros2, ROS-free part: unit conversions and the servo safety gate.

xarm_ros2 (``xarm_api``, namespace ``/ufactory`` for the Lite6) takes Cartesian servo targets on
the ``set_servo_cartesian`` service (xarm_msgs/srv/MoveCartesian, ``pose`` = x, y, z in mm and
roll, pitch, yaw in rad with R = Rz(yaw) Ry(pitch) Rx(roll)) in mode 1 at 100-250 Hz. The
controller rejects (or jerks towards) a target far from its current pose, so
:class:`ServoGate` lets a target through only when

- the robot state is fresh (``state_timeout_s``) and reports no error, in servo mode (1);
- the first target after (re)starting is within ``first_target_tolerance_m`` of the measured
  pose (the interpolator starts at the robot's pose, so this holds unless something is wrong);
  a first target farther off but within ``resync_distance_m`` (a stream that began before servo
  mode, or after the arm crept a few millimetres) is ramped in: the gate sends points from the
  measured pose towards the latest target, ``ramp_step_m`` per command, until it has caught up with
  the stream (a stream farther off is refused: the interpolator restarts from the arm);
- every later step is shorter than ``max_step_m`` (xArm's rule: < 10 mm per servo command);
- a new stream (the first target, or the first after a refusal) starts only once the arm has
  stopped: the states the gate has observed moved less than ``settle_distance_m`` over the last
  ``settle_window_s``. An arm still moving is on its way to the last target the controller
  accepted, and the controller measures a servo step from that target, not from the pose it
  reports (so it does in the simulated controller; for a real xArm the documentation searched
  does not say which, and waiting makes the two the same): starting at the measured pose of a
  moving arm faulted the simulated controller with a 40 mm step after a stale-input hold.

Which targets go out while the controller has not answered earlier ones is ``lite6_node``'s rule
(each within ``max_step_m`` of every target the controller may measure it from); when targets
waited for answers and the stream moved on more than a step meanwhile, :meth:`ServoGate.catch_up`
ramps towards it as it ramps a stream in, instead of refusing the gap as a jump.

Anything else is refused with the reason, and the gate re-synchronises: the next target must
again start at the measured pose. So it does when the measured pose is more than
``resync_distance_m`` from the last target sent (something else moved the arm, or the controller
stopped following): a stream is only continued where the arm is. The robot state comes from ``robot_states``
(xarm_msgs/msg/RobotMsg: ``pose`` in the same units, ``state``, ``mode``, ``err``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from kil_interfaces.rotations import euler_to_quat, quat_to_euler

SERVO_MODE = 1


def pose_to_xarm(position_m: np.ndarray, quaternion: np.ndarray) -> list[float]:
    """Base-frame TCP pose (m, quaternion x, y, z, w) -> xArm [x, y, z (mm), roll, pitch, yaw (rad)]."""
    rpy = quat_to_euler(np.asarray(quaternion, np.float64))
    return [*(float(v) * 1000.0 for v in position_m), *(float(v) for v in rpy)]


def xarm_to_pose(pose: list[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """xArm [x, y, z (mm), roll, pitch, yaw (rad)] -> (position m, quaternion x, y, z, w)."""
    pose = np.asarray(pose, np.float64)
    if pose.shape != (6,) or not np.isfinite(pose).all():
        raise ValueError(f"an xArm pose is 6 finite numbers (mm, rad), got {pose.tolist()}")
    return pose[:3] / 1000.0, euler_to_quat(pose[3:])


@dataclass
class XArmState:
    """What the gate needs from ``robot_states``: stamp, pose (m, quaternion), mode, error code."""

    stamp_ns: int
    position: np.ndarray
    quaternion: np.ndarray
    mode: int
    error: int


@dataclass
class ServoGateConfig:
    """The gate's rules (see the module docstring); distances in m, per servo command."""

    max_step_m: float = 0.0095
    first_target_tolerance_m: float = 0.005
    state_timeout_s: float = 0.2
    resync_distance_m: float = 0.05
    ramp_step_m: float = 0.002
    """Step of a ramp-in (0.4 m/s at 200 Hz: faster than the interpolator's setpoints move, so the
    ramp catches up with the stream)."""
    settle_window_s: float = 0.1
    settle_distance_m: float = 0.001
    """A new stream waits while the observed arm moved more than this within ``settle_window_s``."""

    def __post_init__(self) -> None:
        if not 0 < self.max_step_m < 0.01:
            raise ValueError(f"max_step_m must be in (0, 0.01) m (xArm servo rule), got {self.max_step_m}")
        if self.first_target_tolerance_m <= 0 or self.state_timeout_s <= 0 or self.resync_distance_m <= 0:
            raise ValueError("first_target_tolerance_m, state_timeout_s and resync_distance_m must be > 0")
        if not 0 < self.ramp_step_m <= self.max_step_m:
            raise ValueError(f"ramp_step_m must be in (0, max_step_m {self.max_step_m}], got {self.ramp_step_m}")
        if self.settle_window_s <= 0 or self.settle_distance_m <= 0:
            raise ValueError(
                f"settle_window_s and settle_distance_m must be > 0, got {self.settle_window_s}, "
                f"{self.settle_distance_m}"
            )


class ServoGate:
    """Decides what may be sent for each servo target (see the module docstring)."""

    def __init__(self, config: ServoGateConfig | None = None) -> None:
        self.config = config or ServoGateConfig()
        self.last_sent: np.ndarray | None = None
        self.ramping = False
        self.catch_step: float | None = None  # a catch-up's step (m) instead of ramp_step_m
        self._seen: deque[tuple[int, np.ndarray]] = deque()  # (stamp ns, position) of observed states

    def observe(self, state: XArmState) -> None:
        """Keep a robot state (as received) to tell whether the arm has stopped."""
        self._seen.append((state.stamp_ns, np.asarray(state.position, np.float64).copy()))
        horizon = state.stamp_ns - int(2 * self.config.settle_window_s * 1e9)
        while self._seen and self._seen[0][0] < horizon:
            self._seen.popleft()

    def motion(self) -> float:
        """How far (m) the observed arm is from where it was within the last ``settle_window_s``
        (0 before two states were observed)."""
        if not self._seen:
            return 0.0
        newest_ns, newest = self._seen[-1]
        since = newest_ns - int(self.config.settle_window_s * 1e9)
        return max(float(np.linalg.norm(p - newest)) for t, p in self._seen if t >= since)

    def resync(self) -> None:
        """The next target must start at the measured pose again."""
        self.last_sent = None
        self.ramping = False
        self.catch_step = None

    def snapshot(self) -> tuple:
        """The stream's state (for :meth:`restore`: a target admitted but then not sent)."""
        return self.last_sent, self.ramping, self.catch_step

    def restore(self, snapshot: tuple) -> None:
        """Back to a :meth:`snapshot`: as if the targets admitted since had not been."""
        self.last_sent, self.ramping, self.catch_step = snapshot

    def catch_up(self, target_m: np.ndarray, stream_step_m: float) -> None:
        """The stream went on while targets waited (for the controller's answers): when ``target_m``
        is now more than a step from the last target sent, or a ramp-in is under way (and the gap is
        within ``resync_distance_m``), the gate ramps towards it in steps of twice the stream's own
        step ``stream_step_m`` (at least ``ramp_step_m``, at most ``max_step_m``), so that the arm
        catches up at no more than twice the stream's speed, instead of refusing the gap as a jump."""
        if self.last_sent is None:
            return
        gap = float(np.linalg.norm(np.asarray(target_m, np.float64) - self.last_sent))
        c = self.config
        if gap > c.resync_distance_m or (gap <= c.max_step_m and not self.ramping):
            return
        self.ramping = True
        self.catch_step = min(c.max_step_m, max(c.ramp_step_m, 2.0 * float(stream_step_m)))

    def admit(self, target_m: np.ndarray, state: XArmState | None, now_ns: int) -> tuple[np.ndarray | None, str]:
        """The position (3,) to send for ``target_m`` now — the target, or during a ramp-in a point
        on the way to it — and a note (ramping in); or None and why it is refused."""
        target = np.asarray(target_m, np.float64)
        problem = self._problem(state, now_ns)
        if problem is None:
            position, problem = self._position(target, state)
            if position is not None:
                self.last_sent = position.copy()
                return position, problem
        self.resync()
        return None, problem

    def _problem(self, state: XArmState | None, now_ns: int) -> str | None:
        c = self.config
        if state is None:
            return "no robot state received yet"
        age = (now_ns - state.stamp_ns) / 1e9
        if age > c.state_timeout_s:
            return f"robot state is {age:.2f} s old (state_timeout_s {c.state_timeout_s})"
        if state.error:
            return f"the controller reports error {state.error}; clear it (clean_error) and restart servo mode"
        if state.mode != SERVO_MODE:
            return f"the controller is in mode {state.mode}, not servo mode {SERVO_MODE}"
        return None

    def _position(self, target: np.ndarray, state: XArmState) -> tuple[np.ndarray | None, str]:
        c = self.config
        if self.last_sent is not None and np.linalg.norm(state.position - self.last_sent) > c.resync_distance_m:
            self.resync()  # the arm is elsewhere: the stream must start again at its pose
        if self.last_sent is None:
            moved = self.motion()
            if moved > c.settle_distance_m:
                return None, (
                    f"the arm is still moving ({1000 * moved:.1f} mm in the last {c.settle_window_s} s) towards "
                    "the controller's last target: a new stream starts once it has stopped"
                )
            offset = float(np.linalg.norm(target - state.position))
            if offset <= c.first_target_tolerance_m:
                return target, ""
            if offset > c.resync_distance_m:
                return None, (
                    f"the first target is {1000 * offset:.1f} mm from the robot's pose (beyond resync_distance_m "
                    f"{c.resync_distance_m}); servo streams must start at the pose"
                )
            self.ramping = True
            return self._ramp(state.position, target, offset)
        gap = float(np.linalg.norm(target - self.last_sent))
        if self.ramping:
            if gap > c.resync_distance_m:
                return None, f"the stream ran {1000 * gap:.1f} mm ahead of the ramp-in (resync_distance_m)"
            return self._ramp(self.last_sent, target, gap)
        if gap > c.max_step_m:
            limit = f"max_step_m {c.max_step_m}"
            return None, f"a {1000 * gap:.1f} mm step ({limit}); is the interpolator's step limit lower?"
        return target, ""

    def _ramp(self, start: np.ndarray, target: np.ndarray, gap: float) -> tuple[np.ndarray, str]:
        """The next ramp-in point from ``start`` towards ``target`` (``gap`` apart)."""
        step = self.catch_step or self.config.ramp_step_m
        if gap <= step + 1e-9:  # (a last step of exactly the step, give or take rounding)
            self.ramping, self.catch_step = False, None  # caught up: the stream goes through as it is
            return target, ""
        return start + (target - start) * (step / gap), f"ramping in: {1000 * gap:.1f} mm behind the stream"


class GripperLatch:
    """Gripper commands (0 closed .. 1 open) -> open/close actions, only when the side changes."""

    def __init__(self, close_below: float = 0.4, open_above: float = 0.6) -> None:
        if not 0.0 <= close_below < open_above <= 1.0:
            raise ValueError(f"need 0 <= close_below < open_above <= 1, got {close_below}, {open_above}")
        self.close_below, self.open_above = close_below, open_above
        self.state: str | None = None  # "open" / "close" as last commanded

    def update(self, command: float) -> str | None:
        """ "open" or "close" when the gripper must be told so now, else None."""
        wanted = "close" if command <= self.close_below else "open" if command >= self.open_above else self.state
        if wanted is None or wanted == self.state:
            return None
        self.state = wanted
        return wanted
