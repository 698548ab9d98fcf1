"""Send one ``RunPolicy`` goal to ``policy_node`` and follow it: the command-line client of
``~/run_policy`` for machines without the ``ros2`` CLI (there, ``ros2 action send_goal
/policy_node/run_policy kil_interfaces/action/RunPolicy "{max_duration_s: 60}" --feedback`` does the
same).

    python -m kil_policy.run_policy_client --max-duration 60 [--task place_mug] [--action /policy_node/run_policy]

Prints the feedback (at most every ``--feedback-period`` seconds) and the result. Ctrl-C cancels the
goal, which holds the arm, and waits for the result. Exit status: 0 the episode succeeded; 1 it
ended otherwise (failure, time limit, stopped); 2 no action server, or the goal was rejected (the
node's log says why); 130 cancelled.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import rclpy
from rclpy.action import ActionClient
from rclpy.signals import SignalHandlerOptions

from kil_interfaces.action import RunPolicy

EXIT_SUCCESS, EXIT_ENDED, EXIT_REFUSED, EXIT_CANCELLED = 0, 1, 2, 130


@dataclass(frozen=True)
class ClientConfig:
    """What to send and where."""

    action: str = "/policy_node/run_policy"
    task: str = ""
    max_duration_s: float = 0.0
    server_timeout_s: float = 30.0
    feedback_period_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.action:
            raise ValueError("action: the action's name is required (e.g. /policy_node/run_policy)")
        if self.max_duration_s < 0:
            raise ValueError(f"max_duration_s: {self.max_duration_s} < 0 (0 = until the episode ends)")
        if self.server_timeout_s <= 0 or self.feedback_period_s < 0:
            raise ValueError("server_timeout_s must be > 0 and feedback_period_s >= 0")


def describe_feedback(feedback: RunPolicy.Feedback) -> str:
    """One line: chunks, input age, keypoints, inference time, status."""
    parts = [f"chunks {feedback.chunks}"]
    if feedback.input_age_s >= 0:
        parts.append(f"input age {feedback.input_age_s * 1000:.0f} ms")
    if feedback.keypoints_total:
        parts.append(f"keypoints {feedback.keypoints_valid}/{feedback.keypoints_total}")
    if feedback.inference_latency_s > 0:
        parts.append(f"inference {feedback.inference_latency_s * 1000:.0f} ms")
    return ", ".join(parts) + f": {feedback.status}"


def exit_code(result: RunPolicy.Result) -> int:
    if result.success:
        return EXIT_SUCCESS
    return EXIT_CANCELLED if result.outcome == "cancelled" else EXIT_ENDED


class _Follower:
    def __init__(self, node, config: ClientConfig) -> None:
        self.node, self.config = node, config
        self.client = ActionClient(node, RunPolicy, config.action)
        self.last_print = -float("inf")

    def _on_feedback(self, message) -> None:
        now = time.monotonic()
        if now - self.last_print >= self.config.feedback_period_s:
            self.last_print = now
            print(f"feedback: {describe_feedback(message.feedback)}", flush=True)

    def _wait(self, future, timeout_s: float | None = None) -> None:
        """Spin until ``future`` is done (short waits, so Ctrl-C is seen at once)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not future.done() and (deadline is None or time.monotonic() < deadline):
            rclpy.spin_once(self.node, timeout_sec=0.1)

    def run(self) -> int:
        config = self.config
        if not self.client.wait_for_server(timeout_sec=config.server_timeout_s):
            print(f"no action server {config.action} within {config.server_timeout_s:g} s", file=sys.stderr)
            return EXIT_REFUSED
        goal = RunPolicy.Goal(task=config.task, max_duration_s=config.max_duration_s)
        sent = self.client.send_goal_async(goal, feedback_callback=self._on_feedback)
        self._wait(sent, config.server_timeout_s)
        handle = sent.result()
        if handle is None or not handle.accepted:
            print(f"goal rejected by {config.action} (its node's log says why)", file=sys.stderr)
            return EXIT_REFUSED
        print(f"goal accepted: task {config.task or 'any'}, max_duration_s {config.max_duration_s:g}", flush=True)
        result_future = handle.get_result_async()
        try:
            self._wait(result_future)
        except KeyboardInterrupt:
            print("cancelling: the policy stops and the arm holds", flush=True)
            self._wait(handle.cancel_goal_async(), timeout_s=10)
            self._wait(result_future, timeout_s=30)
        result = result_future.result()
        if result is None:
            print("no result from the action server", file=sys.stderr)
            return EXIT_ENDED
        r = result.result
        print(
            f"result: {r.outcome} ({r.reason}); success {str(r.success).lower()}, {r.chunks} chunks, "
            f"{r.duration_s:.1f} s",
            flush=True,
        )
        return exit_code(r)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--action", default=ClientConfig.action, help="the action's name")
    parser.add_argument("--task", default="", help="the task the checkpoint must be trained on ('' = any)")
    parser.add_argument("--max-duration", type=float, default=0.0, help="seconds; 0 = until the episode ends")
    parser.add_argument("--server-timeout", type=float, default=30.0, help="seconds to wait for the server")
    parser.add_argument("--feedback-period", type=float, default=1.0, help="seconds between feedback lines")
    args, ros_args = parser.parse_known_args(argv)
    try:
        config = ClientConfig(args.action, args.task, args.max_duration, args.server_timeout, args.feedback_period)
    except ValueError as error:
        parser.error(str(error))
    # Python's own SIGINT handling: Ctrl-C raises KeyboardInterrupt and the context stays usable
    # to send the cancel (rclpy's handler would shut the context down first).
    rclpy.init(args=["run_policy_client", *ros_args], signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("run_policy_client")
    try:
        return _Follower(node, config).run()
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
