"""``ur5e_node``: the UR5e adapter between the kil topics and ur_robot_driver.

In: /joint_states (sensor_msgs/JointState from ur_robot_driver), /kil/servo_target
(geometry_msgs/PoseStamped, TCP in the ``base`` frame, from interpolator_node) and
/kil/gripper_command (std_msgs/Float32; a gripper driver listens to it too).
Out: /kil/robot_state (forward kinematics of the joints, TCP = tool0 + ``tcp_offset_m`` along
its z axis) and /forward_position_controller/commands (std_msgs/Float64MultiArray, joint
positions in the driver's order; activate ``forward_position_controller``). Targets become joint
commands in ``kil_control.ur5e.JointServo``: each solved by the closed-form IK, nearest the previous
target's solution (one branch along a path, even while the arm lags a fast turn); refused (throttled
warning; the controller keeps the last command) when joint states are older than
``state_timeout_s``, when the target is out of reach or only reachable beyond a joint's +-360 deg, or
when its solution is more than ``max_joint_jump_rad`` from the previous target's (a wrist flip, or a
target far off). Commands move towards the solution by at most ``max_joint_step_rad`` each (the arm
follows a turn faster than its joints at their speed, lagging for a moment, instead of stalling).
Steps count from the last command, or from the measured joints when they are more than
``resync_tolerance_rad`` from it (the arm was moved by something else).
The controller's safety mode comes from /io_and_status_controller/safety_mode (ur_dashboard_msgs/
SafetyMode, transient local as ur_robot_driver's io_and_status_controller publishes it): outside
NORMAL and REDUCED (a protective stop after a collision, a safeguard or emergency stop, a fault) the
arm follows no command, so targets are refused and nothing is sent until the mode is NORMAL again;
then commands start from the measured joints (unlock with ``dashboard_client/unlock_protective_stop``).
/diagnostics (1 Hz), check ``arm``: ERROR for stale joint states or a stop; WARN while waiting for
them or right after a refused target (with the reason); values: targets sent/refused, safety mode,
state age (``kil_control.adapter_status``).
"""

from __future__ import annotations

import sys
from functools import partial

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32, Float64MultiArray
from ur_dashboard_msgs.msg import SafetyMode

from kil_control.adapter_status import AdapterStatus
from kil_control.ur5e import JOINT_NAMES, JointServo, JointServoConfig, forward
from kil_interfaces import conversion
from kil_interfaces.data import RobotStateData
from kil_interfaces.diagnostics import Check, Diagnostics
from kil_interfaces.msg import RobotState
from kil_interfaces.node_runtime import ThrottledWarning, declare, spin_node
from kil_interfaces.rotations import matrix_to_quat, quat_to_matrix

WARN_PERIOD_S = 2.0
#: Safety modes in which the controller follows commands (ur_dashboard_msgs/SafetyMode).
FOLLOWING_SAFETY_MODES = (SafetyMode.NORMAL, SafetyMode.REDUCED)
#: What each other safety mode is, in the words of UR's RTDE safety_mode (for logs and diagnostics).
SAFETY_MODE_NAMES = {
    SafetyMode.PROTECTIVE_STOP: "a protective stop",
    SafetyMode.RECOVERY: "recovery mode",
    SafetyMode.SAFEGUARD_STOP: "a safeguard stop",
    SafetyMode.SYSTEM_EMERGENCY_STOP: "a system emergency stop",
    SafetyMode.ROBOT_EMERGENCY_STOP: "a robot emergency stop",
    SafetyMode.VIOLATION: "a safety violation",
    SafetyMode.FAULT: "a safety fault",
    SafetyMode.VALIDATE_JOINT_ID: "joint ID validation",
    SafetyMode.UNDEFINED_SAFETY_MODE: "an undefined safety mode",
    SafetyMode.AUTOMATIC_MODE_SAFEGUARD_STOP: "an automatic-mode safeguard stop",
    SafetyMode.SYSTEM_THREE_POSITION_ENABLING_STOP: "a three-position enabling stop",
}
#: io_and_status_controller's QoS for its status topics: system defaults made transient local
#: (Universal_Robots_ROS2_Driver ``ur_controllers/src/gpio_controller.cpp``, ``qos_latched``).
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def safety_stop(mode: int | None) -> str:
    """Why the controller follows no command in safety ``mode`` ('' when it does, or before the
    first report)."""
    if mode is None or mode in FOLLOWING_SAFETY_MODES:
        return ""
    name = SAFETY_MODE_NAMES.get(mode, "an unknown safety mode")
    return f"the controller is in {name} (safety mode {mode}): servo targets refused until it is cleared"


