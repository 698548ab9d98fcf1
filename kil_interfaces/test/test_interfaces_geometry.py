"""Rotation conventions against SciPy; calibration YAML; CameraInfo conversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from kil_interfaces import conversion as cv
from kil_interfaces import rotations as rot
from kil_interfaces.calibration import CalibrationError, RigidTransform, load_extrinsics, save_extrinsics
from kil_interfaces.data import CameraIntrinsics

RNG = np.random.default_rng(3)
ROTATIONS = Rotation.random(200, random_state=4)


def test_quat_to_matrix_matches_scipy() -> None:
    np.testing.assert_allclose(rot.quat_to_matrix(ROTATIONS.as_quat()), ROTATIONS.as_matrix(), atol=1e-12)


def test_matrix_to_quat_matches_scipy_up_to_sign() -> None:
    # Include the Shepperd branches: identity, 180-degree turns about each axis.
    extra = Rotation.from_rotvec(np.pi * np.eye(3))
    mats = np.concatenate([ROTATIONS.as_matrix(), extra.as_matrix(), np.eye(3)[None]])
    quats = rot.matrix_to_quat(mats)
    expected = Rotation.from_matrix(mats).as_quat()
    assert np.all(quats[:, 3] >= 0)
    np.testing.assert_allclose(np.abs(np.sum(quats * expected, axis=1)), 1.0, atol=1e-12)
    # one matrix at a time (the scalar path a control loop takes): the batch's result, bit for bit
    one_by_one = np.stack([rot.matrix_to_quat(m) for m in mats])
    np.testing.assert_array_equal(one_by_one, quats)


def test_euler_matches_scipy_xyz() -> None:
    rpy = rot.matrix_to_euler(ROTATIONS.as_matrix())
    np.testing.assert_allclose(rpy, ROTATIONS.as_euler("xyz"), atol=1e-9)
    np.testing.assert_allclose(rot.euler_to_matrix(rpy), ROTATIONS.as_matrix(), atol=1e-12)
    np.testing.assert_allclose(rot.quat_to_euler(ROTATIONS.as_quat()), rpy, atol=1e-9)


def test_euler_gimbal_lock_round_trips_the_rotation() -> None:
    mats = Rotation.from_euler("xyz", [[0.3, np.pi / 2, -0.4], [0.0, -np.pi / 2, 1.2]]).as_matrix()
    np.testing.assert_allclose(rot.euler_to_matrix(rot.matrix_to_euler(mats)), mats, atol=1e-9)


def test_rot6d_round_trip_and_gram_schmidt() -> None:
    mats = ROTATIONS.as_matrix()
    six = rot.matrix_to_rot6d(mats)
    np.testing.assert_allclose(six[:, :3], mats[:, :, 0])
    np.testing.assert_allclose(rot.rot6d_to_matrix(six), mats, atol=1e-12)
    noisy = rot.rot6d_to_matrix(six + RNG.normal(scale=0.05, size=six.shape))
    np.testing.assert_allclose(noisy @ np.swapaxes(noisy, 1, 2), np.broadcast_to(np.eye(3), noisy.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(noisy), 1.0, atol=1e-12)


def test_batch_shapes_are_kept() -> None:
    q = ROTATIONS.as_quat()[:6].reshape(2, 3, 4)
    assert rot.quat_to_matrix(q).shape == (2, 3, 3, 3)
    assert rot.matrix_to_quat(rot.quat_to_matrix(q)).shape == (2, 3, 4)
    assert rot.quat_to_euler(q).shape == (2, 3, 3)


def _transform() -> RigidTransform:
    return RigidTransform("link_base", "camera_color_optical_frame", [0.9, -0.05, 0.55], ROTATIONS[0].as_quat())


def test_rigid_transform_apply_and_inverse() -> None:
    tf = _transform()
    points = RNG.normal(size=(10, 3))
    expected = ROTATIONS[0].apply(points) + tf.translation
    np.testing.assert_allclose(tf.apply(points), expected, atol=1e-12)
    np.testing.assert_allclose(tf.inverse().apply(tf.apply(points)), points, atol=1e-12)
    assert (tf.inverse().parent_frame, tf.inverse().child_frame) == (
        "camera_color_optical_frame",
        "link_base",
    )


def test_calibration_yaml_round_trip(tmp_path: Path) -> None:
    tf = _transform()
    save_extrinsics(tmp_path / "cal.yaml", tf)
    back = load_extrinsics(tmp_path / "cal.yaml")
    assert (back.parent_frame, back.child_frame) == (tf.parent_frame, tf.child_frame)
    np.testing.assert_array_equal(back.translation, tf.translation)
    np.testing.assert_allclose(back.rotation, tf.rotation, atol=1e-15)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "parent_frame: a\nchild_frame: b\ntranslation: [0, 0, 0]\n",
            r"cal\.yaml: missing field\(s\) rotation",
        ),
        (
            "parent_frame: a\nchild_frame: b\ntranslation: [0, 0]\nrotation: [0, 0, 0, 1]\n",
            r"translation must have shape",
        ),
        (
            "parent_frame: a\nchild_frame: b\ntranslation: [0, 0, 0]\nrotation: [0, 0, 0, 2]\n",
            r"unit quaternions",
        ),
        ("[1, 2", r"not valid YAML"),
        ("- 1\n- 2\n", r"expected a mapping"),
    ],
)
def test_calibration_errors_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "cal.yaml").write_text(text)
    with pytest.raises(CalibrationError, match=message):
        load_extrinsics(tmp_path / "cal.yaml")


def test_missing_calibration_file(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"nope\.yaml: calibration file not found"):
        load_extrinsics(tmp_path / "nope.yaml")


@pytest.mark.parametrize("backend", ["rclpy", "rosbags"])
def test_camera_info_round_trip(backend: str) -> None:
    from kil_interfaces.typestore import kil_typestore

    types = cv.MessageTypes.rclpy() if backend == "rclpy" else cv.MessageTypes.rosbags(kil_typestore())
    intr = CameraIntrinsics(640, 480, 605.5, 604.25, 319.5, 241.0, "plumb_bob", [0.1, -0.2, 0.0, 0.001, 0.0], "cam")
    msg = cv.camera_info_to_msg(intr, stamp_ns=42, types=types)
    assert list(msg.p) == [605.5, 0, 319.5, 0, 0, 604.25, 241.0, 0, 0, 0, 1, 0]
    back = cv.camera_info_from_msg(msg)
    assert (back.width, back.height, back.fx, back.fy, back.cx, back.cy) == (
        640,
        480,
        605.5,
        604.25,
        319.5,
        241.0,
    )
    assert back.frame_id == "cam" and back.distortion_model == "plumb_bob" and back.has_distortion
    np.testing.assert_array_equal(back.distortion, intr.distortion)


def test_camera_info_with_empty_k_is_rejected() -> None:
    msg = cv.camera_info_to_msg(CameraIntrinsics(4, 3, 1, 1, 1.5, 1))
    msg.k = [0.0] * 9
    with pytest.raises(cv.ConversionError, match=r"/camera/color/camera_info\.k must hold a 3x3 camera matrix"):
        cv.camera_info_from_msg(msg, what="/camera/color/camera_info")


def test_projection_matches_camera_matrix() -> None:
    intr = CameraIntrinsics(640, 480, 500, 510, 319.5, 239.5)
    points = np.array([[0.1, -0.2, 1.5], [0.0, 0.0, 0.7]])
    homogeneous = points @ intr.matrix.T
    np.testing.assert_allclose(intr.project(points), homogeneous[:, :2] / homogeneous[:, 2:])
    np.testing.assert_allclose(intr.project(points)[1], [319.5, 239.5])


def test_slerp_matches_scipy_and_takes_the_short_arc() -> None:
    from scipy.spatial.transform import Slerp

    q0, q1 = ROTATIONS[1].as_quat(), ROTATIONS[2].as_quat()
    ts = np.linspace(0, 1, 7)
    expected = Slerp([0, 1], Rotation.from_quat([q0, q1]))(ts).as_quat()
    got = rot.quat_slerp(q0, -q1, ts)  # -q1 is the same orientation: must not take the long way
    np.testing.assert_allclose(np.abs(np.sum(got * expected, axis=1)), 1.0, atol=1e-12)
    angle = rot.quat_angle(q0, q1)
    np.testing.assert_allclose(angle, (ROTATIONS[1].inv() * ROTATIONS[2]).magnitude(), atol=1e-9)
    np.testing.assert_allclose(rot.quat_angle(q0, got[3]), 0.5 * angle, atol=1e-9)
    np.testing.assert_allclose(rot.quat_slerp(q0, q0, 0.3), q0, atol=1e-12)


def test_camera_info_yaml_round_trip_and_errors(tmp_path: Path) -> None:
    from kil_interfaces.calibration import load_intrinsics, save_intrinsics

    intr = CameraIntrinsics(640, 480, 605.5, 604.25, 319.5, 241.0, "plumb_bob", [0.1, -0.2, 0.0, 0.001, 0.0], "cam")
    save_intrinsics(tmp_path / "info.yaml", intr)
    back = load_intrinsics(tmp_path / "info.yaml")
    assert (back.width, back.fx, back.cy, back.frame_id) == (640, 605.5, 241.0, "cam")
    np.testing.assert_array_equal(back.distortion, intr.distortion)
    (tmp_path / "bad.yaml").write_text("image_width: 640\n")
    with pytest.raises(CalibrationError, match=r"bad\.yaml: image_width, image_height and camera_matrix\.data"):
        load_intrinsics(tmp_path / "bad.yaml")
