"""The Lite6 adapter: xArm unit conversions, the servo gate's rules, the gripper latch, and
lite6_node over real DDS with a test double standing in for xarm_ros2 (the xArm and its
xarm_msgs package cannot exist here): states republished as RobotState, targets gated."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from scipy.spatial.transform import Rotation
from std_msgs.msg import Float32

from kil_control.lite6 import GripperLatch, ServoGate, ServoGateConfig, XArmState, pose_to_xarm, xarm_to_pose
from kil_control.lite6_node import Lite6Node
from kil_interfaces import conversion as cv
from kil_interfaces.diagnostics import ERROR, WARN
from kil_interfaces.msg import RobotState
from kil_interfaces.testing import DiagnosticsListener

POSE_MM = [250.0, -30.0, 180.0, np.pi, 0.1, -0.4]  # tool down, tilted, turned


def test_conversions_match_xarm_conventions() -> None:
    position, quaternion = xarm_to_pose(POSE_MM)
    np.testing.assert_allclose(position, [0.25, -0.03, 0.18])
    expected = Rotation.from_euler("xyz", POSE_MM[3:])  # extrinsic x, y, z = Rz(yaw) Ry(pitch) Rx(roll)
    assert Rotation.from_quat(quaternion).approx_equal(expected, atol=1e-9)
    back = pose_to_xarm(position, quaternion)
    np.testing.assert_allclose(back[:3], POSE_MM[:3], atol=1e-9)
    assert Rotation.from_euler("xyz", back[3:]).approx_equal(expected, atol=1e-9)
    with pytest.raises(ValueError, match="6 finite numbers"):
        xarm_to_pose([1.0, 2.0, 3.0])


def _state(now: int, position=(0.25, -0.03, 0.18), mode: int = 1, error: int = 0) -> XArmState:
    return XArmState(now, np.array(position), np.array([1.0, 0, 0, 0]), mode, error)


def test_servo_gate_rules() -> None:
    gate = ServoGate(ServoGateConfig(max_step_m=0.009, first_target_tolerance_m=0.005, state_timeout_s=0.2))
    now = 10**10
    here = np.array([0.25, -0.03, 0.18])

    def check(target, state):
        sent, note = gate.admit(target, state, now)
        assert sent is None or note == "", note  # no ramp-in in these cases
        return note if sent is None else None

    assert check(here, None) == "no robot state received yet"
    assert "old" in check(here, _state(now - 300_000_000))
    assert "error 31" in check(here, _state(now, error=31))
    assert "mode 0" in check(here, _state(now, mode=0))
    assert "first target is 60.0 mm" in check(here + [0.06, 0, 0], _state(now))  # beyond resync_distance_m
    assert check(here + [0.003, 0, 0], _state(now)) is None  # within the first-target tolerance
    assert check(here + [0.011, 0, 0], _state(now)) is None  # an 8 mm step
    assert "12.0 mm step" in check(here + [0.023, 0, 0], _state(now))
    # refused -> resynchronised: continuing from the last sent target is no longer accepted
    assert "first target is 70.0 mm" in check(here + [0.07, 0, 0], _state(now))
    assert check(here, _state(now)) is None
    # the arm is moved 10 cm away by something else: the stream must start again where it is
    elsewhere = here + [0.0, 0.1, 0.0]
    assert "first target is 100.0 mm" in check(here + [0.002, 0, 0], _state(now, position=elsewhere))
    assert check(elsewhere, _state(now, position=elsewhere)) is None
    with pytest.raises(ValueError, match="xArm servo rule"):
        ServoGateConfig(max_step_m=0.02)
    with pytest.raises(ValueError, match="ramp_step_m"):
        ServoGateConfig(ramp_step_m=0.0)


def test_a_stream_starting_off_the_arm_is_ramped_in_and_then_followed() -> None:
    """The stream began 20 mm from the arm (before servo mode) and moves on at 1 mm per target:
    the gate walks the arm to it ramp_step_m per target from the measured pose, never a step over
    the xArm's rule, catches up, then passes the stream through as it is."""
    gate = ServoGate(ServoGateConfig(ramp_step_m=0.002))
    now = 10**10
    arm = np.array([0.25, -0.03, 0.18])
    stream = arm + [0.02, 0.0, 0.0] + np.arange(60)[:, None] * [0.0, 0.001, 0.0]
    sent, notes = [], []
    for target in stream:
        position, note = gate.admit(target, _state(now, position=arm), now)
        assert position is not None, note
        sent.append(position)
        notes.append(note)
        arm = position  # the arm follows what was sent
    steps = np.linalg.norm(np.diff(np.array([stream[0] - [0.02, 0, 0], *sent]), axis=0), axis=1)
    assert steps.max() <= 0.002 + 1e-9  # the ramp never jumps
    assert "ramping in: 20.0 mm behind the stream" == notes[0]
    caught = notes.index("")
    assert 5 < caught < 40 and not any(notes[caught:])
    np.testing.assert_allclose(sent[caught:], stream[caught:])  # then the stream itself


