"""A simulated arm under a joint position controller, ROS-free: what a vendor's controller does
with streamed joint targets, for the simulator's ``robot:=ur5e`` / ``robot:=lite6`` modes.

The arm (:class:`~kil_sim.arms.ArmModel`) starts at the joints that put its TCP on the scene's
gripper home pose. :meth:`SimulatedArm.command` takes joint positions the way ur_robot_driver's
``forward_position_controller`` does: a target with the wrong number of joints, a non-finite value
or a joint outside its limits is refused with the reason and the last accepted target stays.
:meth:`SimulatedArm.step` moves every joint towards its target no faster than the arm's maximum
joint speed (the controller's speed limit: a far target is approached, never jumped to), and the
TCP pose follows from the forward kinematics. The simulator's gripper body is then pulled onto
that pose, so reach, joint limits, joint speeds and wrist flips act on every episode.
"""

from __future__ import annotations

import numpy as np

from kil_interfaces.rotations import matrix_to_quat, quat_to_matrix
from kil_sim.arms import ArmModel


class SimulatedArm:
    """Joints (n,) of ``model`` tracking position targets within the joint speed limits.

    Args:
        model: the arm. home_position, home_quaternion: the TCP pose (base frame; quaternion
            x, y, z, w) the arm starts at, solved with the arm's inverse kinematics.

    Raises:
        ValueError: the home pose is not reachable by this arm.
    """

    def __init__(self, model: ArmModel, home_position: np.ndarray, home_quaternion: np.ndarray) -> None:
        self.model = model
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = quat_to_matrix(np.asarray(home_quaternion, np.float64)), home_position
        joints = model.inverse(pose, model.home)
        if joints is None:
            raise ValueError(
                f"the {model.name} cannot reach the scene's gripper home pose "
                f"{np.round(np.asarray(home_position), 3).tolist()} m (base frame)"
            )
        self.joints = joints
        self.target = joints.copy()
        self.refused = 0
        self.speed_limited = False  # the last step was slowed to the joint speed limit

    def problem(self, joints) -> str | None:
        """Why the controller would not follow the joint target ``joints``, or None."""
        try:
            target = np.asarray(joints, np.float64)
        except (TypeError, ValueError):
            target = np.array([np.nan])
        n = len(self.model.table)
        if target.shape != (n,):
            return f"a joint command has {target.size} values; the {self.model.name} has {n} joints"
        if not np.isfinite(target).all():
            return "a joint command is not finite"
        beyond = self.model.limit_violations(target)
        return "a joint command beyond the joint limits: " + "; ".join(beyond) if beyond else None

    def command(self, joints) -> str | None:
        """Set the joint target; None when accepted, else why it was refused (target unchanged)."""
        problem = self.problem(joints)
        if problem is not None:
            self.refused += 1
            return problem
        self.target = np.asarray(joints, np.float64).copy()
        return None

    def step(self, dt: float) -> None:
        """Move the joints ``dt`` seconds towards the target at most at the maximum joint speeds."""
        if dt <= 0:
            return
        delta = self.target - self.joints
        limit = self.model.max_speed * dt
        self.speed_limited = bool(np.any(np.abs(delta) > limit + 1e-12))
        self.joints = self.joints + np.clip(delta, -limit, limit)

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """TCP position (3,) and quaternion (4, x, y, z, w) in the base frame, from the joints."""
        return _position_quaternion(self.model.forward(self.joints))

    def tcp_pose_and_links(self) -> tuple[tuple[np.ndarray, np.ndarray], list[tuple[np.ndarray, np.ndarray, float]]]:
        """:meth:`tcp_pose` and the model's link segments (start, end, radius) for the current
        joints, from one forward-kinematics pass."""
        pose, links = self.model.forward_with_links(self.joints)
        return _position_quaternion(pose), links


def _position_quaternion(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A (4, 4) pose as position (3,) and quaternion (4, x, y, z, w)."""
    return pose[:3, 3].copy(), matrix_to_quat(pose[:3, :3])
