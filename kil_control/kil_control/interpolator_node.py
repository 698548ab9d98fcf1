"""``interpolator_node``: 10 Hz action chunks in, rate-limited servo setpoints out.

Subscribes /kil/action_chunk (policy or teleop) and /kil/robot_state; publishes
/kil/servo_target (geometry_msgs/PoseStamped, TCP in the base frame) and /kil/gripper_command
(std_msgs/Float32) at ``rate_hz``. The first setpoint is the robot's current pose (the Lite6 servo
mode requires it); all limits (workspace box, step length, speeds, staleness hold) are
``kil_control.interpolation``'s and are parameters here. When the measured TCP stays more than
``resync_distance_m`` from the setpoints for ``resync_after_s`` (something else moved the arm: a
simulated episode reset, a teach-mode move; or its driver stopped following: a refused target, a
cleared controller fault), the plan is dropped and the setpoints start again from the measured
pose, with a warning: an adapter that only accepts targets near the arm would otherwise refuse
the stream for ever.

``~/reset`` (std_srvs/Trigger) starts a new episode: the plan is dropped, nothing is published until
a /kil/robot_state stamped at or after the reset arrives, and the setpoints start from that state's
pose with the gripper at ``episode_start_gripper`` (default 1.0, open, as demonstrations start;
negative: the state's opening; an unstamped state, stamp 0, is taken as new); action chunks stamped
before the reset are dropped. A harness that moves the arm between episodes (a simulated episode
reset) calls it: without it the last episode's plan went on for ``resync_after_s`` — its poses
refused by an arm far from them, but its gripper commands followed — and an adapter that reports
the commanded opening (``ur5e_node``) would start the next episode with the last one's gripper,
closed after a collision.

/diagnostics (1 Hz, ``diagnostics_period_s``), check ``plan``: OK while a plan is executing (or
before the first chunk); WARN while starved (the plan ran out more than ``starvation_grace_s`` ago
and no new chunk has arrived, for less than ``stale_after_s``) or waiting for the first robot state;
ERROR while holding because the chunks went stale. Values: plan time left, starvations, accepted
and refused chunks, the last refusal, the share of setpoints the safety limits changed.
"""

from __future__ import annotations

import sys
from functools import partial

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from std_msgs.msg import Float32
from std_srvs.srv import Trigger

from kil_control.interpolation import ChunkInterpolator, InterpolatorConfig, SafetyLimits
from kil_interfaces import conversion
from kil_interfaces.diagnostics import ERROR, OK, WARN, Check, Diagnostics
from kil_interfaces.msg import ActionChunk, RobotState
from kil_interfaces.node_runtime import ThrottledWarning, WarnOnce, declare, spin_node


