"""Lifting pixel keypoints to 3-D: depth at the pixel, camera intrinsics, camera->base extrinsics.

Depth is robust: the median of the valid depth values in a small window around the pixel
(``16UC1`` millimetres with 0 = no return, or ``32FC1`` metres with NaN/0 = no return). A pixel
is undistorted first when the camera has distortion coefficients. No valid depth in the window
means the keypoint is invalid: a point is never made up.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from kil_interfaces.calibration import RigidTransform
from kil_interfaces.data import CameraIntrinsics


@dataclass(frozen=True)
class LiftingConfig:
    """Attributes:
    window: side of the square depth window around the pixel (px, odd).
    min_depth_m, max_depth_m: depth values outside are treated as no return (m).
    """

    window: int = 5
    min_depth_m: float = 0.1
    max_depth_m: float = 5.0

    def __post_init__(self) -> None:
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"lifting.window must be a positive odd number, got {self.window}")
        if not 0 <= self.min_depth_m < self.max_depth_m:
            raise ValueError(
                f"lifting needs 0 <= min_depth_m < max_depth_m, got {self.min_depth_m}, {self.max_depth_m}"
            )


def depth_in_metres(depth: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W) depth image -> float32 metres with NaN where there is no return."""
    if encoding == "16UC1":
        metres = depth.astype(np.float32) / 1000.0
        metres[depth == 0] = np.nan
        return metres
    if encoding == "32FC1":
        metres = depth.astype(np.float32, copy=True)
        metres[~np.isfinite(metres) | (metres == 0)] = np.nan
        return metres
    raise ValueError(f"depth encoding {encoding!r} is not supported; use 16UC1 (mm) or 32FC1 (m)")


def window_depth(
    depth_m: np.ndarray, uv: np.ndarray, config: LiftingConfig, masks: list[np.ndarray | None] | None = None
) -> np.ndarray:
    """(K,) median valid depth (m) around each pixel (K, 2); NaN where there is none.

    ``masks``: per keypoint, its object's (H, W) bool instance mask (or None): the median is then
    over the window's pixels on the object, so a keypoint on a thin part or an outline is not
    lifted from the depth of what lies behind it; a window without object pixels (the point is
    hidden) falls back to all its pixels."""
    h, w = depth_m.shape
    r = config.window // 2
    out = np.full(len(uv), np.nan, np.float32)
    for i, (u, v) in enumerate(np.rint(uv).astype(int)):
        if not (0 <= u < w and 0 <= v < h):
            continue
        rows, cols = slice(max(0, v - r), v + r + 1), slice(max(0, u - r), u + r + 1)
        patch = depth_m[rows, cols]
        usable = np.isfinite(patch) & (patch >= config.min_depth_m) & (patch <= config.max_depth_m)
        mask = masks[i] if masks is not None else None
        if mask is not None and mask.shape == depth_m.shape and (usable & mask[rows, cols]).any():
            usable &= mask[rows, cols]
        valid = patch[usable]
        if valid.size:
            out[i] = np.median(valid)
    return out


def normalized_rays(uv: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """(K, 2) pixels -> (K, 2) undistorted normalised coordinates (x/z, y/z) in the optical frame."""
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    if intrinsics.has_distortion:
        return cv2.undistortPoints(uv[:, None], intrinsics.matrix, intrinsics.distortion).reshape(-1, 2)
    return np.stack([(uv[:, 0] - intrinsics.cx) / intrinsics.fx, (uv[:, 1] - intrinsics.cy) / intrinsics.fy], 1)


def lift(
    uv: np.ndarray,
    depth_m: np.ndarray,
    intrinsics: CameraIntrinsics,
    extrinsics: RigidTransform | None = None,
    config: LiftingConfig | None = None,
    masks: list[np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels -> 3-D points.

    Args:
        uv: (K, 2) pixel coordinates (u right, v down).
        depth_m: (H, W) depth in metres (NaN = no return), aligned to the colour image.
        intrinsics: of the colour image; extrinsics: optical frame -> base (None: stay in the
            optical frame).
        masks: per keypoint, its object's instance mask or None (depth read on the object; see
            :func:`window_depth`).

    Returns:
        points (K, 3) in the base (or optical) frame, zero where invalid; valid (K,) bool.
    """
    config = config or LiftingConfig()
    if depth_m.shape != (intrinsics.height, intrinsics.width):
        h, w = depth_m.shape
        raise ValueError(f"depth image is {w}x{h} but CameraInfo says {intrinsics.width}x{intrinsics.height}")
    z = window_depth(depth_m, uv, config, masks)
    valid = np.isfinite(z)
    rays = normalized_rays(uv, intrinsics)
    points = np.zeros((len(z), 3))
    points[valid] = np.column_stack([rays[valid] * z[valid, None], z[valid]])
    if extrinsics is not None and valid.any():
        points[valid] = extrinsics.apply(points[valid])
    return points, valid
