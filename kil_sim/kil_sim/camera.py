"""The simulated RGB-D camera: placement, intrinsics matching the render, depth encoding.

Frames: the MuJoCo camera looks along its -z with y up; the ROS optical frame looks along +z
with x right and y down (REP-103 ``*_optical_frame``), so optical = MuJoCo camera rotated by pi
about x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kil_interfaces.calibration import RigidTransform
from kil_interfaces.data import CameraIntrinsics
from kil_interfaces.rotations import matrix_to_quat


@dataclass(frozen=True)
class CameraConfig:
    """Placement and image format of the scene camera (paper §IV-A: opposite the robot,
    inclined about 45 degrees, as close as possible while seeing the whole workspace).

    Attributes:
        width, height: image size (px).
        fovy_deg: vertical field of view (deg).
        position: camera centre in the robot base frame (m).
        look_at: point the optical axis passes through, in the base frame (m).
        min_range_m, max_range_m: depth outside this range reads 0 (no return), like a
            time-of-flight sensor.
        frame_id: optical frame name in CameraInfo and image headers.
    """

    width: int = 640
    height: int = 480
    fovy_deg: float = 55.0
    position: tuple[float, float, float] = (0.95, 0.0, 0.62)
    look_at: tuple[float, float, float] = (0.33, 0.0, 0.0)
    min_range_m: float = 0.25
    max_range_m: float = 3.0
    frame_id: str = "camera_color_optical_frame"

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"CameraConfig size must be positive, got {self.width}x{self.height}")
        if not 1.0 < self.fovy_deg < 170.0:
            raise ValueError(f"CameraConfig.fovy_deg must be in (1, 170), got {self.fovy_deg}")
        if not 0.0 < self.min_range_m < self.max_range_m:
            raise ValueError(
                f"CameraConfig needs 0 < min_range_m < max_range_m, got {self.min_range_m}, {self.max_range_m}"
            )
        if np.linalg.norm(np.subtract(self.look_at, self.position)) < 1e-6:
            raise ValueError("CameraConfig.look_at must differ from position")
        forward = np.subtract(self.look_at, self.position)
        if np.linalg.norm(np.cross(forward, (0.0, 0.0, 1.0))) < 1e-6 * np.linalg.norm(forward):
            raise ValueError("CameraConfig: the optical axis must not be vertical")

    def intrinsics(self) -> CameraIntrinsics:
        """Pinhole intrinsics of the render: square pixels, centre at ((W-1)/2, (H-1)/2)."""
        f = 0.5 * self.height / math.tan(math.radians(self.fovy_deg) / 2.0)
        return CameraIntrinsics(
            width=self.width,
            height=self.height,
            fx=f,
            fy=f,
            cx=(self.width - 1) / 2.0,
            cy=(self.height - 1) / 2.0,
            distortion_model="plumb_bob",
            distortion=np.zeros(5),
            frame_id=self.frame_id,
        )

    def optical_rotation(self) -> np.ndarray:
        """(3, 3) base_R_optical: columns are the optical x (right), y (down), z (forward) axes."""
        forward = np.subtract(self.look_at, self.position).astype(np.float64)
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, (0.0, 0.0, 1.0))
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        return np.stack([right, down, forward], axis=1)

    def extrinsics(self, base_frame: str) -> RigidTransform:
        """Pose of the optical frame in the robot base frame (what calibration would give)."""
        return RigidTransform(base_frame, self.frame_id, self.position, matrix_to_quat(self.optical_rotation()))

    def mujoco_xyaxes(self) -> str:
        """MJCF ``xyaxes`` of the camera: x right, y up (= -optical y)."""
        rotation = self.optical_rotation()
        axes = np.concatenate([rotation[:, 0], -rotation[:, 1]])
        return " ".join(f"{v:.9f}" for v in axes)


def depth_to_millimetres(depth_m: np.ndarray, min_range_m: float, max_range_m: float) -> np.ndarray:
    """(H, W) float depth (m, along the optical axis) -> (H, W) uint16 mm, 0 = no return."""
    depth_m = np.asarray(depth_m)
    valid = np.isfinite(depth_m) & (depth_m >= min_range_m) & (depth_m <= max_range_m)
    return np.where(valid, np.rint(np.where(valid, depth_m, 0.0) * 1000.0), 0).astype(np.uint16)
