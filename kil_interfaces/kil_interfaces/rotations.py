"""Rotation conventions used throughout KIL (the one implementation; tested against SciPy).

- Quaternions: (x, y, z, w), unit norm, as in ``geometry_msgs/Quaternion`` and SciPy.
- Matrices: (3, 3) rotations mapping child-frame vectors into the parent frame.
- 6-D: the first two columns of the matrix, concatenated (c0, c1) -> (6,) (Zhou et al. 2019).
- Euler: roll, pitch, yaw (rad) about the fixed x, y, z axes in that order (ROS RPY,
  R = Rz(yaw) Ry(pitch) Rx(roll); SciPy's ``"xyz"``).

All functions take a leading batch shape ``(...)``.
"""

from __future__ import annotations

import math

import numpy as np


def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (x, y, z, w; normalised here) -> (..., 3, 3) matrices."""
    q = np.asarray(quat, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (x, y, z, w) with w >= 0."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (3, 3):  # one matrix (a control loop's per-tick call): the same method in scalars
        return _one_matrix_to_quat(m)
    batch = m.shape[:-2]
    m = m.reshape(-1, 3, 3)
    # Shepperd's method: pick the largest of 4 candidate denominators for stability.
    diag = np.stack([m[:, 0, 0], m[:, 1, 1], m[:, 2, 2], np.trace(m, axis1=1, axis2=2)], axis=1)
    choice = np.argmax(diag, axis=1)
    q = np.empty((m.shape[0], 4))
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        sel = choice == i
        s = np.sqrt(1.0 + 2.0 * m[sel, i, i] - np.trace(m[sel], axis1=1, axis2=2))
        q[sel, i] = 0.5 * s
        q[sel, j] = (m[sel, j, i] + m[sel, i, j]) / (2.0 * s)
        q[sel, k] = (m[sel, k, i] + m[sel, i, k]) / (2.0 * s)
        q[sel, 3] = (m[sel, k, j] - m[sel, j, k]) / (2.0 * s)
    sel = choice == 3
    s = np.sqrt(1.0 + np.trace(m[sel], axis1=1, axis2=2))
    q[sel, 3] = 0.5 * s
    q[sel, 0] = (m[sel, 2, 1] - m[sel, 1, 2]) / (2.0 * s)
    q[sel, 1] = (m[sel, 0, 2] - m[sel, 2, 0]) / (2.0 * s)
    q[sel, 2] = (m[sel, 1, 0] - m[sel, 0, 1]) / (2.0 * s)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.where(q[:, 3:] < 0.0, -1.0, 1.0)
    return q.reshape(*batch, 4)


def _one_matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """:func:`matrix_to_quat` of one (3, 3) matrix, with Python floats (a tenth of the time)."""
    m = matrix.tolist()
    diag = (m[0][0], m[1][1], m[2][2], m[0][0] + m[1][1] + m[2][2])
    choice = max(range(4), key=diag.__getitem__)  # the first of equal maxima, as np.argmax
    q = [0.0, 0.0, 0.0, 0.0]
    if choice < 3:
        i, j, k = choice, (choice + 1) % 3, (choice + 2) % 3
        s = math.sqrt(1.0 + 2.0 * m[i][i] - diag[3])
        q[i] = 0.5 * s
        q[j] = (m[j][i] + m[i][j]) / (2.0 * s)
        q[k] = (m[k][i] + m[i][k]) / (2.0 * s)
        q[3] = (m[k][j] - m[j][k]) / (2.0 * s)
    else:
        s = math.sqrt(1.0 + diag[3])
        q[3] = 0.5 * s
        q[0] = (m[2][1] - m[1][2]) / (2.0 * s)
        q[1] = (m[0][2] - m[2][0]) / (2.0 * s)
        q[2] = (m[1][0] - m[0][1]) / (2.0 * s)
    norm = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    sign = -1.0 if q[3] < 0.0 else 1.0
    return np.array([sign * v / norm for v in q])


def matrix_to_rot6d(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) matrices -> (..., 6) first two columns (c0, c1)."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def rot6d_to_matrix(rot6d: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt; any non-degenerate input gives a rotation."""
    r = np.asarray(rot6d, dtype=np.float64)
    a, b = r[..., :3], r[..., 3:]
    c0 = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b - np.sum(c0 * b, axis=-1, keepdims=True) * c0
    c1 = b / np.linalg.norm(b, axis=-1, keepdims=True)
    c2 = np.cross(c0, c1)
    return np.stack([c0, c1, c2], axis=-1)


