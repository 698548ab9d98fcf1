"""Simulated time: sim_node publishes /clock and every other node of a sim graph runs on it, so the
loop behaves the same at any real_time_factor — the same chunks per simulated second, the same
expert success — as processes over Fast DDS."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from rosgraph_msgs.msg import Clock
from test_bringup_graph import _checkpoint

from kil_bringup.graph import NodeSpec, rollout_graph
from kil_bringup.run_graph import start, stop
from kil_interfaces.msg import ActionChunk, EpisodeOutcome
from kil_interfaces.testing import spin_while_alive
from kil_sim.oracle import oracle_keypoints
from kil_sim.tasks import sample_configuration

_NS = 1_000_000_000


def _listener():
    rclpy.init()
    return rclpy.create_node(
        "sim_time_test", parameter_overrides=[Parameter("use_sim_time", Parameter.Type.BOOL, True)]
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    world = sample_configuration("place_mug", "in_distribution", 0).make_world()
    k = oracle_keypoints(world, 0).num_keypoints
    world.close()
    return _checkpoint(tmp_path_factory.mktemp("sim_time") / "checkpoint", k)


def _chunks_per_simulated_window(checkpoint: Path, real_time_factor: float, window_s: float = 4.0) -> tuple[int, bool]:
    """(policy chunks within ``window_s`` simulated seconds, whether /clock was monotonic)."""
    nodes = rollout_graph(
        "sim", checkpoint=str(checkpoint), keypoints="oracle", image_size=(160, 120), real_time_factor=real_time_factor
    )
    assert all(n.parameters.get("use_sim_time") for n in nodes if n.name != "sim_node")
    processes = start(nodes)
    node = _listener()
    clock: list[int] = []
    stamps: list[int] = []
    node.create_subscription(Clock, "/clock", lambda m: clock.append(m.clock.sec * _NS + m.clock.nanosec), 10)
    node.create_subscription(
        ActionChunk, "/kil/action_chunk", lambda m: stamps.append(m.header.stamp.sec * _NS + m.header.stamp.nanosec), 10
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (stamps and stamps[-1] - stamps[0] > (window_s + 1.6) * _NS):
            rclpy.spin_once(node, timeout_sec=0.1)
            assert all(p.poll() is None for p in processes), "a node of the graph exited"
        assert clock, "no /clock from sim_node"
        first = stamps[0]
        return sum(first <= s < first + window_s * _NS for s in stamps), bool(np.diff(clock).min() >= 0)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)


def test_clock_and_chunks_per_simulated_second_at_two_speeds(checkpoint: Path) -> None:
    half, monotonic_half = _chunks_per_simulated_window(checkpoint, 0.5)
    full, monotonic_full = _chunks_per_simulated_window(checkpoint, 1.0)
    assert monotonic_half and monotonic_full  # /clock never goes back
    assert 4 <= half <= 6 and 4 <= full <= 6, (half, full)  # one chunk per 0.8 simulated s
    assert abs(half - full) <= 1


@pytest.mark.parametrize("real_time_factor", [0.5, 1.0])
def test_the_expert_succeeds_through_the_interpolator_at_any_speed(real_time_factor: float) -> None:
    """sim_node's scripted expert (controller:=expert) drives the arm through interpolator_node on
    simulated time; the episode outcome reports success."""
    nodes = [
        NodeSpec(
            "sim_node",
            "kil_sim",
            "sim_node",
            {
                "controller": "expert",
                "real_time_factor": real_time_factor,
                "width": 64,
                "height": 48,
                "camera_rate_hz": 2.0,
                "max_episode_s": 40.0,
            },
        ),
        NodeSpec("interpolator_node", "kil_control", "interpolator_node", {"rate_hz": 100.0, "use_sim_time": True}),
    ]
    processes = start(nodes)
    node = _listener()
    outcomes: list = []
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(EpisodeOutcome, "/kil/episode_outcome", outcomes.append, latched)
    try:
        spin_while_alive(node, lambda: bool(outcomes), 300, processes)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)
    assert outcomes, "no episode outcome"
    assert outcomes[0].success, outcomes[0].reason
    assert outcomes[0].duration < 30.0
