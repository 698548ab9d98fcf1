"""``teleop_node``: a Quest controller (Quest2ROS) drives the arm; its buttons drive the recorder.

Subscribes the controller pose (``/q2r_right_hand_pose``, geometry_msgs/PoseStamped), its buttons
(``/q2r_right_hand_inputs``: quest2ros/OVR2ROSInputs with ``input_type:=quest2ros``, or
sensor_msgs/Joy with the same fields in order with ``input_type:=joy``) and /kil/robot_state.
Every control tick (10 Hz) it publishes /kil/action_chunk: one TCP target due one tick ahead
(``kil_teleop.quest_mapping``: clutched on the grip button, gripper on the index trigger). No
targets while the grip is released or when an input is older than ``max_input_age_s`` (the
interpolator then holds the arm). ``button_lower`` (A) starts/stops a recorder_node episode,
``button_upper`` (B) discards the current one.
/diagnostics (1 Hz), check ``teleop``: WARN while waiting for the controller, its buttons or the robot
state; ERROR when the controller pose or buttons are older than ``max_input_age_s`` (no targets: the
arm holds); OK otherwise (engaged or released, recording or not); values: the inputs' ages.
"""

from __future__ import annotations

import sys
from functools import partial

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from kil_interfaces import conversion
from kil_interfaces.data import ActionChunkData, RobotStateData
from kil_interfaces.diagnostics import ERROR, OK, WARN, Check, Diagnostics
from kil_interfaces.msg import ActionChunk, RobotState
from kil_interfaces.node_runtime import WarnOnce, declare, spin_node
from kil_teleop.quest_mapping import ControllerInputs, QuestTeleop, TeleopConfig

_NS = 1_000_000_000


