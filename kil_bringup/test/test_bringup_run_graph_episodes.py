"""run_graph --episodes N: after the policy's first chunk, sim_node is reset to configuration 0,
after each outcome to the next one, and keypoint_node's tracks, policy_node's observation history
and interpolator_node's plan are cleared after every reset (a track from the previous scene would
follow objects that have just moved; the last episode's plan would drive the arm just placed home).
Over real rclpy/DDS; the far side (sim_node's reset service and outcomes, the three nodes'
``~/reset``) is a stand-in node here, so that the test can count and refuse resets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import rclpy
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile
from rosgraph_msgs.msg import Clock
from std_srvs.srv import Trigger

from kil_bringup.rehearse import RefusedError, Rehearsal
from kil_bringup.run_graph import EPISODE_STATE_NODES, OutcomeListener
from kil_interfaces.msg import ActionChunk, EpisodeOutcome
from kil_interfaces.srv import ResetEpisode


class _FarSide:
    """sim_node's reset service and outcome topic, the /clock, a chunk stream and the ~/reset of
    keypoint_node, policy_node and interpolator_node, each call logged in order."""

    def __init__(self, refuse: set[int]) -> None:
        self.events: list[str] = []
        self.refuse = refuse
        self.sim_s = 100.0
        self.node = rclpy.create_node("far_side")
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.outcome = self.node.create_publisher(EpisodeOutcome, "kil/episode_outcome", latched)
        self.clock = self.node.create_publisher(Clock, "clock", 10)
        self.chunk = self.node.create_publisher(ActionChunk, "kil/action_chunk", 10)
        self.node.create_service(ResetEpisode, "sim_node/reset", self._reset)
        for name in ("keypoint_node", "policy_node", "interpolator_node"):
            self.node.create_service(Trigger, f"{name}/reset", self._cleared(name))
        self.node.create_timer(0.05, self._tick)
        self.pending: int | None = None  # the running episode; it ends once the three nodes were cleared
        self.cleared: set[str] = set()

    def _stamp(self) -> Time:
        return Time(sec=int(self.sim_s), nanosec=int((self.sim_s % 1) * 1e9))

    def _reset(self, request, response):
        self.events.append(f"reset {request.index}")
        if request.index in self.refuse:
            response.success, response.message = False, f"configuration {request.index} is beyond reach"
            return response
        self.pending, self.cleared = request.index, set()
        response.success, response.message = True, f"place_mug in_distribution #{request.index}"
        return response

    def _cleared(self, name: str):
        def handle(request, response):
            self.events.append(f"{name} cleared")
            self.cleared.add(name)
            response.success = True
            return response

        return handle

    def _tick(self) -> None:
        self.sim_s += 0.05
        self.clock.publish(Clock(clock=self._stamp()))
        self.chunk.publish(ActionChunk())
        if self.pending is not None and self.cleared == set(EPISODE_STATE_NODES):  # (else it never ends)
            msg = EpisodeOutcome(task="place_mug", setting="in_distribution", index=self.pending)
            msg.header.stamp, msg.success, msg.reason = self._stamp(), self.pending != 2, "test"
            self.outcome.publish(msg)
            self.events.append(f"outcome {self.pending}")
            self.pending = None


@contextmanager
def _far_side_spinning(refuse: set[int]) -> Iterator[_FarSide]:
    """A :class:`_FarSide` answering from its own thread until the block ends."""
    far = _FarSide(refuse)
    executor = SingleThreadedExecutor()
    executor.add_node(far.node)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        yield far
    finally:
        executor.shutdown()
        far.node.destroy_node()


def test_each_episode_is_a_new_configuration_with_its_perception_policy_and_plan_cleared() -> None:
    listener = OutcomeListener(episodes=4)
    try:
        with _far_side_spinning(refuse={1}) as far:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not listener.finished:
                listener.spin_once(0.05)
            assert listener.finished, f"the listener stopped after {far.events}"
    finally:
        listener.close()
    assert [(o.index, o.success) for o in listener.outcomes] == [(0, True), (2, False), (3, True)]
    assert listener.refusals == ["configuration 1 is beyond reach"]
    resets = [e for e in far.events if e.startswith("reset")]
    assert resets == ["reset 0", "reset 1", "reset 2", "reset 3"]
    # The three nodes were cleared after each accepted reset (else its episode never ends); none after the refusal.
    refused = far.events[far.events.index("reset 1") : far.events.index("reset 2")]
    assert not any("cleared" in e for e in refused), far.events
    # A reset waits for the previous episode's outcome.
    assert far.events.index("outcome 0") < far.events.index("reset 1")


def test_rehearse_clears_perception_policy_and_interpolator_state_after_each_reset() -> None:
    rehearsal = Rehearsal()
    try:
        with _far_side_spinning(refuse={1}) as far:
            first = rehearsal.episode("place_mug", "in_distribution", 0, 60.0, alive=lambda: True)
            with pytest.raises(RefusedError, match="configuration 1 is beyond reach"):
                rehearsal.episode("place_mug", "in_distribution", 1, 60.0, alive=lambda: True)
            third = rehearsal.episode("place_mug", "in_distribution", 2, 60.0, alive=lambda: True)
    finally:
        rehearsal.close()
    # (an episode whose nodes were not cleared never ends: episode() would return None)
    assert (first.index, first.success) == (0, True) and (third.index, third.success) == (2, False), far.events
    assert [far.events.count(f"{name} cleared") for name in EPISODE_STATE_NODES] == [2, 2, 2], far.events


def test_only_the_nodes_of_the_graph_that_was_started_are_cleared() -> None:
    """A graph without keypoint_node (oracle keypoints) does not ask one that is up in the same DDS
    domain (another graph's, or one killed moments ago whose endpoints linger in discovery)."""
    listener = OutcomeListener(episodes=1, graph=["sim_node", "policy_node", "interpolator_node"])
    try:
        with _far_side_spinning(refuse=set()) as far:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and "policy_node cleared" not in far.events:
                listener.spin_once(0.05)
            assert "keypoint_node" not in listener.inputs.clients
            assert listener.inputs.call() == ["policy_node", "interpolator_node"]
            time.sleep(0.5)  # (time for a stray request to arrive)
    finally:
        listener.close()
    assert "policy_node cleared" in far.events and "keypoint_node cleared" not in far.events, far.events
