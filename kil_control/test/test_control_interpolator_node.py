"""interpolator_node as a real process over Fast DDS: limits every setpoint and holds when the
chunks stop. Waits are event-based with generous deadlines; rates are benchmark material."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped
from std_msgs.msg import Float32

from kil_interfaces import conversion as cv
from kil_interfaces.data import ActionChunkData, RobotStateData
from kil_interfaces.diagnostics import ERROR, OK, WARN
from kil_interfaces.msg import ActionChunk, RobotState
from kil_interfaces.testing import DiagnosticsListener, stop_process

DOWN = np.array([1.0, 0.0, 0.0, 0.0])


@pytest.fixture()
def ros_node():
    rclpy.init()
    node = rclpy.create_node("interpolator_node_test")
    yield node
    node.destroy_node()
    rclpy.try_shutdown()


def _start_interpolator(params: list[str]) -> subprocess.Popen:
    """interpolator_node as a process with ``name:=value`` parameters (text stdout, stderr merged)."""
    return subprocess.Popen(
        [sys.executable, "-m", "kil_control.interpolator_node", "--ros-args", *[a for p in params for a in ("-p", p)]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _spin_until(node, done, timeout_s: float, every=None, period_s: float = 0.1) -> bool:
    """Spin until ``done()`` (True) or the deadline (False), calling ``every`` each period."""
    deadline = time.monotonic() + timeout_s
    next_call = time.monotonic()
    while time.monotonic() < deadline:
        if done():
            return True
        if every is not None and time.monotonic() >= next_call:
            every()
            next_call = time.monotonic() + period_s
        rclpy.spin_once(node, timeout_sec=0.01)
    return done()


def test_interpolator_node_limits_and_holds(ros_node) -> None:
    params = [
        "rate_hz:=100.0",
        "max_linear_speed:=0.2",
        "max_step_m:=0.004",
        "stale_after_s:=0.4",
        "workspace_min:=[0.1, -0.4, 0.05]",
    ]
    process = _start_interpolator(params)
    targets: list[np.ndarray] = []
    grippers: list[float] = []

    def on_target(msg: PoseStamped) -> None:
        p = msg.pose.position
        targets.append(np.array([p.x, p.y, p.z]))

    ros_node.create_subscription(PoseStamped, "/kil/servo_target", on_target, 50)
    ros_node.create_subscription(Float32, "/kil/gripper_command", lambda m: grippers.append(m.data), 50)
    state_pub = ros_node.create_publisher(RobotState, "/kil/robot_state", 10)
    chunk_pub = ros_node.create_publisher(ActionChunk, "/kil/action_chunk", 10)
    start = np.array([0.3, 0.0, 0.2])
    try:

        def publish_state() -> None:
            state_pub.publish(cv.robot_state_to_msg(RobotStateData(0, "link_base", start, DOWN, 1.0)))

        assert _spin_until(ros_node, lambda: bool(targets), 30, publish_state), "no setpoint from interpolator_node"
        np.testing.assert_allclose(targets[-1], start, atol=1e-9)  # first setpoints hold the current pose
        # Teleop-style chunks towards a goal 30 cm away and below the workspace floor.
        goal = np.array([0.6, 0.0, 0.0])
        floor_goal = np.array([0.6, 0.0, 0.05])

        def send() -> None:
            now = ros_node.get_clock().now().nanoseconds
            chunk = ActionChunkData(now + 100_000_000, "link_base", 100_000_000, goal[None], DOWN[None], [0.0])
            chunk_pub.publish(cv.action_chunk_to_msg(chunk))

        # Chunks stop half-way: after stale_after_s the setpoint holds still, short of the goal.
        targets.clear()
        moved = _spin_until(ros_node, lambda: bool(targets) and np.linalg.norm(targets[-1] - start) > 0.1, 60, send)
        assert moved, "the setpoints did not move towards the goal"
        quiet_until = time.monotonic() + 1.5  # > stale_after_s after the plan's last target
        _spin_until(ros_node, lambda: time.monotonic() > quiet_until, 10)
        targets.clear()
        assert _spin_until(ros_node, lambda: len(targets) >= 30, 30), "setpoints stopped while holding"
        held = np.array(targets)
        assert np.ptp(held, axis=0).max() == 0.0 and np.linalg.norm(held[-1] - floor_goal) > 0.05
        # Chunks resume: the motion resumes, within every limit, and ends on the workspace floor.
        targets.clear()
        arrived = _spin_until(
            ros_node, lambda: bool(targets) and np.linalg.norm(targets[-1] - floor_goal) < 1e-3, 60, send
        )
        assert arrived, f"setpoints did not reach the clamped goal: last {targets[-1] if targets else None}"
        positions = np.array([held[-1], *targets])
        steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
        assert steps.max() <= 0.004 + 1e-9  # step limit
        assert positions[:, 2].min() >= 0.05 - 1e-9  # workspace floor
        assert grippers[-1] == pytest.approx(0.0)
    finally:
        output = stop_process(process)
    assert "holding" in output and "resuming motion" in output


def test_interpolator_node_diagnostics_report_starvation_and_the_stale_hold(ros_node) -> None:
    """/diagnostics ``plan``: WARN before the first robot state, OK before the first chunk and while
    a plan executes, WARN once the plan has run out (starved), ERROR while holding on stale chunks;
    refused chunks are counted."""
    params = ["rate_hz:=100.0", "stale_after_s:=1.0", "starvation_grace_s:=0.2", "diagnostics_period_s:=0.1"]
    process = _start_interpolator(params)
    listener = DiagnosticsListener(ros_node)
    state_pub = ros_node.create_publisher(RobotState, "/kil/robot_state", 10)
    chunk_pub = ros_node.create_publisher(ActionChunk, "/kil/action_chunk", 10)
    start = np.array([0.3, 0.0, 0.2])
    name = "interpolator_node: plan"
    feed = {"state": False, "chunks": False}

    def publish() -> None:
        now = ros_node.get_clock().now().nanoseconds
        if feed["state"]:
            state_pub.publish(cv.robot_state_to_msg(RobotStateData(now, "link_base", start, DOWN, 1.0)))
        if feed["chunks"]:  # a 1 s plan, renewed every period while fed
            positions = start + np.linspace(0, 0.01, 10)[:, None] * np.array([1.0, 0.0, 0.0])
            chunk = ActionChunkData(now + 100_000_000, "link_base", 100_000_000, positions, np.tile(DOWN, (10, 1)),
                                    np.ones(10))  # fmt: skip
            chunk_pub.publish(cv.action_chunk_to_msg(chunk))

    def spin(seconds: float) -> None:
        _spin_until(ros_node, lambda: False, seconds, publish, period_s=0.2)

    try:
        assert "waiting for /kil/robot_state" in listener.wait(spin, name, (WARN,), timeout_s=90).message
        feed["state"] = True
        listener.wait(spin, name, (OK,), message="no action chunk yet")
        feed["chunks"] = True
        executing = listener.wait(spin, name, (OK,), message="executing")
        assert float(DiagnosticsListener.values(executing)["plan_left_s"]) > 0
        feed["chunks"] = False  # starved: the plan runs out, then (stale_after_s later) the hold
        starved = listener.wait(spin, name, (WARN,), message="starved: the plan ran out")
        assert int(DiagnosticsListener.values(starved)["starvations"]) == 1
        listener.wait(spin, name, (ERROR,), message="holding: the action chunks went stale")
        old = ActionChunkData(1, "link_base", 100_000_000, start[None], DOWN[None], [1.0])  # arrives stale: refused
        chunk_pub.publish(cv.action_chunk_to_msg(old))
        refused = listener.wait(spin, name, (ERROR,), message="holding", until=lambda v: v["chunks_refused"] == "1")
        assert DiagnosticsListener.values(refused)["last_refusal"] == "it arrived already stale"
        feed["chunks"] = True  # chunks resume: OK again
        listener.wait(spin, name, (OK,), message="executing")
    finally:
        stop_process(process)


def test_interpolator_node_restarts_from_the_arm_when_it_is_moved_elsewhere(ros_node) -> None:
    """The arm reports a pose 20 cm from the setpoints (an episode reset, a teach-mode move) for
    longer than resync_after_s: the setpoints start again from it, with a warning, and motion
    planned from there."""
    params = ["rate_hz:=100.0", "resync_distance_m:=0.05", "resync_after_s:=0.3"]
    process = _start_interpolator(params)
    targets: list[np.ndarray] = []
    ros_node.create_subscription(
        PoseStamped, "/kil/servo_target", lambda m: targets.append(np.array([m.pose.position.x, m.pose.position.y,
                                                                             m.pose.position.z])), 50
    )  # fmt: skip
    state_pub = ros_node.create_publisher(RobotState, "/kil/robot_state", 10)
    start, moved = np.array([0.3, 0.0, 0.2]), np.array([0.3, 0.2, 0.2])
    pose = {"at": start}

    def publish_state() -> None:
        state_pub.publish(cv.robot_state_to_msg(RobotStateData(0, "link_base", pose["at"], DOWN, 1.0)))

    try:
        assert _spin_until(ros_node, lambda: bool(targets), 30, publish_state), "no setpoint from interpolator_node"
        np.testing.assert_allclose(targets[-1], start, atol=1e-9)
        pose["at"] = moved
        followed = _spin_until(
            ros_node, lambda: np.linalg.norm(targets[-1] - moved) < 1e-9, 60, publish_state, period_s=0.02
        )
        assert followed, f"setpoints stayed at {targets[-1]}"
    finally:
        output = stop_process(process)
    assert "the arm is 0.200 m from the setpoints" in output and "restarting from its measured pose" in output


@pytest.mark.parametrize(("start_gripper", "expected_gripper"), [(None, 1.0), (-1.0, 0.2)])
def test_interpolator_node_reset_drops_the_plan_and_starts_from_the_next_state(
    ros_node, start_gripper, expected_gripper
) -> None:
    """~/reset (a new episode, e.g. a simulated reset that placed the arm home): the last
    episode's plan — here closing the gripper on the way to a goal — stops at once; nothing is
    published until a robot state stamped after the reset arrives (states and chunks stamped
    before it are dropped); then the setpoints start from that state's pose with the gripper open
    (episode_start_gripper), whatever the adapter reports (ur5e_node: the last command), or with
    the reported opening when the parameter is negative."""
    from std_srvs.srv import Trigger

    params = ["rate_hz:=100.0", "max_linear_speed:=0.05"]
    process = _start_interpolator(params + ([f"episode_start_gripper:={start_gripper}"] if start_gripper else []))
    # Setpoints by their header stamp (when interpolator_node published them: this test's callbacks
    # may run late on a loaded machine); gripper commands by when they were received.
    targets: list[tuple[int, np.ndarray]] = []
    grippers: list[tuple[float, float]] = []
    ros_node.create_subscription(
        PoseStamped, "/kil/servo_target", lambda m: targets.append((cv.time_to_ns(m.header.stamp), np.array(
            [m.pose.position.x, m.pose.position.y, m.pose.position.z]))), 50,
    )  # fmt: skip
    ros_node.create_subscription(
        Float32, "/kil/gripper_command", lambda m: grippers.append((time.monotonic(), m.data)), 50
    )
    state_pub = ros_node.create_publisher(RobotState, "/kil/robot_state", 10)
    chunk_pub = ros_node.create_publisher(ActionChunk, "/kil/action_chunk", 10)
    reset = ros_node.create_client(Trigger, "/interpolator_node/reset")
    start, goal, home = np.array([0.3, 0.0, 0.2]), np.array([0.5, 0.0, 0.2]), np.array([0.25, 0.0, 0.25])
    state = {"at": start, "gripper": 1.0, "stamp": None}

    def now_ns() -> int:
        return ros_node.get_clock().now().nanoseconds

    def publish_state() -> None:
        stamp = now_ns() if state["stamp"] is None else state["stamp"]
        state_pub.publish(
            cv.robot_state_to_msg(RobotStateData(stamp, "link_base", state["at"], DOWN, state["gripper"]))
        )

    def send_chunk(stamp_ns: int) -> None:
        # 4 s to the goal, the gripper closing on the way: a plan that outlives the episode.
        chunk = ActionChunkData(stamp_ns, "link_base", 400_000_000, np.array([
            start + (goal - start) * (i + 1) / 10 for i in range(10)]), np.tile(DOWN, (10, 1)),
            np.linspace(0.9, 0.0, 10))  # fmt: skip
        chunk_pub.publish(cv.action_chunk_to_msg(chunk))

    try:
        assert _spin_until(ros_node, lambda: bool(targets), 30, publish_state), "no setpoint from interpolator_node"
        assert reset.wait_for_service(timeout_sec=30), "interpolator_node/reset is not up"
        send_chunk(now_ns())
        closing = _spin_until(ros_node, lambda: bool(grippers) and grippers[-1][1] < 0.8, 30, publish_state)
        assert closing, "the plan did not start closing the gripper"
        before_reset_ns = now_ns()
        # From here until the new episode's states, only states measured before the reset arrive:
        # they may not restart the setpoints.
        state.update(at=np.array([0.45, 0.0, 0.2]), gripper=0.3, stamp=before_reset_ns)
        future = reset.call_async(Trigger.Request())
        assert _spin_until(ros_node, future.done, 30, publish_state), "no answer from ~/reset"
        assert future.result().success
        answered, answered_ns = time.monotonic(), now_ns()
        _spin_until(ros_node, lambda: time.monotonic() > answered + 1.5, 5, publish_state)
        late = [t for t, _ in targets if t > answered_ns]
        assert not late, f"{len(late)} setpoints published after ~/reset without a new robot state"
        state.update(at=home, gripper=0.2, stamp=None)
        resumed_at, resumed_ns = time.monotonic(), now_ns()
        restarted = _spin_until(ros_node, lambda: bool(targets) and targets[-1][0] > resumed_ns, 30, publish_state)
        assert restarted, "no setpoint after a robot state stamped after the reset"
        send_chunk(before_reset_ns)  # computed before the reset: dropped
        _spin_until(ros_node, lambda: time.monotonic() > resumed_at + 1.5, 5, publish_state)
        after = [p for t, p in targets if t > resumed_ns]
        gripper_after = [g for t, g in grippers if t > resumed_at + 0.5]  # (queued older ones: 1.5 s drained)
        assert np.allclose(after, home, atol=1e-9), (
            "setpoints did not start from the new state (or followed an old chunk)"
        )
        assert gripper_after and np.allclose(gripper_after, expected_gripper), (
            f"new episode's gripper: {gripper_after[:5]}"
        )
    finally:
        stop_process(process)
