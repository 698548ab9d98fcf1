"""``lite6_node``: the Lite6 adapter between the kil topics and xarm_ros2 (``xarm_api``).

In: /kil/servo_target (geometry_msgs/PoseStamped, base frame, from interpolator_node),
/kil/gripper_command (std_msgs/Float32, 0 closed .. 1 open) and ``<namespace>/robot_states``
(xarm_msgs/RobotMsg; launch xarm_api with ``report_type:=dev`` for 100 Hz states).
Out: /kil/robot_state (RobotState) and, through ``kil_control.lite6.ServoGate``,
``<namespace>/set_servo_cartesian`` calls; the gripper through ``open_lite6_gripper`` /
``close_lite6_gripper`` (enable them in xarm_user_params.yaml). At start-up it enables the
motors and switches to servo mode (``motion_enable``, ``set_mode`` 1, ``set_state`` 0, each
answered before the next; a refusal or a missing service within ``driver_timeout_s`` stops the
node with the controller's message). Targets refused by the gate or by the controller (a
non-zero ``ret``, e.g. -8 out of range) are logged (throttled) with the reason; the arm then
keeps its last target. A stream that starts a few millimetres to ``resync_distance_m`` off the arm
(begun before servo mode, say) is ramped in by the gate, ``ramp_step_m`` per target, instead of
refused; a new stream waits until the arm has stopped (``settle_window_s``, ``settle_distance_m``)
at the last target the controller accepted.
The controller measures each servo step from the last target it *accepted*, so a target sent
while earlier ones are unanswered is sent only when it is within ``max_step_m`` of the last
accepted target and of every unanswered one (any of them may be refused: ``ret`` -8 out of range);
otherwise it waits for the next answer (the newest replacing an older one), and it is dropped when
that answer is a refusal. The first target of a stream waits for its answer before the next is
sent. A target that waited and fell more than a step behind the stream is ramped towards (in
steps of twice the stream's own, at most ``max_step_m``), not refused. Requests unanswered
after ``servo_answer_timeout_s`` are given up: the stream starts again at the arm's pose.
/diagnostics (1 Hz), check ``arm``: ERROR for stale robot states, a controller error code or a mode
other than servo; WARN while waiting for states or right after a refused target (with the reason);
values: targets sent/refused, mode, error code, state age (``kil_control.adapter_status``), and
targets superseded (replaced by a newer one while waiting for an answer).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from typing import Protocol

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from std_msgs.msg import Float32

from kil_control.adapter_status import AdapterStatus
from kil_control.lite6 import (
    SERVO_MODE,
    GripperLatch,
    ServoGate,
    ServoGateConfig,
    XArmState,
    pose_to_xarm,
    xarm_to_pose,
)
from kil_interfaces import conversion
from kil_interfaces.data import RobotStateData
from kil_interfaces.diagnostics import Check, Diagnostics
from kil_interfaces.msg import RobotState
from kil_interfaces.node_runtime import ThrottledWarning, declare, spin_node

WARN_PERIOD_S = 2.0


class XArmDriver(Protocol):
    """What the adapter needs from the arm (xarm_ros2's services, or a test double)."""

    def start_servo(self) -> None: ...

    def servo(self, pose: list[float], answered: Callable[[int, str], None]) -> None:
        """Send one servo target [x, y, z mm, roll, pitch, yaw rad]; ``answered(ret, message)`` is
        called (from the node's executor) with the controller's answer."""

    def gripper(self, action: str) -> None: ...


class XArmServices:
    """xarm_ros2's ``xarm_api`` services and state topic (needs the xarm_msgs package).

    Args:
        node: the adapter node. namespace: xarm_api's namespace (``/ufactory`` for the Lite6).
        on_state: called with (stamp_ns, pose [mm, rad], mode, error, joint angles) per RobotMsg.
    """

    def __init__(self, node: Node, namespace: str, on_state, timeout_s: float = 30.0) -> None:
        try:
            from xarm_msgs.msg import RobotMsg
            from xarm_msgs.srv import Call, MoveCartesian, SetInt16, SetInt16ById
        except ImportError:
            raise RuntimeError(
                "the Lite6 adapter needs xarm_msgs (github.com/xArm-Developer/xarm_ros2, built in the workspace)"
            ) from None
        self.node, self.ns, self.timeout_s = node, namespace.rstrip("/"), timeout_s
        self.types = {"call": Call, "move": MoveCartesian, "int16": SetInt16, "by_id": SetInt16ById}
        self.servo_client = node.create_client(MoveCartesian, f"{self.ns}/set_servo_cartesian")
        self.grippers = {a: node.create_client(Call, f"{self.ns}/{a}_lite6_gripper") for a in ("open", "close")}

        def state(msg) -> None:
            on_state(conversion.time_to_ns(msg.header.stamp), list(msg.pose), msg.mode, msg.err, list(msg.angle))

        node.create_subscription(RobotMsg, f"{self.ns}/robot_states", state, 10)

    def _call(self, kind: str, name: str, **fields) -> None:
        """Call one set-up service and wait for its answer (the order matters: the mode must be set
        before the state), so that a refusal stops the adapter with the controller's message."""
        import rclpy

        service = f"{self.ns}/{name}"
        client = self.node.create_client(self.types[kind], service)
        if not client.wait_for_service(timeout_sec=self.timeout_s):
            raise RuntimeError(f"{service} is not available within {self.timeout_s:.0f} s; is xarm_api running?")
        request = self.types[kind].Request()
        for key, value in fields.items():
            setattr(request, key, value)
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=self.timeout_s)
        if not future.done():
            raise RuntimeError(f"{service} did not answer within {self.timeout_s:.0f} s")
        response = future.result()
        if response.ret != 0:
            raise RuntimeError(f"{service} refused (ret {response.ret}): {response.message}")

    def start_servo(self) -> None:
        self._call("by_id", "motion_enable", id=8, data=1)
        self._call("int16", "set_mode", data=1)
        self._call("int16", "set_state", data=0)

    def servo(self, pose: list[float], answered: Callable[[int, str], None]) -> None:
        request = self.types["move"].Request()
        request.pose = [float(v) for v in pose]
        future = self.servo_client.call_async(request)

        def done(future) -> None:
            response = future.result()
            if response is None:  # (the client was destroyed)
                answered(-1, "no answer")
            else:
                answered(int(response.ret), str(response.message))

        future.add_done_callback(done)

    def gripper(self, action: str) -> None:
        self.grippers[action].call_async(self.types["call"].Request())