class InterpolatorNode(Node):
    def __init__(self) -> None:
        super().__init__("interpolator_node")
        p = partial(declare, self)
        d = SafetyLimits()
        rate = p("rate_hz", 200.0, "setpoint rate (Hz); 100-250 for the Lite6 servo mode")
        limits = SafetyLimits(
            workspace_min=tuple(p("workspace_min", list(d.workspace_min), "TCP box lower corner [x, y, z] (m)")),
            workspace_max=tuple(p("workspace_max", list(d.workspace_max), "TCP box upper corner [x, y, z] (m)")),
            max_linear_speed=p("max_linear_speed", d.max_linear_speed, "TCP speed limit (m/s)"),
            max_angular_speed=declare(
                self, "max_angular_speed", d.max_angular_speed, "TCP rotation speed limit (rad/s)"
            ),
            max_step_m=p("max_step_m", d.max_step_m, "largest position change per setpoint (m)"),
            stale_after_s=declare(
                self, "stale_after_s", d.stale_after_s, "hold when no chunk arrives for this long (s)"
            ),
        )
        self.config = InterpolatorConfig(rate_hz=rate, limits=limits)
        self.base_frame = p("base_frame", "link_base", "robot base frame of the setpoints")
        grace = p(
            "starvation_grace_s",
            0.2,
            "diagnostics: the plan may run out for this long before it counts as starved (a policy's next chunk "
            "is due when the plan ends, plus its inference time)",
        )
        self.grace_ns = round(grace * 1e9)
        self.resync_distance = p(
            "resync_distance_m", 0.05, "restart from the measured pose when it stays this far from the setpoints (m)"
        )
        self.resync_after_ns = round(p("resync_after_s", 0.5, "... after it has been that far for this long (s)") * 1e9)
        if self.resync_distance <= 0 or self.resync_after_ns <= 0:
            raise ValueError("parameters resync_distance_m and resync_after_s must be > 0")
        self._last_setpoint = None
        self._diverged_since: int | None = None
        self.resyncs = 0
        self.episode_start_gripper = p(
            "episode_start_gripper",
            1.0,
            "~/reset: the gripper command a new episode starts with (0 closed .. 1 open; negative: the measured one)",
        )
        if self.episode_start_gripper > 1.0:
            raise ValueError(f"parameter episode_start_gripper must be <= 1, got {self.episode_start_gripper}")
        self.resets = 0
        self._reset_ns = 0  # ~/reset: inputs stamped before it belong to the previous episode
        self.interpolator: ChunkInterpolator | None = None
        self.target_pub = self.create_publisher(PoseStamped, "kil/servo_target", 10)
        self.gripper_pub = self.create_publisher(Float32, "kil/gripper_command", 10)
        self.create_subscription(ActionChunk, "kil/action_chunk", self._on_chunk, 10)
        self.create_subscription(RobotState, "kil/robot_state", self._on_state, 10)
        self.create_timer(1.0 / rate, self._on_timer)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self._holding = False
        self._warn_once = WarnOnce(self.get_logger())
        self._warn = ThrottledWarning(self.get_logger(), 5.0)
        self.accepted = self.refused = self.starvations = self.setpoints = self.limited = 0
        self._starved = False
        self.diagnostics = Diagnostics(self, hardware_id=self.base_frame)
        self.diagnostics.add("plan", self._check_plan)

    def _check_plan(self) -> Check:
        values: dict[str, object] = {
            "chunks_accepted": self.accepted,
            "chunks_refused": self.refused,
            "starvations": self.starvations,
            "resyncs": self.resyncs,
            "resets": self.resets,
            "setpoints": self.setpoints,
            "limited_setpoints": self.limited / self.setpoints if self.setpoints else 0.0,
        }
        if self.interpolator is None:
            return Check(WARN, "waiting for /kil/robot_state", values)
        if self.interpolator.last_refusal:
            values["last_refusal"] = self.interpolator.last_refusal
        end = self.interpolator.plan_end_ns
        if end is None:
            return Check(OK, "no action chunk yet: holding the start pose", values)
        now = self.get_clock().now().nanoseconds
        values["plan_left_s"] = (end - now) / 1e9
        if self._holding:
            return Check(ERROR, "holding: the action chunks went stale", values)
        if self._note_starvation(now):
            values["starvations"] = self.starvations
            return Check(WARN, f"starved: the plan ran out {(now - end) / 1e9:.2f} s ago", values)
        return Check(OK, "executing", values)

    def _note_starvation(self, now_ns: int) -> bool:
        """Whether the plan ran out more than the grace ago; counts each new starvation once (the
        servo timer and the diagnostics check both ask, so the count and the status agree)."""
        end = self.interpolator.plan_end_ns if self.interpolator is not None else None
        starved = end is not None and now_ns - end > self.grace_ns
        self.starvations += starved and not self._starved
        self._starved = starved
        return starved

    def _on_state(self, msg: RobotState) -> None:
        try:
            state = conversion.robot_state_from_msg(msg, what="/kil/robot_state")
        except conversion.ConversionError as error:
            self._warn_once("state", f"dropped: {error}")
            return
        if 0 < state.stamp_ns < self._reset_ns:
            return  # measured before the last ~/reset: the arm may have been moved since (unstamped: no telling)
        if self.interpolator is None:
            gripper = state.gripper
            if self.resets and self.episode_start_gripper >= 0.0:
                gripper = self.episode_start_gripper
            self.interpolator = ChunkInterpolator(self.config, state.position, state.quaternion, gripper)
            self.get_logger().info(
                f"starting from the current TCP pose {state.position.round(3).tolist()}, gripper {gripper:.2f}"
                + (f" (measured {state.gripper:.2f})" if gripper != state.gripper else "")
            )
            return
        if self._last_setpoint is None:
            return
        now = self.get_clock().now().nanoseconds
        distance = float(np.linalg.norm(state.position - self._last_setpoint))
        if distance <= self.resync_distance:
            self._diverged_since = None
            return
        if self._diverged_since is None:
            self._diverged_since = now
            return
        if now - self._diverged_since < self.resync_after_ns:
            return
        # The arm is not where the setpoints are, and has not been for resync_after_s: start again from it.
        self.interpolator = ChunkInterpolator(self.config, state.position, state.quaternion, state.gripper)
        self._last_setpoint, self._diverged_since, self._holding = None, None, False
        self.resyncs += 1
        self._warn(
            "resync",
            f"the arm is {distance:.3f} m from the setpoints (moved by something else, or its driver stopped "
            f"following): restarting from its measured pose {state.position.round(3).tolist()}",
        )

    def _on_reset(self, request, response):
        """A new episode: drop the plan; start again from the first robot state stamped from now on
        (its pose; the gripper at ``episode_start_gripper``)."""
        self._reset_ns = self.get_clock().now().nanoseconds
        self.interpolator = None
        self._last_setpoint, self._diverged_since = None, None
        self._holding = self._starved = False
        self.resets += 1
        response.success = True
        response.message = "plan dropped; setpoints start again from the next /kil/robot_state"
        return response

    def _on_chunk(self, msg: ActionChunk) -> None:
        if self.interpolator is None:
            if not self.resets:
                self._warn_once("early", "action chunk before the first /kil/robot_state; dropped")
            return
        try:
            chunk = conversion.action_chunk_from_msg(msg, what="/kil/action_chunk")
        except conversion.ConversionError as error:
            self._warn("chunk", f"action chunk dropped: {error}")
            return
        if chunk.stamp_ns < self._reset_ns:
            return  # computed from observations of the previous episode
        if chunk.frame_id not in ("", self.base_frame):
            self._warn_once("frame", f"action chunk in frame {chunk.frame_id!r} dropped; expected {self.base_frame!r}")
            return
        limits = self.config.limits
        outside = (chunk.positions < limits.workspace_min) | (chunk.positions > limits.workspace_max)
        if outside.any():
            self._warn(
                "workspace",
                f"action chunk targets outside the workspace box {limits.workspace_min}..{limits.workspace_max} "
                "are clamped into it",
            )
        now = self.get_clock().now().nanoseconds
        if now == 0:  # use_sim_time before the first /clock message: no time to plan against
            self._warn_once("clock", "action chunk before the first /clock message (use_sim_time); dropped")
            return
        if not self.interpolator.add_chunk(chunk, now):
            self.refused += 1
            self._warn("refused", f"action chunk refused: {self.interpolator.last_refusal}")
        else:
            self.accepted += 1

    def _on_timer(self) -> None:
        if self.interpolator is None:
            return
        now = self.get_clock().now()
        setpoint = self.interpolator.setpoint(now.nanoseconds)
        self._last_setpoint = setpoint.position
        self.setpoints += 1
        self.limited += bool(setpoint.limited)
        self._note_starvation(now.nanoseconds)
        if setpoint.holding != self._holding and self.interpolator.has_plan:
            self._holding = setpoint.holding
            if setpoint.holding:
                self.get_logger().warning("inputs stale: holding the current pose")
            else:
                self.get_logger().info("resuming motion")
        msg = PoseStamped()
        msg.header.stamp = now.to_msg()
        msg.header.frame_id = self.base_frame
        p, q = setpoint.position, setpoint.quaternion
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = float(p[0]), float(p[1]), float(p[2])
        msg.pose.orientation.x, msg.pose.orientation.y = float(q[0]), float(q[1])
        msg.pose.orientation.z, msg.pose.orientation.w = float(q[2]), float(q[3])
        self.target_pub.publish(msg)
        self.gripper_pub.publish(Float32(data=float(setpoint.gripper)))


def main(args: list[str] | None = None) -> int:
    return spin_node(InterpolatorNode, args)


if __name__ == "__main__":
    sys.exit(main())
