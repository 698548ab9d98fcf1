"""Standard-DH kinematics: the Jacobian against finite differences, the pose error (including a
half turn), and damped least squares reaching a pose within the joint limits or saying it cannot."""

from __future__ import annotations

import numpy as np

from kil_control.kinematics import DHJoint, dh_forward, dls_inverse, jacobian, pose_error
from kil_control.ur5e import DH

TABLE = tuple(DHJoint(d, a, alpha) for d, a, alpha in DH().table())
LOWER, UPPER = np.full(6, -2 * np.pi), np.full(6, 2 * np.pi)


def test_jacobian_matches_finite_differences() -> None:
    q = np.array([0.3, -1.2, 1.1, -0.4, 0.8, 0.2])
    jac = jacobian(q, TABLE)
    eps = 1e-6
    for i in range(6):
        dq = np.zeros(6)
        dq[i] = eps
        numeric = pose_error(dh_forward(q, TABLE), dh_forward(q + dq, TABLE)) / eps
        assert np.allclose(jac[:, i], numeric, atol=1e-5)


def test_pose_error_of_a_half_turn() -> None:
    start = np.eye(4)
    flipped = np.diag([1.0, -1.0, -1.0, 1.0])  # pi about x
    error = pose_error(start, flipped)
    assert np.allclose(np.abs(error[3:]), [np.pi, 0.0, 0.0], atol=1e-9)
    assert np.allclose(pose_error(flipped, flipped), 0.0)


def test_damped_least_squares_reaches_or_refuses() -> None:
    q = np.array([2.8, -1.6, 1.5, -1.4, -1.6, 0.3])
    target = dh_forward(q, TABLE)
    solution = dls_inverse(target, q + 0.2, TABLE, LOWER, UPPER)
    assert solution is not None
    error = pose_error(dh_forward(solution, TABLE), target)
    assert np.linalg.norm(error[:3]) < 1e-4 and np.linalg.norm(error[3:]) < 1e-3
    far = target.copy()
    far[:3, 3] = [2.0, 0.0, 0.5]  # 2 m: beyond a UR5e's 0.85 m
    assert dls_inverse(far, q, TABLE, LOWER, UPPER) is None
    tight_upper = UPPER.copy()
    tight_upper[1] = -1.9  # joint 2 cannot reach -1.6
    limited = dls_inverse(target, q, TABLE, LOWER, tight_upper)
    assert limited is None or limited[1] <= -1.9 + 1e-12
