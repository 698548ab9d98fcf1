"""UR5e kinematics for the adapter to ur_robot_driver (ROS-free): forward kinematics from the
standard DH parameters and the closed-form inverse kinematics of the UR arms (up to 8
solutions: shoulder left/right, wrist up/down, elbow up/down), picking the solution nearest the
current joints.

Frames: the DH base is the controller's ``base`` frame of ur_description, the DH end frame is
``tool0`` (the flange); a fixed TCP offset along the flange's z axis (the gripper) is applied on
top. Joint order: shoulder_pan, shoulder_lift, elbow, wrist_1, wrist_2, wrist_3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kil_control.kinematics import dh_link

JOINT_NAMES = (
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
)

#: Every UR5e joint turns +-360 deg (UR5e technical specifications; ur_description's
#: ``config/ur5e/joint_limits.yaml``).
JOINT_LIMIT_RAD = 2 * np.pi


@dataclass(frozen=True)
class DH:
    """Standard DH parameters (m, rad) of a UR arm (defaults: UR5e, Universal Robots' values)."""

    d1: float = 0.1625
    a2: float = -0.425
    a3: float = -0.3922
    d4: float = 0.1333
    d5: float = 0.0997
    d6: float = 0.0996

    def table(self) -> list[tuple[float, float, float]]:
        """(d, a, alpha) per joint."""
        half = np.pi / 2
        return [(self.d1, 0.0, half), (0.0, self.a2, 0.0), (0.0, self.a3, 0.0), (self.d4, 0.0, half),
                (self.d5, 0.0, -half), (self.d6, 0.0, 0.0)]  # fmt: skip


def forward(joints: np.ndarray, dh: DH = DH()) -> np.ndarray:
    """(6,) joint angles -> (4, 4) pose of tool0 in base."""
    pose = np.eye(4)
    for theta, (d, a, alpha) in zip(np.asarray(joints, np.float64), dh.table(), strict=True):
        pose = pose @ dh_link(theta, d, a, alpha)
    return pose


def _wrap(angle: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def inverse(pose: np.ndarray, dh: DH = DH(), singular_eps: float = 1e-6) -> list[np.ndarray]:
    """Every joint solution (6,) in (-pi, pi] whose tool0 pose is ``pose`` (4, 4); [] if unreachable.

    Near the wrist singularity (sin(q5) ~ 0) q6 is undetermined; it is set to 0 there.
    """
    pose = np.asarray(pose, np.float64)
    table = dh.table()
    solutions = []
    p05 = pose @ np.array([0.0, 0.0, -dh.d6, 1.0])
    radius = float(np.hypot(p05[0], p05[1]))
    if radius < abs(dh.d4):
        return []
    psi = np.arctan2(p05[1], p05[0])
    phi = np.arccos(np.clip(dh.d4 / radius, -1.0, 1.0))
    inv_pose = np.linalg.inv(pose)
    for q1 in (psi + phi + np.pi / 2, psi - phi + np.pi / 2):
        s1, c1 = np.sin(q1), np.cos(q1)
        c5 = (pose[0, 3] * s1 - pose[1, 3] * c1 - dh.d4) / dh.d6
        if abs(c5) > 1.0 + 1e-9:
            continue
        for q5 in (np.arccos(np.clip(c5, -1, 1)), -np.arccos(np.clip(c5, -1, 1))):
            s5 = np.sin(q5)
            if abs(s5) < singular_eps:
                q6 = 0.0
            else:
                x, y = inv_pose[:3, 0], inv_pose[:3, 1]  # base x and y axes seen from tool0
                q6 = np.arctan2((-x[1] * s1 + y[1] * c1) / s5, (x[0] * s1 - y[0] * c1) / s5)
            t01 = dh_link(q1, *table[0])
            t45 = dh_link(q5, *table[4])
            t56 = dh_link(q6, *table[5])
            t14 = np.linalg.inv(t01) @ pose @ np.linalg.inv(t45 @ t56)
            # Joints 2 and 3 make a planar 2-link arm in frame 1's x-y plane, reaching frame 3's
            # origin, which sits d4 behind frame 4's origin along frame 4's -y axis.
            px, py = (t14 @ np.array([0.0, -dh.d4, 0.0, 1.0]))[:2]
            c3 = (px**2 + py**2 - dh.a2**2 - dh.a3**2) / (2 * dh.a2 * dh.a3)
            if abs(c3) > 1.0 + 1e-9:
                continue
            for q3 in (np.arccos(np.clip(c3, -1, 1)), -np.arccos(np.clip(c3, -1, 1))):
                q2 = np.arctan2(py, px) - np.arctan2(dh.a3 * np.sin(q3), dh.a2 + dh.a3 * np.cos(q3))
                t12 = dh_link(q2, *table[1])
                t23 = dh_link(q3, *table[2])
                t34 = np.linalg.inv(t23) @ np.linalg.inv(t12) @ t14
                q4 = np.arctan2(t34[1, 0], t34[0, 0])
                solutions.append(_wrap(np.array([q1, q2, q3, q4, q5, q6])))
    return solutions


def nearest_solution(
    pose: np.ndarray, current: np.ndarray, dh: DH = DH(), limit_rad: float = JOINT_LIMIT_RAD
) -> np.ndarray | None:
    """The IK solution closest to ``current`` (each joint moved by the shortest way) with every
    joint within +-``limit_rad``, or None."""
    current = np.asarray(current, np.float64)
    best, best_cost = None, np.inf
    for solution in inverse(pose, dh):
        candidate = current + _wrap(solution - current)  # the same angles, unwrapped next to current
        if np.any(np.abs(candidate) > limit_rad + 1e-9):
            continue  # the shortest way crosses a joint limit: the controller would refuse it
        cost = float(np.max(np.abs(candidate - current)))
        if cost < best_cost:
            best, best_cost = candidate, cost
    return best


@dataclass(frozen=True)
class JointServoConfig:
    """How a stream of TCP targets becomes joint commands (``JointServo``)."""

    max_step_rad: float = 0.024
    """Largest joint change per command (rad); a longer one is shortened (the arm lags). The
    default at ur5e_node's 125 Hz is 3.0 rad/s, under the UR5e's 180 deg/s joint speed, so the arm
    keeps up with its commands."""
    max_jump_rad: float = 0.15
    """Largest joint change between the IK solutions of consecutive targets (rad); beyond it the
    target is refused: another IK branch (a wrist flip) or a target far off."""
    resync_tolerance_rad: float = 0.2
    """Measured joints this far from the last command: the arm was moved by something else (or
    stopped); the next target counts from the measured joints (rad)."""

    def __post_init__(self) -> None:
        if not 0 < self.max_step_rad < self.max_jump_rad:
            raise ValueError(
                f"JointServoConfig: need 0 < max_step_rad < max_jump_rad, got {self.max_step_rad}, {self.max_jump_rad}"
            )
        if self.resync_tolerance_rad <= 0:
            raise ValueError(f"JointServoConfig: resync_tolerance_rad must be > 0, got {self.resync_tolerance_rad}")


@dataclass
class ServoCommand:
    """One target's outcome: ``joints`` to command (None: refused, the arm holds), why it was
    refused (``refused``: "reach" or "jump", with ``reason``), or why it was shortened."""

    joints: np.ndarray | None
    refused: str = ""
    reason: str = ""
    shortened: str = ""


@dataclass
class JointServo:
    """Joint commands for a stream of flange targets, on one IK branch.

    Each target is solved with the closed-form IK, taking the solution nearest the previous
    target's solution (not the last command: when the arm lags a fast turn, the commands trail
    the targets, and the solution nearest a trailing command can be another branch). A solution
    more than ``max_jump_rad`` from the previous one is refused (consecutive targets are
    milliseconds apart: such a jump is a wrist flip or a target far off, never a path). Commands
    then move towards the solution by at most ``max_step_rad`` each, so the arm follows a fast
    turn at its joint speed instead of being refused.
    """

    config: JointServoConfig = field(default_factory=JointServoConfig)
    dh: DH = field(default_factory=DH)
    solution: np.ndarray | None = None
    command: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the stream: the next target counts from the measured joints."""
        self.solution = self.command = None

    def step(self, flange: np.ndarray, joints: np.ndarray) -> ServoCommand:
        """The command for a flange target (4, 4) in base, given the measured ``joints`` (6,)."""
        joints = np.asarray(joints, np.float64)
        if self.command is not None and np.max(np.abs(joints - self.command)) > self.config.resync_tolerance_rad:
            self.reset()  # the arm is elsewhere: start from its joints
        seed = self.solution if self.solution is not None else joints
        solution = nearest_solution(flange, seed, self.dh)
        if solution is None:
            return ServoCommand(None, "reach", self._unreachable(flange))
        jump = np.abs(solution - seed)
        if jump.max() > self.config.max_jump_rad:
            self.reset()
            joint = JOINT_NAMES[int(np.argmax(jump))]
            reason = (
                f"a {jump.max():.3f} rad {joint} jump from the previous target's solution (another IK branch, "
                f"or a target far off; max_joint_jump_rad {self.config.max_jump_rad})"
            )
            return ServoCommand(None, "jump", reason)
        start = self.command if self.command is not None else joints
        delta = solution - start
        step = float(np.max(np.abs(delta)))
        shortened = ""
        if step > self.config.max_step_rad:
            joint = JOINT_NAMES[int(np.argmax(np.abs(delta)))]
            shortened = f"a {step:.3f} rad {joint} step shortened to max_joint_step_rad {self.config.max_step_rad}"
            delta = delta * (self.config.max_step_rad / step)
        self.solution, self.command = solution, start + delta
        return ServoCommand(self.command.copy(), shortened=shortened)

    def _unreachable(self, flange: np.ndarray) -> str:
        """Why ``flange`` has no solution: out of reach (where the wrist centre is) or only beyond +-360 deg."""
        if inverse(flange, self.dh):
            return "reachable only with a joint beyond +-360 deg from the arm's joints"
        wrist = np.asarray(flange, np.float64) @ np.array([0.0, 0.0, -self.dh.d6, 1.0])
        radius, reach = float(np.hypot(wrist[0], wrist[1])), float(np.linalg.norm(wrist[:3] - [0, 0, self.dh.d1]))
        return (
            f"out of reach: no IK solution (wrist centre {radius:.3f} m from the base axis, shoulder offset d4 "
            f"{self.dh.d4} m; {reach:.3f} m from the shoulder, arm {abs(self.dh.a2) + abs(self.dh.a3):.3f} m)"
        )