def test_a_ramp_in_that_falls_too_far_behind_is_refused() -> None:
    gate = ServoGate(ServoGateConfig(ramp_step_m=0.001))
    now = 10**10
    arm = np.array([0.25, -0.03, 0.18])
    position, note = gate.admit(arm + [0.03, 0, 0], _state(now, position=arm), now)
    assert position is not None and note.startswith("ramping in")
    position, note = gate.admit(arm + [0.09, 0, 0], _state(now, position=position), now)
    assert position is None and "ahead of the ramp-in" in note
    assert gate.last_sent is None and not gate.ramping


def test_gripper_latch() -> None:
    latch = GripperLatch()
    assert [latch.update(c) for c in (1.0, 0.9, 0.5, 0.1, 0.0, 0.5, 0.7)] == [
        "open",
        None,
        None,
        "close",
        None,
        None,
        "open",
    ]


class FakeXArm:
    """Test double of xarm_ros2's services: records servo poses and gripper actions. Each servo
    target is answered ``ret`` 0 at once, or with ``hold_answers`` kept in ``unanswered`` until the
    test answers it."""

    def __init__(self, node, on_state) -> None:
        self.on_state = on_state
        self.started, self.poses, self.gripper_actions = False, [], []
        self.hold_answers, self.unanswered = False, []

    def start_servo(self) -> None:
        self.started = True

    def servo(self, pose, answered) -> None:
        self.poses.append(list(pose))
        if self.hold_answers:
            self.unanswered.append(answered)
        else:
            answered(0, "")

    def gripper(self, action: str) -> None:
        self.gripper_actions.append(action)