class Ur5eNode(Node):
    def __init__(self) -> None:
        super().__init__("ur5e_node")
        p = partial(declare, self)
        self.base_frame = p("base_frame", "base", "the controller's base frame (frame of targets and states)")
        offset = p("tcp_offset_m", 0.0, "TCP distance from the tool0 flange along its z axis (m)")
        defaults = JointServoConfig()
        servo = JointServoConfig(
            max_step_rad=p(
                "max_joint_step_rad", defaults.max_step_rad, "largest joint change per command (rad); longer: shortened"
            ),
            max_jump_rad=p(
                "max_joint_jump_rad", defaults.max_jump_rad,
                "a joint change beyond this between consecutive targets' IK solutions is refused (rad)",
            ),
            resync_tolerance_rad=p(
                "resync_tolerance_rad", defaults.resync_tolerance_rad,
                "joints this far from the last command: the next starts from them (rad)",
            ),
        )  # fmt: skip
        self.servo = JointServo(servo)
        self.timeout_ns = round(p("state_timeout_s", 0.1, "joint states older than this stop commands (s)") * 1e9)
        self.tcp = np.eye(4)
        self.tcp[2, 3] = offset
        self.joints: np.ndarray | None = None
        self.joints_stamp = 0
        self.gripper = 1.0
        self.safety_mode: int | None = None  # none reported yet
        self._warn = ThrottledWarning(self.get_logger(), WARN_PERIOD_S)
        self.create_subscription(SafetyMode, "io_and_status_controller/safety_mode", self._on_safety_mode, LATCHED)
        self.create_subscription(JointState, "joint_states", self._on_joints, 10)
        self.create_subscription(PoseStamped, "kil/servo_target", self._on_target, 10)
        self.create_subscription(Float32, "kil/gripper_command", self._on_gripper, 10)
        self.state_pub = self.create_publisher(RobotState, "kil/robot_state", 10)
        self.command_pub = self.create_publisher(Float64MultiArray, "forward_position_controller/commands", 10)
        self.status = AdapterStatus("/joint_states")
        self.diagnostics = Diagnostics(self, hardware_id="ur5e")
        self.diagnostics.add("arm", self._check_arm)
        self.get_logger().info(f"UR5e adapter: TCP {offset} m beyond tool0, joint steps <= {servo.max_step_rad} rad")

    def _on_joints(self, msg: JointState) -> None:
        index = {name: i for i, name in enumerate(msg.name)}
        missing = [n for n in JOINT_NAMES if n not in index]
        if missing or len(msg.position) < len(msg.name):
            self._warn("joints", f"/joint_states without {', '.join(missing) or 'positions'}: dropped")
            return
        self.joints = np.array([msg.position[index[n]] for n in JOINT_NAMES])
        self.joints_stamp = self.get_clock().now().nanoseconds
        pose = forward(self.joints) @ self.tcp
        state = RobotStateData(
            self.joints_stamp, self.base_frame, pose[:3, 3], matrix_to_quat(pose[:3, :3]), self.gripper,
            JOINT_NAMES, self.joints,
        )  # fmt: skip
        self.state_pub.publish(conversion.robot_state_to_msg(state))

    def _on_safety_mode(self, msg: SafetyMode) -> None:
        was, self.safety_mode = safety_stop(self.safety_mode), int(msg.mode)
        now = safety_stop(self.safety_mode)
        if now and not was:
            self.get_logger().error(now)
        elif was and not now:
            self.servo.reset()  # the arm held while stopped: the next command starts from its joints
            self.get_logger().info(f"safety mode {self.safety_mode} again: servoing from the measured joints")

    def _on_target(self, msg: PoseStamped) -> None:
        if msg.header.frame_id and msg.header.frame_id != self.base_frame:
            self._warn("frame", f"servo target in frame {msg.header.frame_id!r}, not {self.base_frame!r}: dropped")
            return
        now = self.get_clock().now().nanoseconds
        if self.joints is None or now - self.joints_stamp > self.timeout_ns:
            self._refuse("stale", "no fresh /joint_states: servo targets refused", now)
            self.servo.reset()
            return
        stopped = safety_stop(self.safety_mode)
        if stopped:
            self._refuse("safety", stopped, now)
            return
        p, q = msg.pose.position, msg.pose.orientation
        target = np.eye(4)
        target[:3, :3] = quat_to_matrix(np.array([q.x, q.y, q.z, q.w]))
        target[:3, 3] = [p.x, p.y, p.z]
        result = self.servo.step(target @ np.linalg.inv(self.tcp), self.joints)
        where = f"({p.x:.3f}, {p.y:.3f}, {p.z:.3f})"
        if result.joints is None:
            self._refuse(result.refused, f"servo target {where}: {result.reason}: refused", now)
            return
        if result.shortened:  # faster than the joints may go: slowed, not dropped
            self._warn("slowed", f"{result.shortened} at TCP {where}")
        self.command_pub.publish(Float64MultiArray(data=[float(v) for v in result.joints]))
        self.status.on_sent()

    def _refuse(self, kind: str, reason: str, now_ns: int) -> None:
        self.status.on_refused(reason, now_ns)
        self._warn(kind, reason)

    def _check_arm(self) -> Check:
        stamp = self.joints_stamp if self.joints is not None else None
        mode = {} if self.safety_mode is None else {"safety_mode": self.safety_mode}
        now = self.get_clock().now().nanoseconds
        return self.status.check(now, stamp, self.timeout_ns / 1e9, safety_stop(self.safety_mode), **mode)

    def _on_gripper(self, msg: Float32) -> None:
        self.gripper = float(np.clip(msg.data, 0.0, 1.0))


def main(args: list[str] | None = None) -> int:
    return spin_node(Ur5eNode, args)


if __name__ == "__main__":
    sys.exit(main())
