"""UR5e kinematics for the adapter to ur_robot_driver (ROS-free): forward kinematics from the
standard DH parameters and the closed-form inverse kinematics of the UR arms (up to 8
solutions: shoulder left/right, wrist up/down, elbow up/down), picking the solution nearest the
current joints.

Frames: the DH base is the controller's ``base`` frame of ur_description, the DH end frame is
``tool0`` (the flange); a fixed TCP offset along the flange's z axis (the gripper) is applied on
top. Joint order: shoulder_pan, shoulder_lift, elbow, wrist_1, wrist_2, wrist_3.
"""

from __future__ import annotations

from dataclasses import dataclass

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
