"""The UR5e adapter: forward kinematics against the arm's known zero pose, closed-form IK
against FK on random configurations, and ur5e_node over real DDS with a stand-in for the arm
(joint states and the safety mode in, joint position commands out; the robot cannot exist here)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from ur_dashboard_msgs.msg import SafetyMode

from kil_control.ur5e import DH, JOINT_NAMES, JointServo, JointServoConfig, forward, inverse, nearest_solution
from kil_control.ur5e_node import LATCHED, Ur5eNode
from kil_interfaces import conversion as cv
from kil_interfaces.diagnostics import ERROR, OK, WARN
from kil_interfaces.msg import RobotState
from kil_interfaces.rotations import matrix_to_quat
from kil_interfaces.testing import DiagnosticsListener

HOME = np.array([0.0, -1.57, 1.57, -1.57, -1.57, 0.0])


def test_forward_kinematics_at_zero_is_the_stretched_arm() -> None:
    dh = DH()
    pose = forward(np.zeros(6))
    np.testing.assert_allclose(pose[:3, 3], [dh.a2 + dh.a3, -(dh.d4 + dh.d6), dh.d1 - dh.d5], atol=1e-12)


def test_inverse_kinematics_reproduces_random_poses() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        q = rng.uniform(-np.pi, np.pi, 6)
        pose = forward(q)
        solutions = inverse(pose)
        assert solutions and len(solutions) <= 8
        for solution in solutions:
            np.testing.assert_allclose(forward(solution), pose, atol=1e-8)
        nearest = nearest_solution(pose, q + rng.normal(0, 0.01, 6))
        np.testing.assert_allclose(nearest, q, atol=1e-8)
    far = forward(HOME)
    far[0, 3] += 2.0  # beyond the arm's 0.85 m reach
    assert inverse(far) == [] and nearest_solution(far, HOME) is None


def test_ur5e_node_over_dds() -> None:
    rclpy.init(args=["--ros-args", "-p", "diagnostics_period_s:=0.2"])
    adapter = Ur5eNode()
    robot = rclpy.create_node("ur_driver_stand_in")
    executor = SingleThreadedExecutor()
    executor.add_node(adapter)
    executor.add_node(robot)
    joint_pub = robot.create_publisher(JointState, "/joint_states", 10)
    target_pub = robot.create_publisher(PoseStamped, "/kil/servo_target", 10)
    commands, states = [], []
    robot.create_subscription(Float64MultiArray, "/forward_position_controller/commands", commands.append, 10)
    robot.create_subscription(RobotState, "/kil/robot_state", lambda m: states.append(cv.robot_state_from_msg(m)), 10)
    joints = {"q": HOME.copy(), "publish": True}

    def spin(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if joints["publish"]:
                msg = JointState(name=list(reversed(JOINT_NAMES)), position=list(reversed(joints["q"].tolist())))
                joint_pub.publish(msg)
            executor.spin_once(timeout_sec=0.01)

    def send(q: np.ndarray) -> None:
        pose = forward(q)
        msg = PoseStamped()
        msg.header.frame_id = "base"
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = pose[:3, 3]
        o = msg.pose.orientation
        o.x, o.y, o.z, o.w = matrix_to_quat(pose[:3, :3])
        target_pub.publish(msg)
        spin(0.15)

    try:
        deadline = time.monotonic() + 10
        while (not states or robot.count_subscribers("/kil/servo_target") == 0) and time.monotonic() < deadline:
            spin(0.1)
        state = states[-1]
        np.testing.assert_allclose(state.position, forward(HOME)[:3, 3], atol=1e-9)  # names reordered
        assert state.joint_names == JOINT_NAMES and state.frame_id == "base"
        step = np.array([0.01, -0.01, 0.01, 0.0, 0.01, -0.01])
        send(HOME + step)
        send(HOME + 2 * step)
        assert len(commands) == 2
        np.testing.assert_allclose(commands[-1].data, HOME + 2 * step, atol=1e-8)
        listener = DiagnosticsListener(robot)
        assert listener.wait(spin, "ur5e_node: arm", (OK,)).message == "servoing"
        max_step = JointServoConfig().max_step_rad
        send(HOME + 2 * step + [0.05, 0, 0, 0, 0, 0])  # a 0.05 rad step: shortened to max_joint_step_rad
        assert len(commands) == 3
        np.testing.assert_allclose(commands[-1].data, HOME + 2 * step + [max_step, 0, 0, 0, 0, 0], atol=1e-8)
        # Moved by something else (the teach pendant) 0.3 rad from the last command: the next target
        # near the arm counts its step from the measured joints (resync_tolerance_rad), not refused.
        joints["q"] = np.array(commands[-1].data) + [0.3, 0, 0, 0, 0, 0]
        spin(0.2)
        send(joints["q"] + [0.01, 0, 0, 0, 0, 0])
        assert len(commands) == 4
        np.testing.assert_allclose(commands[-1].data, joints["q"] + [0.01, 0, 0, 0, 0, 0], atol=1e-8)
        joints["q"] = np.array(commands[-1].data)  # the arm got there
        send(joints["q"] + [0.2, 0, 0, 0, 0, 0])  # a 0.2 rad jump: refused
        assert len(commands) == 4
        refused = listener.wait(spin, "ur5e_node: arm", (WARN,), message="jump from the previous target's solution")
        assert DiagnosticsListener.values(refused)["targets_refused"] == "1"
        # The controller goes into a protective stop (reported as io_and_status_controller does):
        # targets are refused and nothing is sent; NORMAL again, the stream resumes from the joints.
        safety = robot.create_publisher(SafetyMode, "/io_and_status_controller/safety_mode", LATCHED)
        safety.publish(SafetyMode(mode=SafetyMode.PROTECTIVE_STOP))
        stopped = listener.wait(spin, "ur5e_node: arm", (ERROR,), message="protective stop (safety mode 3)")
        assert DiagnosticsListener.values(stopped)["safety_mode"] == "3"
        send(joints["q"] + [0.01, 0, 0, 0, 0, 0])
        assert len(commands) == 4
        safety.publish(SafetyMode(mode=SafetyMode.NORMAL))
        assert listener.wait(spin, "ur5e_node: arm", (OK, WARN)).message != stopped.message
        send(joints["q"] + [0.01, 0, 0, 0, 0, 0])
        assert len(commands) == 5
        np.testing.assert_allclose(commands[-1].data, joints["q"] + [0.01, 0, 0, 0, 0, 0], atol=1e-8)
        joints["publish"] = False
        spin(0.3)
        send(HOME)  # joint states stale: refused
        assert len(commands) == 5
        listener.wait(spin, "ur5e_node: arm", (ERROR,), message="/joint_states is")
    finally:
        executor.shutdown()
        adapter.destroy_node()
        robot.destroy_node()
        rclpy.try_shutdown()


@pytest.mark.parametrize("q", [HOME, np.array([0.5, -1.0, 1.2, -1.9, -1.4, 0.8])])
def test_nearest_solution_keeps_the_configuration(q: np.ndarray) -> None:
    np.testing.assert_allclose(nearest_solution(forward(q), q), q, atol=1e-8)


def test_joint_servo_follows_a_turn_faster_than_the_joints_on_one_branch() -> None:
    """A wrist turning 0.05 rad per target (twice what a command may move): every target is
    accepted, each command moves at most max_step_rad, and the arm arrives once the turn stops.
    Seeded from the trailing command instead of the previous target's solution, the growing lag
    would read as a jump and the stream would be refused."""
    servo = JointServo()
    max_step = servo.config.max_step_rad
    joints = HOME.copy()
    targets = [HOME + [0, 0, 0, 0.05 * k, 0, 0] for k in range(1, 31)] + [HOME + [0, 0, 0, 1.5, 0, 0]] * 40
    for target in targets:
        result = servo.step(forward(target), joints)
        assert result.joints is not None, result.reason
        assert np.max(np.abs(result.joints - joints)) <= max_step + 1e-9
        joints = result.joints  # the arm follows its commands
    np.testing.assert_allclose(joints, HOME + [0, 0, 0, 1.5, 0, 0], atol=1e-8)


def test_joint_servo_refuses_a_jump_and_restarts_from_the_arm() -> None:
    servo = JointServo()
    joints = HOME.copy()
    assert servo.step(forward(HOME + [0.01, 0, 0, 0, 0, 0]), joints).joints is not None
    far = servo.step(forward(HOME + [0.5, 0, 0, 0, 0, 0]), joints)  # consecutive targets 0.49 rad apart
    assert far.joints is None and far.refused == "jump" and "shoulder_pan_joint" in far.reason
    assert servo.solution is None and servo.command is None  # the next target counts from the arm
    assert servo.step(forward(HOME + [0.005, 0, 0, 0, 0, 0]), joints).joints is not None
    unreachable = forward(HOME)
    unreachable[0, 3] += 2.0
    assert servo.step(unreachable, joints).refused == "reach"


def test_joint_servo_config_is_validated() -> None:
    with pytest.raises(ValueError, match="max_step_rad < max_jump_rad"):
        JointServoConfig(max_step_rad=0.2, max_jump_rad=0.15)
    with pytest.raises(ValueError, match="resync_tolerance_rad"):
        JointServoConfig(resync_tolerance_rad=0.0)