def test_lite6_node_over_dds() -> None:
    rclpy.init(args=["--ros-args", "-p", "diagnostics_period_s:=0.2"])
    fakes = []
    adapter = Lite6Node(driver_factory=lambda node, on_state: fakes.append(FakeXArm(node, on_state)) or fakes[-1])
    fake = fakes[0]
    other = rclpy.create_node("interpolator_stand_in")
    executor = SingleThreadedExecutor()
    executor.add_node(adapter)
    executor.add_node(other)
    states = []
    other.create_subscription(RobotState, "/kil/robot_state", lambda m: states.append(cv.robot_state_from_msg(m)), 10)
    target_pub = other.create_publisher(PoseStamped, "/kil/servo_target", 10)
    gripper_pub = other.create_publisher(Float32, "/kil/gripper_command", 10)

    fault = {"error": 0, "states": True, "wobble_mm": 0.0}
    listener = DiagnosticsListener(other)

    def spin(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if fault["states"]:
                fault["wobble_mm"] = -fault["wobble_mm"]  # an arm still moving: +-wobble in x, state by state
                pose = [POSE_MM[0] + fault["wobble_mm"], *POSE_MM[1:]]
                fake.on_state(adapter.get_clock().now().nanoseconds, pose, 1, fault["error"], [0.1] * 6)
            executor.spin_once(timeout_sec=0.01)

    def target(x_mm: float, frame: str = "link_base") -> None:
        msg = PoseStamped()
        msg.header.frame_id = frame
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x_mm / 1000, -0.03, 0.18
        quaternion = Rotation.from_euler("xyz", POSE_MM[3:]).as_quat()
        msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = quaternion
        target_pub.publish(msg)
        spin(0.2)

    try:
        assert fake.started
        deadline = time.monotonic() + 10
        while (not states or other.count_subscribers("/kil/servo_target") == 0) and time.monotonic() < deadline:
            spin(0.1)
        state = states[-1]
        assert state.frame_id == "link_base" and len(state.joint_positions) == 6
        np.testing.assert_allclose(state.position, [0.25, -0.03, 0.18], atol=1e-6)
        target(251.0)
        target(256.0)
        target(290.0)  # a 34 mm jump: refused
        refused = listener.wait(spin, "lite6_node: arm", (WARN,), message="a 34.0 mm step")
        assert DiagnosticsListener.values(refused)["targets_sent"] == "2"
        assert DiagnosticsListener.values(refused)["targets_refused"] == "1"
        target(256.0, frame="camera")  # wrong frame: dropped
        assert [round(p[0], 3) for p in fake.poses] == [251.0, 256.0]
        for _ in range(6):  # a stream 12 mm off the arm (which stays at 250 mm): ramped in, 2 mm per target
            target(262.0)
        assert [round(p[0], 3) for p in fake.poses[2:]] == [252.0, 254.0, 256.0, 258.0, 260.0, 262.0]
        assert not adapter.gate.ramping  # caught up: the stream goes through as it is
        np.testing.assert_allclose(fake.poses[0][3:], POSE_MM[3:], atol=1e-6)
        target(300.0)  # refused (a 38 mm step): the next target starts a new stream ...
        fault["wobble_mm"] = 1.5
        spin(0.3)  # states +-1.5 mm apart, one by one
        target(251.0)  # ... which waits while the arm is seen moving (up to 3 mm within settle_window_s;
        # how many of the states fall in that window depends on how fast this loop spins)
        listener.wait(spin, "lite6_node: arm", (WARN,), message="the arm is still moving (")
        assert len(fake.poses) == 8
        fault["wobble_mm"] = 0.0
        spin(0.3)  # the arm has stopped
        target(251.0)
        assert len(fake.poses) == 9 and round(fake.poses[-1][0], 3) == 251.0
        for command in (0.0, 0.1, 1.0):
            gripper_pub.publish(Float32(data=command))
            spin(0.2)
        assert fake.gripper_actions == ["close", "open"]
        assert states[-1].gripper == 1.0
        fault["error"] = 21  # the controller faults: ERROR with its code
        error = listener.wait(spin, "lite6_node: arm", (ERROR,), message="error 21")
        assert DiagnosticsListener.values(error)["error"] == "21"
        fault["error"], fault["states"] = 0, False  # the states stop: ERROR, stale
        listener.wait(spin, "lite6_node: arm", (ERROR,), message="/ufactory/robot_states is")
    finally:
        executor.shutdown()
        adapter.destroy_node()
        other.destroy_node()
        rclpy.try_shutdown()


def test_lite6_node_sends_only_targets_every_possible_controller_reference_accepts() -> None:
    """The controller measures each servo step from the last target it accepted: a target sent
    while an earlier one is unanswered is measured from further back when that one is refused. So
    a target goes out while others are in flight only within max_step_m of the last accepted one
    and of each unanswered one; otherwise it waits for an answer (the newest replacing an older
    one), is dropped when the answer is a refusal, is ramped towards when the stream moved on
    meanwhile, and answers that never come are given up after servo_answer_timeout_s."""
    rclpy.init(args=["--ros-args", "-p", "servo_answer_timeout_s:=6.0"])
    fakes = []
    adapter = Lite6Node(driver_factory=lambda node, on_state: fakes.append(FakeXArm(node, on_state)) or fakes[-1])
    fake = fakes[0]
    fake.hold_answers = True
    other = rclpy.create_node("interpolator_stand_in")
    executor = SingleThreadedExecutor()
    executor.add_node(adapter)
    executor.add_node(other)
    target_pub = other.create_publisher(PoseStamped, "/kil/servo_target", 10)
    listener = DiagnosticsListener(other)

    def spin(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            fake.on_state(adapter.get_clock().now().nanoseconds, POSE_MM, 1, 0, [0.1] * 6)
            executor.spin_once(timeout_sec=0.01)

    def target(x_mm: float) -> None:
        msg = PoseStamped()
        msg.header.frame_id = "link_base"
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x_mm / 1000, -0.03, 0.18
        quaternion = Rotation.from_euler("xyz", POSE_MM[3:]).as_quat()
        msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = quaternion
        target_pub.publish(msg)
        spin(0.2)

    def answer(ret: int, message: str = "") -> None:
        fake.unanswered.pop(0)(ret, message)
        spin(0.1)

    def sent() -> list[float]:
        return [round(p[0], 3) for p in fake.poses]

    try:
        deadline = time.monotonic() + 10
        while other.count_subscribers("/kil/servo_target") == 0 and time.monotonic() < deadline:
            spin(0.1)
        target(251.0)
        target(253.0)  # the stream's first target is not answered yet: waits ...
        target(255.0)  # ... replaced by the newest
        assert sent() == [251.0]
        answer(0)
        assert sent() == [251.0, 255.0]  # sent on the answer
        target(258.0)  # within 9.5 mm of 251 (accepted) and 255 (in flight): sent at once
        target(262.0)  # 11 mm from 251: were 255 and 258 refused, a step fault; waits
        assert sent() == [251.0, 255.0, 258.0]
        answer(-8, "out of range")  # 255 refused: 262 dropped with it
        answer(0)  # 258 accepted
        assert sent() == [251.0, 255.0, 258.0] and not fake.unanswered
        refused = listener.wait(spin, "lite6_node: arm", (WARN,), message="set_servo_cartesian refused (ret -8)")
        assert DiagnosticsListener.values(refused)["targets_refused"] == "1"
        assert DiagnosticsListener.values(refused)["targets_superseded"] == "1"  # 253, by 255
        del fake.poses[:]
        target(251.0)  # a new stream at the arm's pose (250 mm)
        answer(0)
        for x in (253.0, 255.0, 257.0, 259.0, 261.0, 263.0, 265.0):  # unanswered: sent while within 9.5 mm
            target(x)
        assert sent() == [251.0, 253.0, 255.0, 257.0, 259.0]
        for _ in range(5):  # 253 .. 257 accepted: 265 (the newest) is within 9.5 mm of 257 and 259: sent
            answer(0)
        target(267.0)
        assert sent() == [251.0, 253.0, 255.0, 257.0, 259.0, 265.0, 267.0]
        del fake.unanswered[:]  # 267 is never answered: given up after servo_answer_timeout_s
        spin(6.2)
        target(251.0)  # a new stream from the pose
        assert sent()[-1] == 251.0
        listener.wait(spin, "lite6_node: arm", (WARN,), message="did not answer within")
        answer(0)
        target(252.5)
        assert sent()[-2:] == [251.0, 252.5]
        for x in (258.0, 261.0, 264.0, 267.0, 270.0):  # 258 sent; 261-267, 10+ mm from 251, wait; 270 is
            target(x)  # 12 mm from 258, the last sent: ramped towards (2 x the stream's 3 mm), not refused ...
        assert sent()[-3:] == [251.0, 252.5, 258.0]
        answer(0)
        answer(0)  # ... once 264 is within 9.5 mm of every possible reference (258 accepted, none in flight)
        assert sent()[-4:] == [251.0, 252.5, 258.0, 264.0]
    finally:
        executor.shutdown()
        adapter.destroy_node()
        other.destroy_node()
        rclpy.try_shutdown()


def test_a_stream_that_moved_on_while_a_target_waited_is_ramped_towards() -> None:
    gate = ServoGate(ServoGateConfig(max_step_m=0.0095, ramp_step_m=0.002))
    state = XArmState(10**9, np.array([0.25, 0.0, 0.2]), np.array([1.0, 0, 0, 0]), 1, 0)
    gate.observe(state)
    assert gate.admit(np.array([0.251, 0.0, 0.2]), state, 10**9)[0] is not None
    gate.catch_up(np.array([0.256, 0.0, 0.2]), 0.003)  # within a step: nothing to catch up
    assert not gate.ramping
    gate.catch_up(np.array([0.266, 0.0, 0.2]), 0.003)  # 15 mm on: ramped towards (2 x 3 mm), not refused
    sent, note = gate.admit(np.array([0.266, 0.0, 0.2]), state, 10**9)
    np.testing.assert_allclose(sent, [0.257, 0.0, 0.2])
    assert "ramping in" in note
    sent, _ = gate.admit(np.array([0.269, 0.0, 0.2]), state, 10**9)  # still catching up
    np.testing.assert_allclose(sent, [0.263, 0.0, 0.2])
    sent, _ = gate.admit(np.array([0.268, 0.0, 0.2]), state, 10**9)  # caught up: the stream as it is
    np.testing.assert_allclose(sent, [0.268, 0.0, 0.2])
    assert not gate.ramping and gate.catch_step is None
    gate.catch_up(np.array([0.29, 0.0, 0.2]), 0.02)  # a fast stream: at most max_step_m per target
    np.testing.assert_allclose(gate.admit(np.array([0.29, 0.0, 0.2]), state, 10**9)[0], [0.2775, 0.0, 0.2])
    gate.resync()
    gate.admit(np.array([0.251, 0.0, 0.2]), state, 10**9)
    gate.catch_up(np.array([0.31, 0.0, 0.2]), 0.003)  # beyond resync_distance_m: still refused
    assert gate.admit(np.array([0.31, 0.0, 0.2]), state, 10**9)[0] is None
