"""Action and proprioception vectors (paper §III-C).

- Action (10): absolute TCP position (3), rotation as the first two columns of R (6), gripper
  opening 0..1 (1).
- Proprioception: TCP position (3), orientation, gripper opening (1). The orientation is either
  roll/pitch/yaw (3; the paper's, 7 values in all) or, like the actions, the first two columns
  of R (6; 10 values in all). Roll is wrapped to [0, 2 pi): with the tool pointing down roll is
  near pi, where the usual (-pi, pi] range would jump. Euler angles are singular where the tool
  points horizontally (pitch +-90 deg, a side grasp): there roll and yaw take any values whose
  difference (or sum) is fixed, so a measured pose a fraction of a degree off gives roll and yaw
  anywhere in their range; the 6-D encoding is continuous everywhere.
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


#: Orientation encodings of the proprioception and the vector width each gives.
PROPRIO_ROTATIONS = {"euler": 7, "rot6d": 10}


def proprio_dim(rotation: str = "euler") -> int:
    """Width of the proprioception vector with ``rotation`` ("euler": 7, "rot6d": 10)."""
    if rotation not in PROPRIO_ROTATIONS:
        raise ValueError(f"proprioception rotation must be one of {', '.join(PROPRIO_ROTATIONS)}, got {rotation!r}")
    return PROPRIO_ROTATIONS[rotation]


def proprio_from_pose(
    position: np.ndarray, quaternion: np.ndarray, gripper: np.ndarray, rotation: str = "euler"
) -> np.ndarray:
    """(..., 3), (..., 4) xyzw, (...) -> (..., 7) proprioception with roll/pitch/yaw, or (..., 10)
    with ``rotation="rot6d"`` (the first two columns of R, as in the actions)."""
    proprio_dim(rotation)
    if rotation == "rot6d":
        orientation = matrix_to_rot6d(quat_to_matrix(quaternion))
    else:
        orientation = quat_to_euler(quaternion)
        orientation[..., 0] = np.mod(orientation[..., 0], 2 * np.pi)
    return np.concatenate(
        [np.asarray(position, np.float64), orientation, np.asarray(gripper, np.float64)[..., None]], -1
    )