def euler_to_matrix(rpy: np.ndarray) -> np.ndarray:
    """(..., 3) roll, pitch, yaw (rad) -> (..., 3, 3) R = Rz(yaw) Ry(pitch) Rx(roll)."""
    roll, pitch, yaw = np.moveaxis(np.asarray(rpy, dtype=np.float64), -1, 0)
    cr, sr, cp, sp, cy, sy = (
        np.cos(roll),
        np.sin(roll),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(yaw),
        np.sin(yaw),
    )
    return np.stack(
        [
            np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1),
            np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1),
            np.stack([-sp, cp * sr, cp * cr], -1),
        ],
        -2,
    )


def matrix_to_euler(matrix: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) roll, pitch, yaw (rad); pitch in [-pi/2, pi/2].

    At gimbal lock (|pitch| = pi/2) roll is set to 0 and yaw carries the rotation.
    """
    m = np.asarray(matrix, dtype=np.float64)
    # atan2 rather than arcsin(-m20): arcsin loses half the digits near pitch = +-pi/2.
    pitch = np.arctan2(-m[..., 2, 0], np.hypot(m[..., 0, 0], m[..., 1, 0]))
    locked = np.abs(m[..., 2, 0]) > 1.0 - 1e-9
    roll = np.where(locked, 0.0, np.arctan2(m[..., 2, 1], m[..., 2, 2]))
    yaw = np.where(locked, np.arctan2(-m[..., 0, 1], m[..., 1, 1]), np.arctan2(m[..., 1, 0], m[..., 0, 0]))
    return np.stack([roll, pitch, yaw], axis=-1)


def quat_to_euler(quat: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (x, y, z, w) -> (..., 3) roll, pitch, yaw (rad)."""
    return matrix_to_euler(quat_to_matrix(quat))


def euler_to_quat(rpy: np.ndarray) -> np.ndarray:
    """(..., 3) roll, pitch, yaw (rad) -> (..., 4) quaternions (x, y, z, w)."""
    return matrix_to_quat(euler_to_matrix(rpy))


def quat_angle(q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """(...) rotation angle (rad, in [0, pi]) between orientations (..., 4) q0 and q1."""
    q0 = np.asarray(q0, np.float64)
    q1 = np.asarray(q1, np.float64)
    q0 = q0 / np.linalg.norm(q0, axis=-1, keepdims=True)
    q1 = q1 / np.linalg.norm(q1, axis=-1, keepdims=True)
    # Relative rotation conj(q0) * q1; atan2 of its vector and scalar parts keeps full precision
    # near 0 (where arccos of the dot product loses half the digits).
    v0, w0, v1, w1 = q0[..., :3], q0[..., 3:], q1[..., :3], q1[..., 3:]
    vector = w0 * v1 - w1 * v0 - np.cross(v0, v1)
    scalar = np.sum(q0 * q1, axis=-1)
    return 2.0 * np.arctan2(np.linalg.norm(vector, axis=-1), np.abs(scalar))


def quat_slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical interpolation from q0 (t = 0) to q1 (t = 1) along the shorter arc.

    Args:
        q0, q1: (..., 4) unit quaternions (x, y, z, w).
        t: fraction(s), broadcast against the batch shape.

    Returns:
        (..., 4) unit quaternions.
    """
    q0 = np.asarray(q0, np.float64)
    q1 = np.asarray(q1, np.float64)
    t = np.asarray(t, np.float64)[..., None]
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0.0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    close = sin_theta < 1e-6
    safe = np.where(close, 1.0, sin_theta)
    w0 = np.where(close, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(close, t, np.sin(t * theta) / safe)
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)