class Lite6Node(Node):
    def __init__(self, driver_factory=None) -> None:
        super().__init__("lite6_node")
        p = partial(declare, self)
        namespace = p("namespace", "/ufactory", "xarm_api namespace")
        driver_timeout = p("driver_timeout_s", 30.0, "how long start-up waits for each xarm_api service (s)")
        self.base_frame = p("base_frame", "link_base", "robot base frame (frame of servo targets and states)")
        self.answer_timeout_ns = int(
            1e9
            * p(
                "servo_answer_timeout_s",
                1.0,
                "a set_servo_cartesian request unanswered this long is given up (the stream restarts at the pose)",
            )
        )
        if self.answer_timeout_ns <= 0:
            raise ValueError(f"servo_answer_timeout_s must be > 0, got {self.answer_timeout_ns / 1e9}")
        self.gate = ServoGate(
            ServoGateConfig(
                max_step_m=p("max_step_m", 0.0095, "largest servo step (m); xArm requires < 10 mm"),
                first_target_tolerance_m=p(
                    "first_target_tolerance_m", 0.005, "the first target must be this close to the pose (m)"
                ),
                state_timeout_s=p("state_timeout_s", 0.2, "robot states older than this stop servoing (s)"),
                resync_distance_m=p(
                    "resync_distance_m", 0.05, "the arm this far from the last target: streams start at its pose (m)"
                ),
                ramp_step_m=p(
                    "ramp_step_m",
                    0.002,
                    "a stream starting up to resync_distance_m off: ramped in by this per target (m)",
                ),
                settle_window_s=p(
                    "settle_window_s", 0.1, "a new stream waits until the arm moved < settle_distance_m this long (s)"
                ),
                settle_distance_m=p(
                    "settle_distance_m", 0.001, "a new stream starts once the arm moves less than this (m)"
                ),
            )
        )
        self.latch = GripperLatch()
        self.state: XArmState | None = None
        self.gripper = 1.0
        self._warn = ThrottledWarning(self.get_logger(), WARN_PERIOD_S)
        self.state_pub = self.create_publisher(RobotState, "kil/robot_state", 10)
        # Servo requests not answered yet (number -> (position sent (3,), when)), the last target the
        # controller accepted in this stream (and its number), the newest target waiting to be
        # sent ((position (3,), quaternion (4,) xyzw) or None) and how many were replaced waiting.
        self._request, self._in_flight = 0, {}
        self._accepted: np.ndarray | None = None
        self._accepted_request = 0
        self._waiting: tuple[np.ndarray, np.ndarray] | None = None
        self._superseded = 0
        self._received: np.ndarray | None = None  # the newest target received (3,), and its step from the last
        self._stream_step = 0.0
        factory = driver_factory or (lambda node, on_state: XArmServices(node, namespace, on_state, driver_timeout))
        self.driver: XArmDriver = factory(self, self.on_xarm_state)
        self.create_subscription(PoseStamped, "kil/servo_target", self._on_target, 10)
        self.create_subscription(Float32, "kil/gripper_command", self._on_gripper, 10)
        self.status = AdapterStatus(f"{namespace.rstrip('/')}/robot_states")
        self.diagnostics = Diagnostics(self, hardware_id=f"lite6 {namespace}")
        self.diagnostics.add("arm", self._check_arm)
        self.driver.start_servo()
        self.get_logger().info(f"Lite6 adapter on {namespace}: servo mode, steps < {self.gate.config.max_step_m} m")

    def on_xarm_state(self, stamp_ns: int, pose: list[float], mode: int, error: int, joints: list[float]) -> None:
        """A RobotMsg's contents: republished as /kil/robot_state, kept for the gate."""
        try:
            position, quaternion = xarm_to_pose(pose)
        except ValueError as error_text:
            self._warn("state", f"{self.driver.__class__.__name__} state dropped: {error_text}")
            return
        received = self.get_clock().now().nanoseconds
        stamp_ns = stamp_ns or received  # the measurement's stamp when the driver sets one
        self.state = XArmState(received, position, quaternion, int(mode), int(error))  # staleness: receive time
        self.gate.observe(self.state)
        names = tuple(f"joint{i + 1}" for i in range(len(joints)))
        state = RobotStateData(stamp_ns, self.base_frame, position, quaternion, self.gripper, names, np.array(joints))
        self.state_pub.publish(conversion.robot_state_to_msg(state))

    def _on_target(self, msg: PoseStamped) -> None:
        if msg.header.frame_id and msg.header.frame_id != self.base_frame:
            self._warn("frame", f"servo target in frame {msg.header.frame_id!r}, not {self.base_frame!r}: dropped")
            return
        p, q = msg.pose.position, msg.pose.orientation
        now = self.get_clock().now().nanoseconds
        oldest = min((sent_ns for _, sent_ns in self._in_flight.values()), default=None)
        if oldest is not None and now - oldest > self.answer_timeout_ns:
            self._in_flight.clear()  # their answers, should they come, belong to no request now
            waited = (now - oldest) / 1e9
            self._on_driver_refused(
                f"set_servo_cartesian did not answer within {waited:.2f} s (servo_answer_timeout_s)"
            )
        held = self._waiting is not None  # the stream went on while a target waited
        self._superseded += held
        position = np.array([p.x, p.y, p.z])
        if self._received is not None:
            self._stream_step = float(np.linalg.norm(position - self._received))
        self._received = position
        self._waiting = (position, np.array([q.x, q.y, q.z, q.w]))
        self._flush(now, waited=held)

    def _flush(self, now: int, waited: bool) -> None:
        """Send the waiting target through the gate, unless the controller could measure its step
        from a target further than ``max_step_m`` away (see the module docstring): then it waits
        for the next answer. ``waited``: targets waited since the last one sent (the stream may
        have moved on by more than one step since: ramped towards, not refused as a jump)."""
        if self._waiting is None:
            return
        position, quaternion = self._waiting
        gate = self.gate
        saved = gate.snapshot()
        if waited:
            gate.catch_up(position, self._stream_step)
        sent, note = gate.admit(position, self.state, now)
        if sent is None:
            self._waiting = None
            self.status.on_refused(note, now)
            self._warn("gate", f"servo target refused: {note}")
            return
        if self._in_flight and not self._measured_alike(sent):
            gate.restore(saved)  # not sent: the gate's stream is where it was
            return
        self._waiting = None
        if note:
            self._warn("ramp", note)
        self._request += 1
        self._in_flight[self._request] = (sent, now)
        self.driver.servo(pose_to_xarm(sent, quaternion), partial(self._on_answer, self._request))
        self.status.on_sent()

    def _measured_alike(self, position: np.ndarray) -> bool:
        """Whether ``position`` (3,) is within the step rule of every target the controller may
        measure it from: the last one it accepted and each one it has not answered yet (any of
        them may be refused). Until the controller accepted one since the stream started, only one
        target is in flight."""
        if self._accepted is None:
            return False
        references = [self._accepted, *(sent for sent, _ in self._in_flight.values())]
        limit = self.gate.config.max_step_m
        return all(float(np.linalg.norm(position - r)) <= limit for r in references)

    def _on_answer(self, request: int, ret: int, message: str) -> None:
        """The controller's answer to servo request number ``request``."""
        answered = self._in_flight.pop(request, None)
        if answered is None:  # a request given up on (servo_answer_timeout_s), answered late
            if ret != 0:
                self._warn("late", f"a late answer to a given-up servo target: refused (ret {ret}): {message}")
            return
        if ret != 0:  # the waiting target was meant to follow the refused one: dropped with it
            self._on_driver_refused(f"set_servo_cartesian refused (ret {ret}): {message}")
            return
        if request > self._accepted_request:
            self._accepted, self._accepted_request = answered[0], request
        self._flush(self.get_clock().now().nanoseconds, waited=True)

    def _on_driver_refused(self, reason: str) -> None:
        """The controller did not follow a servo target: the arm holds; streams start over at its pose."""
        self._waiting, self._accepted = None, None
        self.gate.resync()
        self.status.on_refused(reason, self.get_clock().now().nanoseconds)
        self._warn("driver", reason)

    def _check_arm(self) -> Check:
        state, now = self.state, self.get_clock().now().nanoseconds
        timeout = self.gate.config.state_timeout_s
        if state is None:
            return self.status.check(now, None, timeout)
        fault = ""
        if state.error:
            fault = f"the controller reports error {state.error}; clear it (clean_error) and restart servo mode"
        elif state.mode != SERVO_MODE:
            fault = f"the controller is in mode {state.mode}, not servo mode {SERVO_MODE}"
        return self.status.check(
            now, state.stamp_ns, timeout, fault, mode=state.mode, error=state.error, targets_superseded=self._superseded
        )

    def _on_gripper(self, msg: Float32) -> None:
        action = self.latch.update(float(msg.data))
        if action is not None:
            self.driver.gripper(action)
            self.gripper = 1.0 if action == "open" else 0.0


def main(args: list[str] | None = None) -> int:
    return spin_node(Lite6Node, args)


if __name__ == "__main__":
    sys.exit(main())
