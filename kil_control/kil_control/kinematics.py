"""Serial-arm kinematics from standard Denavit-Hartenberg parameters (ROS-free, numpy only):
forward kinematics, the geometric Jacobian, and a damped-least-squares inverse kinematics that
respects joint limits. The UR5e's closed-form IK (``kil_control.ur5e``) and the simulated arms
(``kil_sim.arms``) build on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DHJoint:
    """One revolute joint in standard DH: theta = q + offset, then d along z, a along x, alpha about x."""

    d: float
    a: float
    alpha: float
    offset: float = 0.0


def dh_link(theta: float, d: float, a: float, alpha: float) -> np.ndarray:
    """(4, 4) transform of one standard-DH link."""
    ct, st, ca, sa = np.cos(theta), np.sin(theta), np.cos(alpha), np.sin(alpha)
    return np.array([[ct, -st * ca, st * sa, a * ct], [st, ct * ca, -ct * sa, a * st], [0, sa, ca, d], [0, 0, 0, 1]])


def dh_frames(joints: np.ndarray, table: tuple[DHJoint, ...]) -> list[np.ndarray]:
    """The (4, 4) pose of frame 0..n in the base for joint angles (n,): frames[0] is the base."""
    frames = [np.eye(4)]
    for q, joint in zip(np.asarray(joints, np.float64), table, strict=True):
        frames.append(frames[-1] @ dh_link(q + joint.offset, joint.d, joint.a, joint.alpha))
    return frames


def dh_forward(joints: np.ndarray, table: tuple[DHJoint, ...], tool: np.ndarray | None = None) -> np.ndarray:
    """(4, 4) pose of the last frame (times ``tool``, e.g. a TCP offset) in the base."""
    pose = dh_frames(joints, table)[-1]
    return pose if tool is None else pose @ tool


def jacobian(joints: np.ndarray, table: tuple[DHJoint, ...], tool: np.ndarray | None = None) -> np.ndarray:
    """(6, n) geometric Jacobian of the tool point: rows 0-2 linear, 3-5 angular velocity."""
    frames = dh_frames(joints, table)
    end = frames[-1] if tool is None else frames[-1] @ tool
    columns = []
    for frame in frames[:-1]:  # joint i turns about frame i-1's z axis
        z, origin = frame[:3, 2], frame[:3, 3]
        columns.append(np.concatenate([np.cross(z, end[:3, 3] - origin), z]))
    return np.stack(columns, axis=1)


def pose_error(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(6,) position error (m) and rotation error (axis * angle, rad) from ``current`` to ``target``."""
    delta = target[:3, :3] @ current[:3, :3].T
    angle = np.arccos(np.clip((np.trace(delta) - 1.0) / 2.0, -1.0, 1.0))
    if angle < 1e-9:
        rotation = np.zeros(3)
    elif np.pi - angle < 1e-6:  # 180 degrees: the rotation axis is delta's eigenvector of eigenvalue 1
        values, vectors = np.linalg.eig(delta)
        rotation = np.real(vectors[:, np.argmin(np.abs(values - 1.0))]) * angle
    else:
        vee = np.array([delta[2, 1] - delta[1, 2], delta[0, 2] - delta[2, 0], delta[1, 0] - delta[0, 1]])
        rotation = vee / (2.0 * np.sin(angle)) * angle
    return np.concatenate([target[:3, 3] - current[:3, 3], rotation])


@dataclass(frozen=True)
class IKConfig:
    """Damped least squares: ``damping`` (m), at most ``iterations`` steps of at most ``max_step``
    rad per joint; solved when within ``position_tol`` (m) and ``rotation_tol`` (rad)."""

    damping: float = 0.02
    iterations: int = 200
    max_step: float = 0.3
    position_tol: float = 1e-4
    rotation_tol: float = 1e-3

    def __post_init__(self) -> None:
        if min(self.damping, self.max_step, self.position_tol, self.rotation_tol) <= 0 or self.iterations < 1:
            raise ValueError(f"IKConfig values must be positive: {self}")


def dls_inverse(
    target: np.ndarray,
    seed: np.ndarray,
    table: tuple[DHJoint, ...],
    lower: np.ndarray,
    upper: np.ndarray,
    tool: np.ndarray | None = None,
    config: IKConfig = IKConfig(),
) -> np.ndarray | None:
    """Joint angles (n,) within [lower, upper] whose tool pose is ``target`` (4, 4), found by damped
    least squares from ``seed``; None when it does not converge there (out of reach, or the limits
    block the way from this seed: try another)."""
    q = np.clip(np.asarray(seed, np.float64), lower, upper)
    for _ in range(config.iterations):
        error = pose_error(dh_forward(q, table, tool), target)
        if np.linalg.norm(error[:3]) < config.position_tol and np.linalg.norm(error[3:]) < config.rotation_tol:
            return q
        jac = jacobian(q, table, tool)
        step = jac.T @ np.linalg.solve(jac @ jac.T + config.damping**2 * np.eye(6), error)
        step *= min(1.0, config.max_step / max(float(np.max(np.abs(step))), 1e-12))
        q = np.clip(q + step, lower, upper)
    return None
