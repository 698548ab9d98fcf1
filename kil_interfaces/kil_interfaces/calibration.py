"""Rigid transforms and the camera calibration YAML (camera optical frame -> robot base).

The calibration file, written by hand-eye calibration on the real setup and by ``kil_sim``::

    parent_frame: link_base                    # robot base frame
    child_frame: camera_color_optical_frame    # camera optical frame (z forward, x right, y down)
    translation: [0.9, 0.0, 0.55]              # m, child origin in the parent frame
    rotation: [x, y, z, w]                     # unit quaternion, parent_R_child

``transform.apply(points_in_child)`` gives the points in the parent frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from kil_interfaces.data import CameraIntrinsics, as_checked_array, check_unit_quaternions
from kil_interfaces.rotations import matrix_to_quat, quat_to_matrix

_FIELDS = ("parent_frame", "child_frame", "translation", "rotation")


class CalibrationError(ValueError):
    """A calibration file is missing, malformed or inconsistent; the text names file and field."""


@dataclass
class RigidTransform:
    """Pose of ``child_frame`` in ``parent_frame``.

    Attributes:
        parent_frame, child_frame: frame names.
        translation: (3,) child origin in the parent frame (m).
        rotation: (4,) unit quaternion (x, y, z, w), parent_R_child.
    """

    parent_frame: str
    child_frame: str
    translation: np.ndarray
    rotation: np.ndarray

    def __post_init__(self) -> None:
        owner = type(self).__name__
        self.translation = as_checked_array(self.translation, np.float64, (3,), owner, "translation")
        self.rotation = as_checked_array(self.rotation, np.float64, (4,), owner, "rotation")
        check_unit_quaternions(self.rotation, owner, "rotation")
        self.rotation = self.rotation / np.linalg.norm(self.rotation)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, parent_frame: str, child_frame: str) -> RigidTransform:
        """From a (4, 4) homogeneous matrix parent_T_child."""
        matrix = np.asarray(matrix, dtype=np.float64)
        return cls(parent_frame, child_frame, matrix[:3, 3], matrix_to_quat(matrix[:3, :3]))

    @property
    def matrix(self) -> np.ndarray:
        """(4, 4) homogeneous matrix parent_T_child."""
        out = np.eye(4)
        out[:3, :3] = quat_to_matrix(self.rotation)
        out[:3, 3] = self.translation
        return out

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) points in the child frame -> (..., 3) in the parent frame."""
        points = np.asarray(points, dtype=np.float64)
        return points @ quat_to_matrix(self.rotation).T + self.translation

    def inverse(self) -> RigidTransform:
        """child_T_parent."""
        inv = np.linalg.inv(self.matrix)
        return RigidTransform.from_matrix(inv, self.child_frame, self.parent_frame)


def read_yaml_mapping(path: str | Path, kind: str, error: type[ValueError] | None = None) -> dict:
    """A YAML file's top-level mapping; missing files, bad YAML and non-mappings raise ``error``
    (default :class:`CalibrationError`) naming the file and ``kind`` (e.g. "calibration file")."""
    error = error or CalibrationError
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: {kind} not found") from None
    except yaml.YAMLError as problem:
        raise error(f"{path}: not valid YAML ({problem})") from None
    if not isinstance(content, dict):
        raise error(f"{path}: expected a mapping")
    return content


def load_extrinsics(path: str | Path) -> RigidTransform:
    """Read a calibration YAML (see the module docstring).

    Raises:
        CalibrationError: naming the file and the missing or malformed field.
    """
    path = Path(path)
    content = read_yaml_mapping(path, "calibration file")
    missing = [name for name in _FIELDS if name not in content]
    if missing:
        raise CalibrationError(f"{path}: missing field(s) {', '.join(missing)}")
    try:
        return RigidTransform(
            str(content["parent_frame"]),
            str(content["child_frame"]),
            np.asarray(content["translation"], dtype=np.float64),
            np.asarray(content["rotation"], dtype=np.float64),
        )
    except (ValueError, TypeError) as error:
        raise CalibrationError(f"{path}: {error}") from None


def save_extrinsics(path: str | Path, transform: RigidTransform) -> None:
    """Write a calibration YAML that :func:`load_extrinsics` reads back exactly."""
    content = {
        "parent_frame": transform.parent_frame,
        "child_frame": transform.child_frame,
        "translation": [float(v) for v in transform.translation],
        "rotation": [float(v) for v in transform.rotation],
    }
    Path(path).write_text(
        "# Camera extrinsics: pose of child_frame (camera optical frame) in parent_frame (robot base).\n"
        "# translation in m; rotation a unit quaternion (x, y, z, w).\n" + yaml.safe_dump(content, sort_keys=False)
    )


def load_intrinsics(path: str | Path) -> CameraIntrinsics:
    """Read a ROS camera-calibration YAML (``camera_calibration_parsers`` format: image_width,
    image_height, camera_name, camera_matrix, distortion_model, distortion_coefficients).

    Raises:
        CalibrationError: naming the file and the missing or malformed field.
    """
    path = Path(path)
    content = read_yaml_mapping(path, "camera info file")
    try:
        k = np.asarray(content["camera_matrix"]["data"], dtype=np.float64).reshape(3, 3)
        width, height = int(content["image_width"]), int(content["image_height"])
    except (KeyError, TypeError, ValueError) as error:
        raise CalibrationError(
            f"{path}: image_width, image_height and camera_matrix.data (9 values) are required ({error})"
        ) from None
    distortion = np.asarray((content.get("distortion_coefficients") or {}).get("data", []), dtype=np.float64)
    try:
        return CameraIntrinsics(
            width,
            height,
            k[0, 0],
            k[1, 1],
            k[0, 2],
            k[1, 2],
            content.get("distortion_model", "plumb_bob"),
            distortion,
            content.get("camera_name", ""),
        )
    except ValueError as error:
        raise CalibrationError(f"{path}: {error}") from None


def save_intrinsics(path: str | Path, intrinsics: CameraIntrinsics) -> None:
    """Write the ROS camera-calibration YAML that :func:`load_intrinsics` reads."""
    content = {
        "image_width": intrinsics.width,
        "image_height": intrinsics.height,
        "camera_name": intrinsics.frame_id,
        "camera_matrix": {"rows": 3, "cols": 3, "data": intrinsics.matrix.reshape(-1).tolist()},
        "distortion_model": intrinsics.distortion_model,
        "distortion_coefficients": {
            "rows": 1,
            "cols": len(intrinsics.distortion),
            "data": intrinsics.distortion.tolist(),
        },
    }
    Path(path).write_text(yaml.safe_dump(content, sort_keys=False))
