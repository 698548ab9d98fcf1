"""The ``RunPolicy`` action of ``policy_node`` (``kil_interfaces/action/RunPolicy``): run the
policy for one episode, with feedback, a result that says how it ended, and cancel = hold.

A goal activates the node (configuring it first when needed), starts perception again on the new
scene and forgets older observations (``PolicyNode.new_episode``), so that chunks flow from the
episode's own inputs; every
``feedback_period_s`` it sends feedback (chunks produced, the oldest input's age, valid keypoints,
the newest inference time, and why no chunks come when they do not). It ends when:
- ``/kil/episode_outcome`` reports an episode stamped after the goal started (the simulator, or an
  operator's or evaluator's node, publishes it): outcome ``success`` or ``failure`` with its reason;
- ``max_duration_s`` passes: ``time limit``;
- the client cancels: ``cancelled``;
- the node is deactivated by someone else (``~/stop``, a lifecycle manager): ``stopped`` (aborted).
Every end deactivates the node: no new chunks, so the interpolator holds the arm. One goal at a
time; a goal naming another task than the checkpoint's is rejected. Tools that cannot send actions
(Foxglove) use the ``~/start`` and ``~/stop`` services, which activate and deactivate alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.task import Future

from kil_interfaces import conversion
from kil_interfaces.action import RunPolicy
from kil_interfaces.checkpoint_info import checkpoint_task
from kil_interfaces.data import KeypointArrayData
from kil_interfaces.msg import EpisodeOutcome

_NS = 1_000_000_000


@dataclass
class GoalRun:
    """A goal being executed."""

    handle: object
    start_ns: int
    chunks_at_start: int
    done: Future = field(default_factory=Future)
    outcome: EpisodeOutcome | None = None


class RunPolicyServer:
    """Serves ``RunPolicy`` on ``name`` for ``node`` (a ``PolicyNode``: its ``start()``, ``stop()``,
    ``lifecycle_state``, ``checkpoint``, ``latency``, ``state``, ``observation``)."""

    def __init__(self, node, name: str, feedback_period_s: float = 0.2) -> None:
        self.node = node
        self.run: GoalRun | None = None
        self.server = ActionServer(
            node,
            RunPolicy,
            name,
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
        )
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(EpisodeOutcome, "kil/episode_outcome", self._on_outcome, latched)
        node.create_timer(feedback_period_s, self._on_timer)

    # --- goals ------------------------------------------------------------------------------------

    def _on_goal(self, goal: RunPolicy.Goal) -> GoalResponse:
        if self.run is not None:
            self.node.get_logger().warning("run_policy goal rejected: another goal is running")
            return GoalResponse.REJECT
        if goal.max_duration_s < 0:
            self.node.get_logger().warning(f"run_policy goal rejected: max_duration_s {goal.max_duration_s} < 0")
            return GoalResponse.REJECT
        trained_on = checkpoint_task(self.node.get_parameter("checkpoint").value)
        if goal.task and trained_on and goal.task != trained_on:
            self.node.get_logger().warning(
                f"run_policy goal rejected: task {goal.task!r}, but the checkpoint was trained on {trained_on!r}"
            )
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    async def _execute(self, handle) -> RunPolicy.Result:
        problem = self.node.start()
        if problem:
            handle.abort()
            return RunPolicy.Result(outcome="stopped", reason=problem)
        self.run = GoalRun(handle, self._now(), self.node.latency.count)  # (one goal at a time from here)
        self.node.get_logger().info(f"run_policy: new episode: {await self.node.new_episode()}")
        self.node.get_logger().info(
            f"run_policy: running (max_duration_s {handle.request.max_duration_s or 'none'}, task "
            f"{handle.request.task or 'any'})"
        )
        result = await self.run.done
        self.run = None
        return result

    def _on_outcome(self, msg: EpisodeOutcome) -> None:
        run = self.run
        if run is not None and conversion.time_to_ns(msg.header.stamp) >= run.start_ns:
            run.outcome = msg

    def _now(self) -> int:
        return self.node.get_clock().now().nanoseconds

    # --- the goal's clock -------------------------------------------------------------------------

    def _on_timer(self) -> None:
        run = self.run
        if run is None or run.done.done():
            return
        handle = run.handle
        elapsed = (self._now() - run.start_ns) / _NS
        limit = handle.request.max_duration_s
        if handle.is_cancel_requested:
            self._finish(run, "canceled", "cancelled", "cancelled by the client: holding the arm")
        elif run.outcome is not None:
            outcome = "success" if run.outcome.success else "failure"
            self._finish(run, "succeed", outcome, run.outcome.reason, success=run.outcome.success)
        elif limit > 0 and elapsed >= limit:
            self._finish(run, "succeed", "time limit", f"max_duration_s {limit:g} s reached")
        elif self.node.lifecycle_state != "active":
            self._finish(run, "abort", "stopped", f"policy_node became {self.node.lifecycle_state}")
        else:
            handle.publish_feedback(self.feedback(run))

    def feedback(self, run: GoalRun) -> RunPolicy.Feedback:
        node, now = self.node, self._now()
        feedback = RunPolicy.Feedback(chunks=node.latency.count - run.chunks_at_start, input_age_s=-1.0)
        stamps = [s for s in (getattr(node.state, "stamp_ns", None), node.observation_ns or None) if s]
        if node.state is not None and node.observation is not None:
            feedback.input_age_s = float((now - min(stamps)) / _NS)
        if isinstance(node.observation, KeypointArrayData):
            feedback.keypoints_valid = int(node.observation.valid.sum())
            feedback.keypoints_total = int(node.observation.num_keypoints)
        feedback.inference_latency_s = float(node.last_latency)
        feedback.status = node.blocked_reason or "producing action chunks"
        return feedback

    def _finish(self, run: GoalRun, transition: str, outcome: str, reason: str, success: bool = False) -> None:
        """End the goal: hold the arm (deactivate), set the goal's state, resolve its result."""
        self.node.stop()
        result = RunPolicy.Result(
            outcome=outcome,
            reason=reason,
            success=success,
            chunks=self.node.latency.count - run.chunks_at_start,
            duration_s=float((self._now() - run.start_ns) / _NS),
        )
        getattr(run.handle, transition)()
        self.node.get_logger().info(f"run_policy: {outcome} ({reason}); holding")
        run.done.set_result(result)
