"""Action and proprioception vectors (paper §III-C).

- Action (10): absolute TCP position (3), rotation as the first two columns of R (6), gripper
  opening 0..1 (1).
- Proprioception (7): TCP position (3), roll/pitch/yaw (3), gripper opening (1). Roll is wrapped
  to [0, 2 pi): with the tool pointing down roll is near pi, where the usual (-pi, pi] range
  would jump.
"""

from __future__ import annotations

import numpy as np

from kil_interfaces.rotations import matrix_to_quat, matrix_to_rot6d, quat_to_euler, quat_to_matrix, rot6d_to_matrix


def action_from_pose(position: np.ndarray, quaternion: np.ndarray, gripper: np.ndarray) -> np.ndarray:
    """(..., 3), (..., 4) xyzw, (...) -> (..., 10) actions."""
    rot6d = matrix_to_rot6d(quat_to_matrix(quaternion))
    return np.concatenate([np.asarray(position, np.float64), rot6d, np.asarray(gripper, np.float64)[..., None]], -1)


def pose_from_action(action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(..., 10) actions -> position (..., 3), unit quaternion (..., 4), gripper clipped to [0, 1] (...)."""
    action = np.asarray(action, np.float64)
    quaternion = matrix_to_quat(rot6d_to_matrix(action[..., 3:9]))
    return action[..., :3], quaternion, np.clip(action[..., 9], 0.0, 1.0)


def proprio_from_pose(position: np.ndarray, quaternion: np.ndarray, gripper: np.ndarray) -> np.ndarray:
    """(..., 3), (..., 4) xyzw, (...) -> (..., 7) proprioception."""
    rpy = quat_to_euler(quaternion)
    rpy[..., 0] = np.mod(rpy[..., 0], 2 * np.pi)
    return np.concatenate([np.asarray(position, np.float64), rpy, np.asarray(gripper, np.float64)[..., None]], -1)
