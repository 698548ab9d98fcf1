"""The vendor drivers' ROS interfaces, served by sim_node for its simulated arms.

``robot:=ur5e``: what ur_robot_driver offers and ``kil_control.ur5e_node`` uses: ``joint_states``
(sensor_msgs/JointState with the controller's six joint names, at the state rate) and
``forward_position_controller/commands`` (std_msgs/Float64MultiArray, joint positions in that
order). Each command goes to :class:`~kil_sim.simulated_arm.SimulatedArm`, which refuses what the
controller would not follow (wrong length, not finite, beyond a joint limit; logged, the arm keeps
its last target) and moves no joint faster than its maximum speed. A collision
(``kil_sim.arm_collision``) puts the arm into a protective stop: it holds and follows no command
until ``dashboard_client/unlock_protective_stop`` (std_srvs/Trigger, as ur_robot_driver's dashboard
client serves it) is called; the first command after that must start at the joints. The stop is
reported as the real driver's io_and_status_controller does: ``io_and_status_controller/safety_mode``
(ur_dashboard_msgs/SafetyMode, transient local, published on change: NORMAL, PROTECTIVE_STOP, NORMAL
again after the unlock; the PyPI set-up generates ur_dashboard_msgs as a subset of the driver's).

``robot:=lite6``: xarm_api's services and robot_states (:class:`XArmDriverInterface`; needs
xarm_msgs, which the PyPI set-up generates as a field-for-field subset of xarm_ros2's).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from ur_dashboard_msgs.msg import SafetyMode

from kil_control.ur5e_node import LATCHED as UR_LATCHED_QOS
from kil_interfaces import conversion
from kil_interfaces.rotations import quat_to_matrix
from kil_sim.simulated_arm import SimulatedArm

#: After a simulator reset, a UR command further than this from the arm's joints is not followed (rad).
RESET_JUMP_RAD = 0.1


class UrDriverInterface:
    """ur_robot_driver's joint_states / forward_position_controller/commands on ``node``.

    Args:
        node: sim_node. arm: the simulated UR5e. warn: ``warn(key, text)`` for throttled warnings.
        on_command: called after each accepted command (the simulator starts its expert then).
    """

    def __init__(self, node: Node, arm: SimulatedArm, warn: Callable[[str, str], None], on_command=None) -> None:
        self.arm, self.warn, self.on_command = arm, warn, on_command
        self.commands = 0
        self.just_reset = True
        self.protective_stop = ""  # why the arm is in a protective stop ("" = not)
        self.state_pub = node.create_publisher(JointState, "joint_states", 10)
        node.create_subscription(Float64MultiArray, "forward_position_controller/commands", self._on_command, 10)
        node.create_service(Trigger, "dashboard_client/unlock_protective_stop", self._on_unlock)
        self.safety_pub = node.create_publisher(SafetyMode, "io_and_status_controller/safety_mode", UR_LATCHED_QOS)
        self._publish_safety_mode()

    def _publish_safety_mode(self) -> None:
        mode = SafetyMode.PROTECTIVE_STOP if self.protective_stop else SafetyMode.NORMAL
        self.safety_pub.publish(SafetyMode(mode=mode))

    @property
    def faulted(self) -> bool:
        """In a protective stop."""
        return bool(self.protective_stop)

    def collide(self, detail: str) -> None:
        """A collision: protective stop (the arm holds where it is until unlocked)."""
        if self.protective_stop:
            return
        self.protective_stop = detail
        self.arm.command(self.arm.joints)
        self._publish_safety_mode()
        self.warn("collision", f"protective stop: {detail}; commands are not followed until unlock_protective_stop")

    def _on_unlock(self, request, response):
        was = self.protective_stop
        self.protective_stop, self.just_reset = "", True  # the stream must start again at the joints
        if was:
            self._publish_safety_mode()
        response.success = True
        response.message = f"protective stop unlocked ({was})" if was else "no protective stop"
        return response

    def reset(self, arm: SimulatedArm) -> None:
        """A new episode: the arm was placed anew. Until a command near its joints arrives, the
        commands of the stream aimed at its old place are not followed (a real arm is never moved
        by a reset; without this it would drive back to where the last episode ended)."""
        self.arm, self.just_reset = arm, True

    def _on_command(self, msg: Float64MultiArray) -> None:
        if self.protective_stop:
            self.warn("stopped", f"protective stop ({self.protective_stop}): command not followed")
            return
        command = list(msg.data)
        if self.just_reset and self.arm.problem(command) is None:
            jump = float(np.max(np.abs(np.asarray(command) - self.arm.joints)))
            if jump > RESET_JUMP_RAD:
                self.warn("reset", f"a command {jump:.2f} rad from the joints right after a reset: not followed")
                return
            self.just_reset = False
        problem = self.arm.command(command)
        if problem is not None:
            self.warn("command", f"forward_position_controller/commands: {problem}; holding the last target")
            return
        self.commands += 1
        if self.on_command is not None:
            self.on_command()

    def publish_state(self, stamp_ns: int) -> None:
        """/joint_states of the arm now (positions; velocities are not reported)."""
        msg = JointState()
        msg.header.stamp = conversion.ns_to_time(stamp_ns)
        msg.name = list(self.arm.model.joint_names)
        msg.position = [float(v) for v in self.arm.joints]
        self.state_pub.publish(msg)


#: xArm API return codes (xArm-Python-SDK ``doc/api/xarm_api_code.md``, "API Code").
XARM_OK, XARM_UNCLEARED_ERROR, XARM_NOT_READY, XARM_PARAMETER_ERROR, XARM_OUT_OF_RANGE = 0, 1, 9, 12, -8
#: RobotMsg ``state``: 2 ready (sleeping), 4 stopped, 5 configuration changed (xarm_msgs/RobotMsg).
XARM_READY, XARM_STOPPED, XARM_CONFIG_CHANGED = 2, 4, 5
XARM_SERVO_MODE = 1
#: The controller error this simulator raises for a servo step longer than the step rule allows
#: (its own code: the real controller's code for it depends on the firmware).
SIM_STEP_ERROR = 99
#: C31 "Collision Caused Abnormal Current" (xArm-Python-SDK ``xarm/core/config/x_code.py``).
XARM_COLLISION_ERROR = 31


class XArmDriverInterface:
    """xarm_api's interface for the Lite6 as ``kil_control.lite6_node`` uses it, under ``hw_ns``:
    ``robot_states`` (xarm_msgs/RobotMsg), services ``motion_enable``, ``set_mode``,
    ``set_state``, ``clean_error``, ``set_servo_cartesian`` and ``open/close_lite6_gripper``.

    As the controller does: servo targets are followed only with the motors enabled, in servo
    mode (1) after ``set_state`` 0, without an uncleared error (else ``ret`` 9 or 1); each target
    goes through the controller's own inverse kinematics (none within the joint limits:
    ``ret`` -8, the arm keeps its target); a target more than ``max_step_mm`` from the last one
    faults the controller (``err`` :data:`SIM_STEP_ERROR`, state stopped) until ``clean_error``,
    ``set_mode`` 1 and ``set_state`` 0; so does a collision (:meth:`collide`, ``err`` 31, C31).
    Pose units: mm and rad, R = Rz(yaw) Ry(pitch) Rx(roll).

    Args:
        node: sim_node. arm: the simulated Lite6. warn: ``warn(key, text)``.
        set_gripper: ``set_gripper(opening)`` (1 open, 0 closed) for the gripper services.
        on_command: called after each followed servo target. hw_ns: the services' namespace.
    """

    def __init__(
        self,
        node: Node,
        arm: SimulatedArm,
        warn: Callable[[str, str], None],
        set_gripper: Callable[[float], None],
        on_command=None,
        hw_ns: str = "ufactory",
        max_step_mm: float = 10.0,
    ) -> None:
        from xarm_msgs.msg import RobotMsg
        from xarm_msgs.srv import Call, MoveCartesian, SetInt16, SetInt16ById

        self.arm, self.warn, self.on_command, self.max_step_mm = arm, warn, on_command, max_step_mm
        self.mode, self.state, self.error, self.enabled = 0, XARM_READY, 0, False
        self.last_target_mm: np.ndarray | None = None
        self.just_reset = False
        self.commands = 0
        self._robot_msg = RobotMsg
        ns = hw_ns.rstrip("/")
        self.state_pub = node.create_publisher(RobotMsg, f"{ns}/robot_states", 10)
        node.create_service(SetInt16ById, f"{ns}/motion_enable", self._on_enable)
        node.create_service(SetInt16, f"{ns}/set_mode", self._on_mode)
        node.create_service(SetInt16, f"{ns}/set_state", self._on_state)
        node.create_service(Call, f"{ns}/clean_error", self._on_clean_error)
        node.create_service(MoveCartesian, f"{ns}/set_servo_cartesian", self._on_servo)
        node.create_service(Call, f"{ns}/open_lite6_gripper", partial(self._on_gripper, set_gripper, 1.0))
        node.create_service(Call, f"{ns}/close_lite6_gripper", partial(self._on_gripper, set_gripper, 0.0))

    def reset(self, arm: SimulatedArm) -> None:
        """A new episode: the arm was placed anew (the next servo step is measured from its pose).
        Until a target near its pose arrives, targets aimed at its old place are refused without a
        fault (``ret`` 9: a real arm is never moved by a reset)."""
        self.arm, self.last_target_mm, self.just_reset = arm, None, True

    @property
    def faulted(self) -> bool:
        """The controller reports an error."""
        return bool(self.error)

    def collide(self, detail: str) -> None:
        """A collision: error C31, state stopped, the arm holds where it is."""
        if self.error:
            return
        self.error, self.state = XARM_COLLISION_ERROR, XARM_STOPPED
        self.arm.command(self.arm.joints)
        self.warn("collision", f"controller error C31 (collision caused abnormal current): {detail}")

    # --- services ---------------------------------------------------------------------------------

    def _on_enable(self, request, response):
        self.enabled = bool(request.data)
        response.ret, response.message = XARM_OK, "motion enabled" if self.enabled else "motion disabled"
        return response

    def _on_mode(self, request, response):
        self.mode, self.state = int(request.data), XARM_CONFIG_CHANGED
        self.last_target_mm = None
        response.ret, response.message = XARM_OK, f"mode {self.mode}; set_state 0 to move"
        return response

    def _on_state(self, request, response):
        if int(request.data) == 0:
            self.state = XARM_READY if not self.error else XARM_STOPPED
        else:
            self.state = XARM_STOPPED
            self.arm.command(self.arm.joints)  # stop where it is
        response.ret = XARM_UNCLEARED_ERROR if self.error else XARM_OK
        response.message = f"state {self.state}"
        return response

    def _on_clean_error(self, request, response):
        self.error = 0
        response.ret, response.message = XARM_OK, "error cleared; set_mode and set_state 0 to move"
        return response

    def _on_gripper(self, set_gripper, opening: float, request, response):
        set_gripper(opening)
        response.ret, response.message = XARM_OK, "gripper " + ("open" if opening else "closed")
        return response

    def _on_servo(self, request, response):
        response.ret, response.message = self.servo(list(request.pose))
        return response

    def servo(self, pose: list[float]) -> tuple[int, str]:
        """One set_servo_cartesian target [x, y, z mm, roll, pitch, yaw rad] -> (ret, message)."""
        from kil_control.lite6 import xarm_to_pose

        if self.error:
            return XARM_UNCLEARED_ERROR, f"controller error {self.error} not cleared (clean_error)"
        if not self.enabled or self.mode != XARM_SERVO_MODE or self.state not in (XARM_READY, 1):
            return XARM_NOT_READY, f"not ready to move (enabled {self.enabled}, mode {self.mode}, state {self.state})"
        try:
            position_m, quaternion = xarm_to_pose(pose)
        except ValueError as error:
            return XARM_PARAMETER_ERROR, str(error)
        target_mm = position_m * 1000.0
        reference = self.last_target_mm
        if reference is None:
            reference = self.arm.tcp_pose()[0] * 1000.0
        step = float(np.linalg.norm(target_mm - reference))
        if self.just_reset and step > self.max_step_mm:
            return XARM_NOT_READY, f"the simulator reset the arm {step:.0f} mm away: start the stream at its pose"
        self.just_reset = False
        if step > self.max_step_mm:
            self.error, self.state = SIM_STEP_ERROR, XARM_STOPPED
            self.arm.command(self.arm.joints)
            self.warn("step", f"set_servo_cartesian: a {step:.1f} mm step (> {self.max_step_mm} mm): controller fault")
            return XARM_UNCLEARED_ERROR, f"a {step:.1f} mm servo step faults the controller (error {SIM_STEP_ERROR})"
        pose_matrix = np.eye(4)
        pose_matrix[:3, :3], pose_matrix[:3, 3] = quat_to_matrix(quaternion), position_m
        joints = self.arm.model.inverse(pose_matrix, self.arm.target)
        if joints is None:
            where = np.round(target_mm, 1).tolist()
            self.warn("reach", f"set_servo_cartesian: {where} mm has no solution within the joint limits")
            return XARM_OUT_OF_RANGE, f"{where} mm is out of range (no solution within the joint limits)"
        self.arm.command(joints)
        self.last_target_mm = target_mm
        self.commands += 1
        if self.on_command is not None:
            self.on_command()
        return XARM_OK, ""

    def publish_state(self, stamp_ns: int) -> None:
        """robot_states now: state, mode, err, joint angles (rad), TCP pose (mm, rad)."""
        from kil_control.lite6 import pose_to_xarm

        msg = self._robot_msg()
        msg.header.stamp = conversion.ns_to_time(stamp_ns)
        msg.state, msg.mode, msg.err = int(self.state), int(self.mode), int(self.error)
        msg.mt_able = 0x3F if self.enabled else 0
        msg.angle = [float(v) for v in self.arm.joints]
        msg.pose = [float(v) for v in pose_to_xarm(*self.arm.tcp_pose())]
        msg.offset = [0.0, 0.0, float(self.arm.model.tcp_offset_m * 1000.0), 0.0, 0.0, 0.0]
        self.state_pub.publish(msg)
