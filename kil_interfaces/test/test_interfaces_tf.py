"""TF without tf2_ros: the transform tree's lookups, and TransformStamped conversion refusing bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped

from kil_interfaces import conversion as cv
from kil_interfaces.calibration import RigidTransform
from kil_interfaces.tf import TransformTree, prefixed


def _yaw(angle: float) -> np.ndarray:
    return np.array([0.0, 0.0, math.sin(angle / 2), math.cos(angle / 2)])


def test_lookup_walks_the_tree_through_the_common_parent() -> None:
    tree = TransformTree()
    tree.set(RigidTransform("base", "camera_link", [1.0, 0.0, 0.5], _yaw(math.pi / 2)))
    tree.set(RigidTransform("camera_link", "optical", [0.0, 0.1, 0.0], _yaw(0.0)))
    tree.set(RigidTransform("base", "tcp", [0.3, 0.0, 0.2], _yaw(0.0)))
    point_in_optical = np.array([0.2, 0.0, 0.0])
    base_from_optical = tree.lookup("base", "optical")
    # optical -> camera_link: +0.1 y; camera_link (yawed 90 deg) -> base.
    assert np.allclose(base_from_optical.apply(point_in_optical), [1.0 - 0.1, 0.2, 0.5])
    tcp_from_optical = tree.lookup("tcp", "optical")
    assert (tcp_from_optical.parent_frame, tcp_from_optical.child_frame) == ("tcp", "optical")
    assert np.allclose(
        tcp_from_optical.apply(point_in_optical), base_from_optical.apply(point_in_optical) - [0.3, 0.0, 0.2]
    )
    assert np.allclose(tree.lookup("optical", "base").matrix, np.linalg.inv(base_from_optical.matrix))
    assert np.allclose(tree.lookup("tcp", "tcp").matrix, np.eye(4))
    assert tree.lookup("base", "elsewhere") is None  # not connected (yet)
    tree.set(RigidTransform("base", "camera_link", [2.0, 0.0, 0.5], _yaw(math.pi / 2)))  # re-calibrated
    assert np.allclose(tree.lookup("base", "optical").apply(point_in_optical), [2.0 - 0.1, 0.2, 0.5])
    assert tree.frames() == {"base", "camera_link", "optical", "tcp"}


def test_a_loop_or_a_self_parent_is_refused() -> None:
    tree = TransformTree()
    with pytest.raises(ValueError, match="its own parent"):
        tree.set(RigidTransform("a", "a", [0, 0, 0], _yaw(0)))
    tree.set(RigidTransform("a", "b", [0, 0, 0], _yaw(0)))
    tree.set(RigidTransform("b", "a", [0, 0, 0], _yaw(0)))
    with pytest.raises(ValueError, match="loop"):
        tree.lookup("a", "c")


def test_transform_messages_round_trip_and_bad_ones_are_refused() -> None:
    transform = RigidTransform("link_base", "camera", [0.9, 0.0, 0.55], _yaw(0.3))
    msg = cv.transform_to_msg(transform, 1_500_000_000)
    assert (msg.header.frame_id, msg.child_frame_id, msg.header.stamp.sec) == ("link_base", "camera", 1)
    back = cv.transform_from_msg(msg)
    assert np.allclose(back.matrix, transform.matrix)
    bad = TransformStamped()
    bad.header.frame_id, bad.child_frame_id = "link_base", "camera"
    bad.transform.rotation.w = 0.0  # (ROS 2 defaults w to 1)
    with pytest.raises(cv.ConversionError, match="unit quaternion"):  # all zeros
        cv.transform_from_msg(bad, what="/tf_static")
    bad.transform.rotation.w, bad.transform.translation.x = 1.0, float("nan")
    with pytest.raises(cv.ConversionError, match=r"/tf_static link_base <- camera.*NaN"):
        cv.transform_from_msg(bad, what="/tf_static")
    bad.transform.translation.x, bad.child_frame_id = 0.0, ""
    with pytest.raises(cv.ConversionError, match="child_frame_id must both be set"):
        cv.transform_from_msg(bad)


def test_frame_prefixes() -> None:
    assert prefixed("a", "link_base") == "a/link_base" and prefixed("/a/", "link_base") == "a/link_base"
    assert prefixed("", "link_base") == "link_base"