class TeleopNode(Node):
    def __init__(self) -> None:
        super().__init__("teleop_node")
        p = partial(declare, self)
        input_type = p("input_type", "quest2ros", "button message: quest2ros (OVR2ROSInputs) or joy (sensor_msgs/Joy)")
        rate = p("control_rate_hz", 10.0, "target rate (Hz); demonstrations are recorded on this clock")
        self.max_age_ns = round(p("max_input_age_s", 0.3, "inputs older than this stop targets (s)") * _NS)
        recorder = p(
            "recorder",
            "recorder_node",
            "recorder_node (relative: in this namespace) whose ~/start, ~/stop, ~/discard the buttons call",
        )
        config = TeleopConfig(
            scale=p("scale", 1.0, "robot translation per controller translation"),
            controller_to_base_rpy=tuple(
                p("controller_to_base_rpy", [0.0, 0.0, 0.0], "controller frame in the robot base frame (rad)")
            ),
            max_step_m=p("max_step_m", 0.03, "largest target step per tick (m)"),
            max_rotation_step_rad=p("max_rotation_step_rad", 0.3, "largest target rotation per tick (rad)"),
        )
        self.teleop = QuestTeleop(config)
        self.step_ns = round(_NS / rate)
        self.pose: tuple[int, np.ndarray, np.ndarray] | None = None
        self.inputs: tuple[int, ControllerInputs] | None = None
        self.state: RobotStateData | None = None
        self.recording = False
        self._buttons = (False, False)
        self.warn = WarnOnce(self.get_logger())
        self.create_subscription(PoseStamped, "q2r_right_hand_pose", self._on_pose, 10)
        if input_type == "quest2ros":
            try:
                from quest2ros.msg import OVR2ROSInputs
            except ImportError:
                raise ValueError(
                    "input_type quest2ros needs the quest2ros message package (github.com/Quest2ROS/quest2ros, "
                    "built in this workspace); or bridge the buttons to sensor_msgs/Joy and set input_type:=joy"
                ) from None
            self.create_subscription(OVR2ROSInputs, "q2r_right_hand_inputs", self._on_quest_inputs, 10)
        elif input_type == "joy":
            self.create_subscription(Joy, "q2r_right_hand_inputs", self._on_joy, 10)
        else:
            raise ValueError(f"parameter input_type must be quest2ros or joy, got {input_type!r}")
        self.create_subscription(RobotState, "kil/robot_state", self._on_state, 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(Bool, f"{recorder}/recording", self._on_recording, latched)
        self.recorder_clients = {
            name: self.create_client(Trigger, f"{recorder}/{name}") for name in ("start", "stop", "discard")
        }
        self.publisher = self.create_publisher(ActionChunk, "kil/action_chunk", 10)
        self.engaged = False
        self.diagnostics = Diagnostics(self, hardware_id=f"quest2ros ({input_type})")
        self.diagnostics.add("teleop", self._check_teleop)
        self.create_timer(self.step_ns / _NS, self._on_tick)
        self.get_logger().info(f"teleop at {rate} Hz from /q2r_right_hand_pose ({input_type} buttons)")

    # --- inputs -----------------------------------------------------------------------------------

    def _now(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_pose(self, msg: PoseStamped) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        quaternion = np.array([q.x, q.y, q.z, q.w])
        if not np.isfinite(quaternion).all() or abs(np.linalg.norm(quaternion) - 1.0) > 0.05:
            self.warn("pose", f"/q2r_right_hand_pose: orientation {quaternion} is not a unit quaternion; dropped")
            return
        self.pose = (self._now(), np.array([p.x, p.y, p.z]), quaternion / np.linalg.norm(quaternion))

    def _on_quest_inputs(self, msg) -> None:
        self._on_inputs(ControllerInputs.from_quest2ros(msg))

    def _on_joy(self, msg: Joy) -> None:
        try:
            self._on_inputs(ControllerInputs.from_joy(list(msg.axes), list(msg.buttons)))
        except ValueError as error:
            self.warn("joy", f"/q2r_right_hand_inputs: {error}; dropped")

    def _on_inputs(self, inputs: ControllerInputs) -> None:
        record, discard = inputs.record, inputs.discard
        if record and not self._buttons[0]:  # pressed (rising edge)
            self._call("stop" if self.recording else "start")
        if discard and not self._buttons[1] and self.recording:
            self._call("discard")
        self._buttons = (record, discard)
        self.inputs = (self._now(), inputs)

    def _on_state(self, msg: RobotState) -> None:
        try:
            self.state = conversion.robot_state_from_msg(msg, what="/kil/robot_state")
        except conversion.ConversionError as error:
            self.warn("state", f"bad robot state dropped: {error}")

    def _on_recording(self, msg: Bool) -> None:
        self.recording = bool(msg.data)

    def _call(self, name: str) -> None:
        client = self.recorder_clients[name]
        if not client.service_is_ready():
            self.get_logger().warning(f"{client.srv_name} is not available; is recorder_node running?")
            return
        future = client.call_async(Trigger.Request())
        future.add_done_callback(lambda f: self.get_logger().info(f"{client.srv_name}: {f.result().message}"))

    # --- control loop -----------------------------------------------------------------------------

    def _check_teleop(self) -> Check:
        now = self._now()
        stamps = {"/q2r_right_hand_pose": self.pose, "/q2r_right_hand_inputs": self.inputs}
        values: dict[str, object] = {f"{t} age_s": None if v is None else (now - v[0]) / _NS for t, v in stamps.items()}
        values["recording"] = self.recording
        missing = [t for t, v in stamps.items() if v is None] + (["/kil/robot_state"] if self.state is None else [])
        if missing:
            return Check(WARN, f"waiting for {', '.join(missing)}", values)
        stale = [t for t, v in stamps.items() if now - v[0] > self.max_age_ns]
        if stale:
            return Check(ERROR, f"{', '.join(stale)} older than max_input_age_s: no targets, the arm holds", values)
        return Check(OK, "engaged (grip held)" if self.engaged else "released (hold the grip to move)", values)

    def _on_tick(self) -> None:
        now = self._now()
        if self.pose is None or self.inputs is None or self.state is None:
            return
        for name, stamp in (("controller pose", self.pose[0]), ("buttons", self.inputs[0])):
            if now - stamp > self.max_age_ns:
                self.warn(f"stale {name}", f"{name} older than max_input_age_s: no targets until it is fresh")
                self.teleop.release()
                return
        target = self.teleop.update(
            self.pose[1], self.pose[2], self.inputs[1], self.state.position, self.state.quaternion
        )
        self.engaged = target is not None
        if target is None:
            return
        chunk = ActionChunkData(
            stamp_ns=now + self.step_ns,
            frame_id=self.state.frame_id,
            step_ns=self.step_ns,
            positions=target.position[None],
            quaternions=target.quaternion[None],
            gripper=np.array([target.gripper], np.float32),
            execute_steps=1,
        )
        self.publisher.publish(conversion.action_chunk_to_msg(chunk))


def main(args: list[str] | None = None) -> int:
    return spin_node(TeleopNode, args)


if __name__ == "__main__":
    sys.exit(main())
