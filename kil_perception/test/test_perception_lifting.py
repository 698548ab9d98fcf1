"""Lifting against hand-computed points, distortion, robustness and missing depth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kil_interfaces.calibration import RigidTransform
from kil_interfaces.data import CameraIntrinsics
from kil_perception.lifting import LiftingConfig, depth_in_metres, lift

INTR = CameraIntrinsics(640, 480, 500.0, 500.0, 320.0, 240.0)


def test_hand_computed_point_in_optical_and_base_frames() -> None:
    depth = np.full((480, 640), 1.25, np.float32)
    points, valid = lift(np.array([[420.0, 140.0], [320.0, 240.0]]), depth, INTR)
    # u = 420: x = (420 - 320) / 500 * 1.25 = 0.25; v = 140: y = -0.25; z = 1.25.
    np.testing.assert_allclose(points, [[0.25, -0.25, 1.25], [0.0, 0.0, 1.25]])
    assert valid.all()
    # Camera 1 m above the base origin looking straight down (optical z = -base z, x = base x).
    down = RigidTransform("link_base", "cam", [0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0])
    base, _ = lift(np.array([[420.0, 140.0]]), depth, INTR, down)
    np.testing.assert_allclose(base, [[0.25, 0.25, -0.25]], atol=1e-12)


def test_depth_encodings() -> None:
    mm = np.array([[0, 1500]], np.uint16)
    np.testing.assert_array_equal(depth_in_metres(mm, "16UC1"), [[np.nan, 1.5]])
    m = np.array([[0.0, np.nan, np.inf, 2.0]], np.float32)
    np.testing.assert_array_equal(depth_in_metres(m, "32FC1"), [[np.nan, np.nan, np.nan, 2.0]])
    with pytest.raises(ValueError, match="mono8"):
        depth_in_metres(mm, "mono8")


def test_window_median_resists_outliers_and_holes() -> None:
    depth = np.full((480, 640), 0.8, np.float32)
    depth[100, 100] = np.nan  # no return at the pixel itself
    depth[101, 101] = 3.0  # a flying pixel
    points, valid = lift(np.array([[100.0, 100.0]]), depth, INTR, config=LiftingConfig(window=5))
    assert valid[0] and points[0, 2] == pytest.approx(0.8)


def test_a_keypoint_on_a_thin_part_is_lifted_from_its_object_given_its_mask() -> None:
    """A bottle's neck 2 px wide at 0.5 m before a table at 0.8 m: the 5x5 window's median is the
    table's; with the object's mask it is the neck's. A window with no pixel of the mask (the point
    is hidden) keeps the window's median, and a keypoint without a mask is lifted as before."""
    depth = np.full((480, 640), 0.8, np.float32)
    depth[:, 100:102] = 0.5
    neck = np.zeros((480, 640), bool)
    neck[:, 100:102] = True
    elsewhere = np.zeros((480, 640), bool)
    elsewhere[300:, 300:] = True
    pixels = np.array([[100.0, 100.0], [100.0, 100.0], [100.0, 100.0]])
    plain, _ = lift(pixels, depth, INTR, config=LiftingConfig(window=5))
    assert plain[0, 2] == pytest.approx(0.8)  # the table behind the neck
    points, valid = lift(pixels, depth, INTR, config=LiftingConfig(window=5), masks=[neck, elsewhere, None])
    assert valid.all()
    assert points[:, 2] == pytest.approx([0.5, 0.8, 0.8])


def test_no_depth_means_invalid_never_a_made_up_point() -> None:
    depth = np.full((480, 640), np.nan, np.float32)
    depth[0:10, 0:10] = 4.9
    points, valid = lift(
        np.array([[300.0, 300.0], [5.0, 5.0], [-3.0, 5.0], [700.0, 5.0]]),
        depth,
        INTR,
        config=LiftingConfig(max_depth_m=5.0),
    )
    assert valid.tolist() == [False, True, False, False]
    np.testing.assert_array_equal(points[~valid], 0.0)


def test_distorted_pixels_are_undistorted() -> None:
    intr = CameraIntrinsics(640, 480, 500.0, 500.0, 320.0, 240.0, "plumb_bob", [0.12, -0.3, 0.001, -0.002, 0.05])
    truth = np.array([[0.3, -0.2, 1.4], [-0.1, 0.15, 0.9]])
    pixels, _ = cv2.projectPoints(truth, np.zeros(3), np.zeros(3), intr.matrix, intr.distortion)
    pixels = pixels.reshape(-1, 2)
    depth = np.zeros((480, 640), np.float32)
    for (u, v), z in zip(np.rint(pixels).astype(int), truth[:, 2], strict=True):
        depth[v - 2 : v + 3, u - 2 : u + 3] = z
    points, valid = lift(pixels, depth, intr)
    assert valid.all()
    np.testing.assert_allclose(points, truth, atol=1e-6)


def test_depth_size_mismatch_is_named() -> None:
    with pytest.raises(ValueError, match="depth image is 320x240 but CameraInfo says 640x480"):
        lift(np.zeros((1, 2)), np.ones((240, 320), np.float32), INTR)
