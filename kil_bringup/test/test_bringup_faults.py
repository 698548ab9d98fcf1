"""Faults in a running simulated rollout (processes over Fast DDS, simulated time): the camera
stops, policy_node or keypoint_node is SIGKILLed. Each time keypoint_node publishes nothing
stale, policy_node stops chunking, the interpolator holds the arm (it moves < 1 mm after the
hold begins), and when the input returns or the node is restarted the loop resumes by itself."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from test_bringup_graph import _checkpoint
from test_bringup_tf_and_namespaces import _visible_spec

from kil_bringup.graph import CAMERA_TOPICS, rollout_graph
from kil_bringup.run_graph import start, stop
from kil_interfaces import conversion as cv
from kil_interfaces.msg import ActionChunk, KeypointArray, RobotState

_NS = 1_000_000_000
STALE_AFTER_S = 0.5  # interpolator_node's default hold time


class Loop:
    """Watches the loop (chunks, keypoints, robot states, all stamped in simulated time) and relays
    the simulator's camera to keypoint_node, so the test can cut the camera."""

    def __init__(self, node) -> None:
        self.node = node
        self.chunks: list = []
        self.keypoints: list[int] = []
        self.states: list[tuple[int, np.ndarray]] = []
        self.relay_on = True
        node.create_subscription(ActionChunk, "/kil/action_chunk", self.chunks.append, 10)
        node.create_subscription(
            KeypointArray, "/kil/keypoints", lambda m: self.keypoints.append(cv.time_to_ns(m.header.stamp)), 10
        )
        node.create_subscription(RobotState, "/kil/robot_state", self._on_state, 100)
        qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        for topic in CAMERA_TOPICS:
            kind = CameraInfo if topic.endswith("camera_info") else Image
            publisher = node.create_publisher(kind, f"/{topic}", qos)
            node.create_subscription(kind, f"/sim_{topic}", lambda m, p=publisher: self._relay(p, m), qos)

    def _on_state(self, msg) -> None:
        p = msg.eef_pose.position
        self.states.append((cv.time_to_ns(msg.header.stamp), np.array([p.x, p.y, p.z])))

    def _relay(self, publisher, msg) -> None:
        if self.relay_on:
            publisher.publish(msg)

    def spin(self, seconds: float, processes: list[subprocess.Popen]) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.05)
            assert all(p.poll() is None for p in processes), "a node of the graph exited"

    def wait_for_chunks(self, count: int, processes: list, timeout_s: float = 180.0) -> None:
        target = len(self.chunks) + count
        deadline = time.monotonic() + timeout_s
        while len(self.chunks) < target and time.monotonic() < deadline:
            self.spin(0.2, processes)
        assert len(self.chunks) >= target, f"the loop produced no chunks within {timeout_s} s"

    def hold_after_chunks_stop(self, processes: list, fault: str) -> float:
        """Wait until no chunk came for long enough that the last plan ran out and the hold began,
        then return how far the TCP moved (m) during 2 simulated seconds of hold."""
        quiet_since, count = time.monotonic(), len(self.chunks)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            self.spin(0.2, processes)
            if len(self.chunks) != count:
                quiet_since, count = time.monotonic(), len(self.chunks)
            elif time.monotonic() - quiet_since > 6.0:  # (wall: > 3 simulated s at real_time_factor 0.5)
                break
        else:
            raise AssertionError(f"{fault}: policy_node kept producing chunks")
        last = self.chunks[-1]
        plan_end = cv.time_to_ns(last.header.stamp) + len(last.poses) * cv.time_to_ns(last.step)
        hold_from = plan_end + round((STALE_AFTER_S + 0.3) * _NS)
        window_end = hold_from + 2 * _NS
        while not self.states or self.states[-1][0] < window_end:
            self.spin(0.2, processes)
        held = np.array([p for t, p in self.states if hold_from <= t <= window_end])
        assert len(held) > 20, f"{fault}: too few robot states in the hold window"
        return float(np.linalg.norm(held - held[0], axis=1).max())


def test_camera_loss_and_killed_nodes_hold_the_arm_and_the_loop_resumes(tmp_path: Path) -> None:
    spec, names = _visible_spec(tmp_path / "spec", (160, 120))
    checkpoint = _checkpoint(tmp_path / "checkpoint", len(names))
    graph = rollout_graph(
        "sim",
        spec=str(spec),
        checkpoint=str(checkpoint),
        backend="classic",
        image_size=(160, 120),
        max_input_age_s=1.0,
        real_time_factor=0.5,
    )
    # The simulator's camera goes to /sim_camera/...; the test relays it to keypoint_node.
    graph = [
        replace(n, remappings={**n.remappings, **{t: f"/sim_{t}" for t in CAMERA_TOPICS}})
        if n.name == "sim_node"
        else n
        for n in graph
    ]
    names_in_order = [n.name for n in graph]
    processes = start(graph)
    rclpy.init()
    node = rclpy.create_node("fault_test")
    loop = Loop(node)
    try:
        loop.wait_for_chunks(3, processes)

        # 1. The camera stops: no keypoints, no chunks, the arm holds; it comes back: chunks again.
        loop.relay_on = False
        seen = len(loop.keypoints)
        moved = loop.hold_after_chunks_stop(processes, "camera stopped")
        assert moved < 0.001, moved
        assert len(loop.keypoints) <= seen + 2  # (frames in flight), nothing stale after that
        loop.relay_on = True
        loop.wait_for_chunks(2, processes)

        # 2. and 3. policy_node, then keypoint_node, killed mid-rollout and restarted.
        for victim in ("policy_node", "keypoint_node"):
            index = names_in_order.index(victim)
            processes[index].send_signal(signal.SIGKILL)
            processes[index].wait(timeout=20)
            alive = [p for i, p in enumerate(processes) if i != index]
            moved = loop.hold_after_chunks_stop(alive, f"{victim} killed")
            assert moved < 0.001, (victim, moved)
            processes[index] = start([graph[index]])[0]
            loop.wait_for_chunks(2, processes)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)
