"""interpolator_node (the last node before the arm) fed every class of bad input over Fast DDS:
each is dropped or refused with a warning naming the topic and the problem, the node lives, and
no setpoint ever carries it to the arm. The README's bad-input table lists these classes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import Pose, PoseStamped
from test_control_interpolator_node import DOWN, _spin_until

from kil_interfaces import conversion as cv
from kil_interfaces.data import RobotStateData
from kil_interfaces.msg import ActionChunk, RobotState

START = np.array([0.3, 0.0, 0.25])
STEP_NS = 100_000_000


def _pose(position, quaternion=DOWN) -> Pose:
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in position)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in quaternion)
    return pose


def _chunk(stamp_ns: int, positions, quaternions=None, gripper=None) -> ActionChunk:
    """An ActionChunk built field by field (so it can be malformed)."""
    msg = ActionChunk()
    msg.header.stamp = cv.ns_to_time(stamp_ns)
    msg.header.frame_id = "link_base"
    msg.step = cv.ns_to_duration(STEP_NS)
    quaternions = quaternions if quaternions is not None else [DOWN] * len(positions)
    msg.poses = [_pose(p, q) for p, q in zip(positions, quaternions, strict=True)]
    msg.gripper = [1.0] * len(positions) if gripper is None else list(gripper)
    return msg


#: (name, chunk factory from "now" (ns), the warning it must produce). Every target is 5 cm or
#: more from START, so a chunk that got through would show in the setpoints.
FAR = START + [0.0, 0.08, 0.0]
BAD_CHUNKS = [
    ("NaN target", lambda now: _chunk(now, [START, [np.nan, 0.0, 0.25]]), "contains NaN or infinite values"),
    ("infinite target", lambda now: _chunk(now, [FAR, [0.3, np.inf, 0.25]]), "contains NaN or infinite values"),
    ("no steps", lambda now: _chunk(now, []), "poses is empty"),
    (
        "gripper length differs",
        lambda now: _chunk(now, [FAR, FAR], gripper=[1.0]),
        "gripper has 1 values but poses has 2",
    ),
    ("zero quaternion", lambda now: _chunk(now, [FAR], [[0.0, 0.0, 0.0, 0.0]]), "must hold unit quaternions"),
    ("unnormalised quaternion", lambda now: _chunk(now, [FAR], [[0.0, 0.0, 0.0, 2.0]]), "must hold unit quaternions"),
    ("NaN gripper", lambda now: _chunk(now, [FAR], gripper=[float("nan")]), "contains NaN or infinite values"),
]


@pytest.fixture()
def interpolator():
    command = [sys.executable, "-m", "kil_control.interpolator_node", "--ros-args", "-p", "rate_hz:=100.0"]
    command += ["-p", "stale_after_s:=0.4"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rclpy.init()
    node = rclpy.create_node("bad_inputs_test")
    yield process, node
    node.destroy_node()
    rclpy.try_shutdown()
    if process.poll() is None:
        process.kill()
        process.communicate(timeout=20)


def test_every_bad_input_class_is_dropped_and_never_reaches_the_arm(interpolator) -> None:
    process, node = interpolator
    targets: list[np.ndarray] = []
    node.create_subscription(
        PoseStamped, "/kil/servo_target", lambda m: targets.append(cv._pose_to_arrays(m.pose)[0]), 100
    )
    state_pub = node.create_publisher(RobotState, "/kil/robot_state", 10)
    chunk_pub = node.create_publisher(ActionChunk, "/kil/action_chunk", 10)
    now = lambda: node.get_clock().now().nanoseconds  # noqa: E731

    bad_state = cv.robot_state_to_msg(RobotStateData(now(), "link_base", START, DOWN, 1.0))
    bad_state.eef_pose.position.x = float("nan")  # a NaN state never becomes the starting pose
    good_state = cv.robot_state_to_msg(RobotStateData(now(), "link_base", START, DOWN, 1.0))
    assert _spin_until(
        node, lambda: len(targets) > 10, 60.0, lambda: (state_pub.publish(bad_state), state_pub.publish(good_state))
    )
    assert np.allclose(targets[-1], START, atol=1e-6)

    for name, make, _ in BAD_CHUNKS:
        count = len(targets)
        _spin_until(node, lambda: False, 0.6, lambda make=make: chunk_pub.publish(make(now())), period_s=0.2)
        assert process.poll() is None, f"interpolator_node died on: {name}"
        assert len(targets) > count, f"no setpoints after: {name}"
        assert np.abs(np.array(targets[count:]) - START).max() < 1e-6, f"{name} reached the arm"

    # A good chunk 2 cm along x, then one stamped earlier (out of order) and one repeating its stamp,
    # both 8 cm along y: refused, the arm goes only along x.
    first = now()
    good = _chunk(first + STEP_NS, [START + [0.02 * k / 5, 0, 0] for k in range(1, 6)])
    older = _chunk(first - STEP_NS, [FAR] * 5)
    repeated = _chunk(first + STEP_NS, [FAR] * 5)
    count = len(targets)
    chunk_pub.publish(good)
    _spin_until(node, lambda: False, 0.2)
    chunk_pub.publish(older)
    chunk_pub.publish(repeated)
    _spin_until(node, lambda: False, 1.2)
    moved = np.array(targets[count:]) - START
    assert moved[:, 0].max() > 0.015 and np.abs(moved[:, 1]).max() < 1e-6, moved[-1]

    # Targets outside the workspace box are clamped into it (default box: z >= 0.0).
    below = _chunk(now() + STEP_NS, [START + [0.0, 0.0, -0.1 * k] for k in range(1, 6)])
    count = len(targets)
    chunk_pub.publish(below)
    _spin_until(node, lambda: False, 1.5)
    assert min(t[2] for t in targets[count:]) >= 0.0
    assert process.poll() is None
    process.terminate()
    log_text, _ = process.communicate(timeout=20)
    for name, _, text in BAD_CHUNKS:
        assert text in log_text, (name, log_text[-3000:])
    assert "action chunk dropped: /kil/action_chunk" in log_text
    assert "action chunk refused: its stamp is older than the previous chunk's" in log_text
    assert "action chunk refused: its stamp repeats the previous chunk's" in log_text
    assert "outside the workspace box" in log_text and "are clamped into it" in log_text
    assert "/kil/robot_state" in log_text and "Traceback" not in log_text
