"""policy_node as a real process over Fast DDS."""

from __future__ import annotations

import itertools
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import torch
import yaml
from sensor_msgs.msg import Image

from kil_interfaces import conversion as cv
from kil_interfaces.data import ActionChunkData, KeypointArrayData, RobotStateData
from kil_interfaces.diagnostics import ERROR, OK, WARN
from kil_interfaces.msg import ActionChunk, KeypointArray, RobotState
from kil_interfaces.testing import (
    DiagnosticsListener,
    call_trigger,
    change_lifecycle_state,
    in_process,
    lifecycle_state,
    spin_executor,
    stop_process,
)
from kil_policy.checkpoint import save_policy
from kil_policy.config import EncoderConfig, HeadConfig, PolicyConfig
from kil_policy.policy import KeypointDiffusionPolicy
from kil_policy.testing import tiny_image_checkpoint

K = 4
DOWN = np.array([1.0, 0.0, 0.0, 0.0])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    config = PolicyConfig(
        encoder=EncoderConfig(num_keypoints=K, d_model=32, num_layers=1, num_heads=2, mlp_dim=64),
        head=HeadConfig(down_dims=(16, 32, 64), inference_steps=4),
    )
    policy = KeypointDiffusionPolicy(config)
    rng = torch.Generator().manual_seed(0)
    actions = torch.rand(64, 10, generator=rng) * 0.2 + torch.tensor([0.3, 0, 0.1, 1, 0, 0, 0, -1, 0, 0])
    proprio = torch.rand(64, 7, generator=rng) * 0.2
    policy.fit_normalizers(actions, proprio, torch.rand(64, K, 3, generator=rng), torch.ones(64, K, dtype=torch.bool))
    return save_policy(tmp_path_factory.mktemp("ckpt") / "checkpoint_last", policy)


@pytest.fixture()
def ros_node():
    rclpy.init()
    node = rclpy.create_node("policy_nodes_test")
    yield node
    node.destroy_node()
    rclpy.try_shutdown()


def _start(module: str, *params: str) -> subprocess.Popen:
    args = [a for p in params for a in ("-p", p)]
    return subprocess.Popen(
        [sys.executable, "-m", module, "--ros-args", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _stop(process: subprocess.Popen) -> str:
    return stop_process(process)


def _spin(node, seconds: float, every=None, period: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    next_call = time.monotonic()
    while time.monotonic() < deadline:
        if every is not None and time.monotonic() >= next_call:
            every()
            next_call += period
        rclpy.spin_once(node, timeout_sec=0.01)


def _inputs(node, keypoint_stamp=None):
    """A function publishing a robot state and keypoints stamped now (the keypoints: at
    ``keypoint_stamp()`` where it gives a stamp)."""
    state_pub = node.create_publisher(RobotState, "/kil/robot_state", 10)
    kp_pub = node.create_publisher(KeypointArray, "/kil/keypoints", 10)

    def publish() -> None:
        now = node.get_clock().now().nanoseconds
        state = RobotStateData(now, "link_base", [0.3, 0.0, 0.2], DOWN, 1.0)
        points = np.array([[0.35, 0.05, 0.0], [0.36, -0.05, 0.02], [0.4, 0.0, 0.05], [0.0, 0.0, 0.0]])
        keypoints = KeypointArrayData(
            (keypoint_stamp and keypoint_stamp()) or now,
            "link_base",
            "oracle",
            "",
            ("a", "b", "c", "d"),
            ("x",) * 4,
            np.zeros(4),
            np.zeros((4, 2)),
            points,
            np.ones(4),
            [True, True, True, False],
        )
        state_pub.publish(cv.robot_state_to_msg(state))
        kp_pub.publish(cv.keypoints_to_msg(keypoints))

    return publish


def test_policy_node_publishes_chunks_and_stops_on_stale_inputs(checkpoint: Path, ros_node) -> None:
    process = _start("kil_policy.policy_node", f"checkpoint:={checkpoint}", "max_input_age_s:=0.3")
    chunks: list[tuple[float, ActionChunkData]] = []

    def on_chunk(msg: ActionChunk) -> None:
        chunks.append((time.monotonic(), cv.action_chunk_from_msg(msg)))

    ros_node.create_subscription(ActionChunk, "/kil/action_chunk", on_chunk, 10)
    publish = _inputs(ros_node)
    try:
        deadline = time.monotonic() + 60
        while not chunks and time.monotonic() < deadline:  # start-up (torch import, discovery)
            _spin(ros_node, 0.2, publish)
        assert chunks, "policy_node produced no chunk"
        chunks.clear()
        deadline = time.monotonic() + 60
        while len(chunks) < 4 and time.monotonic() < deadline:  # one every 0.8 s nominal (no rate asserted)
            _spin(ros_node, 0.2, publish)
        assert len(chunks) >= 4, len(chunks)
        stamps = [chunk.stamp_ns for _, chunk in chunks]
        assert all(b > a for a, b in itertools.pairwise(stamps))  # each chunk is a new one
        for _, chunk in chunks:
            assert chunk.num_steps == 16 and chunk.execute_steps == 9 and chunk.step_ns == 100_000_000
            assert chunk.frame_id == "link_base" and np.all((chunk.gripper >= 0) & (chunk.gripper <= 1))
            assert chunk.inference_latency > 0
        # Inputs stop: no new chunk once they are older than max_input_age_s.
        _spin(ros_node, 0.5)
        count = len(chunks)
        _spin(ros_node, 2.0)
        assert len(chunks) == count, "chunks kept coming after the inputs went stale"
        # The stop service also halts production while inputs flow.
        assert call_trigger(ros_node, "/policy_node/stop").success
        count = len(chunks)
        _spin(ros_node, 2.0, publish)
        assert len(chunks) == count
    finally:
        output = _stop(process)
    assert "not producing action chunks" in output  # one warning for the stale inputs
    assert ", 1 CPU thread(s)" in output  # the default cpu_threads applied (torch's would be one per core)


def test_policy_node_refuses_a_spec_of_another_layout_at_start(tmp_path: Path) -> None:
    from kil_interfaces.keypoint_layout import write_layout

    config = PolicyConfig(
        encoder=EncoderConfig(num_keypoints=3, d_model=16, num_layers=1, num_heads=2, mlp_dim=32),
        head=HeadConfig(down_dims=(16, 32, 64), inference_steps=2),
    )
    checkpoint = save_policy(tmp_path / "checkpoint", KeypointDiffusionPolicy(config))
    write_layout(checkpoint, (("mug", 0, "handle"), ("mug", 0, "body"), ("mug", 0, "body_low")), "test")
    (tmp_path / "spec.yaml").write_text(
        "categories:\n  - name: mug\n    references:\n      - image: r.png\n"
        "        keypoints: {rim: [1, 1], handle: [2, 2], opening: [3, 3]}\n"
    )
    spec = tmp_path / "spec.yaml"
    command = [sys.executable, "-m", "kil_policy.policy_node", "--ros-args", "-p", f"checkpoint:={checkpoint}"]
    done = subprocess.run([*command, "-p", f"spec:={spec}"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "keypoint layout differs" in done.stderr and "mug[0]: handle, body, body_low" in done.stderr
    assert "mug[0]: rim, handle, opening" in done.stderr
    done = subprocess.run([*command, "-p", "precision:=bf16"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "precision 'bf16' and fuse 'none' apply to inference graph only (inference is 'packed')" in done.stderr
    done = subprocess.run([*command, "-p", "cpu_threads:=-1"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "parameter cpu_threads must be 0 (torch's default) or more, got -1" in done.stderr


def test_policy_node_services_and_input_refusals(checkpoint: Path, ros_node) -> None:
    """~/start after autostart:=false, ~/reset, too few valid keypoints and a wrong keypoint count:
    each stops or starts chunk production, and the refusals are logged once each."""
    process = _start("kil_policy.policy_node", f"checkpoint:={checkpoint}", "autostart:=false",
                     "min_valid_keypoints:=3", "max_input_age_s:=2.0")  # fmt: skip
    chunks: list[ActionChunkData] = []
    ros_node.create_subscription(
        ActionChunk, "/kil/action_chunk", lambda m: chunks.append(cv.action_chunk_from_msg(m)), 10
    )
    state_pub = ros_node.create_publisher(RobotState, "/kil/robot_state", 10)
    kp_pub = ros_node.create_publisher(KeypointArray, "/kil/keypoints", 10)
    inputs = {"count": K, "valid": 3, "fault": "", "backwards_from": 0}

    def publish() -> None:
        now = ros_node.get_clock().now().nanoseconds
        state_pub.publish(cv.robot_state_to_msg(RobotStateData(now, "link_base", [0.3, 0.0, 0.2], DOWN, 1.0)))
        k = inputs["count"]
        valid = np.arange(k) < inputs["valid"]
        names, points = [f"k{i}" for i in range(k)], np.full((k, 3), 0.3)
        stamp = now
        if inputs["fault"] == "backwards":  # each stamp older than the last one accepted
            inputs["backwards_from"] -= 1_000_000
            stamp = inputs["backwards_from"]
        keypoints = KeypointArrayData(
            stamp, "link_base", "oracle", "", names, ["x"] * k, np.zeros(k), np.zeros((k, 2)), points, np.ones(k), valid
        )
        msg = cv.keypoints_to_msg(keypoints)
        if inputs["fault"] == "nan":
            msg.keypoints[0].point.x = float("nan")
        kp_pub.publish(msg)

    def call(name: str) -> None:
        assert call_trigger(ros_node, f"/policy_node/{name}").success

    def until_chunks(count: int, seconds: float = 60) -> bool:
        deadline = time.monotonic() + seconds
        while len(chunks) < count and time.monotonic() < deadline:
            _spin(ros_node, 0.2, publish)
        return len(chunks) >= count

    try:
        call("stop")  # (the service is up: the node has started)
        _spin(ros_node, 2.0, publish)
        assert chunks == []  # autostart:=false: nothing until ~/start
        call("start")
        assert until_chunks(2), "no chunks after ~/start"
        call("reset")  # history and inputs cleared; production resumes with fresh inputs
        count = len(chunks)
        assert until_chunks(count + 1), "no chunks after ~/reset"
        inputs["valid"] = 1  # below min_valid_keypoints
        _spin(ros_node, 1.5, publish)
        count = len(chunks)
        _spin(ros_node, 2.0, publish)
        assert len(chunks) == count
        inputs["valid"], inputs["count"] = 3, K - 1  # the checkpoint expects K keypoints
        _spin(ros_node, 1.5, publish)
        count = len(chunks)
        _spin(ros_node, 2.0, publish)
        assert len(chunks) == count
        inputs["count"] = K
        assert until_chunks(count + 1), "no chunks after the inputs recovered"
        for fault in ("nan", "backwards"):  # dropped: the last good keypoints go stale, chunks stop
            inputs["fault"], inputs["backwards_from"] = fault, ros_node.get_clock().now().nanoseconds
            _spin(ros_node, 3.0, publish)
            count = len(chunks)
            _spin(ros_node, 2.0, publish)
            assert len(chunks) == count, fault
            assert process.poll() is None
            inputs["fault"] = ""
            assert until_chunks(count + 1), f"no chunks after the {fault} keypoints stopped"
    finally:
        output = _stop(process)
    assert "only 1 valid keypoints (min_valid_keypoints 3)" in output
    assert f"{K - 1} keypoints given; the checkpoint expects {K}" in output
    assert "inputs recovered; producing action chunks again" in output  # after the refusals
    assert "dropped: /kil/keypoints" in output and "NaN or infinite" in output
    assert "/kil/keypoints dropped: its stamp goes back from the previous one" in output


def test_policy_node_diagnostics_under_starved_stale_and_corrupted_inputs(checkpoint: Path, ros_node) -> None:
    """/diagnostics over DDS: WARN while waiting for the first inputs, OK while chunks flow (with the
    inference latency), ERROR for stale inputs, too few valid keypoints and keypoints of another
    count; valid keypoints reported per object."""
    process = _start("kil_policy.policy_node", f"checkpoint:={checkpoint}", "max_input_age_s:=0.5",
                     "min_valid_keypoints:=2", "diagnostics_period_s:=0.25")  # fmt: skip
    listener = DiagnosticsListener(ros_node)
    state_pub = ros_node.create_publisher(RobotState, "/kil/robot_state", 10)
    kp_pub = ros_node.create_publisher(KeypointArray, "/kil/keypoints", 10)
    inputs = {"count": K, "valid": K, "on": True}

    def publish() -> None:
        if not inputs["on"]:
            return
        now = ros_node.get_clock().now().nanoseconds
        state_pub.publish(cv.robot_state_to_msg(RobotStateData(now, "link_base", [0.3, 0.0, 0.2], DOWN, 1.0)))
        k = inputs["count"]
        categories = ["mug", "mug", "tray", "tray", "tray"][:k]
        valid = np.arange(k) < inputs["valid"]
        names, points = [f"k{i}" for i in range(k)], np.full((k, 3), 0.3)
        keypoints = KeypointArrayData(
            now, "link_base", "oracle", "", names, categories, np.zeros(k), np.zeros((k, 2)), points, np.ones(k), valid
        )
        kp_pub.publish(cv.keypoints_to_msg(keypoints))

    def spin(seconds: float) -> None:
        _spin(ros_node, seconds, publish)

    try:
        inputs["on"] = False  # starved from the start
        waiting = listener.wait(spin, "policy_node: inputs", (WARN,), timeout_s=90)
        assert "waiting for /kil/robot_state and /kil/keypoints" in waiting.message
        inputs["on"] = True
        inference = listener.wait(spin, "policy_node: inference", (OK, WARN, ERROR), message="inference p95")
        values = DiagnosticsListener.values(inference)
        assert int(values["chunks"]) >= 1 and float(values["p95_ms"]) > 0 and float(values["budget_ms"]) == 800
        assert listener.wait(spin, "policy_node: inputs", (OK,)).message == "inputs fresh"
        keypoints = listener.wait(spin, "policy_node: keypoints", (OK,))
        assert DiagnosticsListener.values(keypoints)["mug[0]"] == "2/2"
        inputs["valid"] = 2  # the tray loses both of its keypoints: WARN, chunks still flow
        weak = listener.wait(spin, "policy_node: keypoints", (WARN,), message="tray[0]")
        assert DiagnosticsListener.values(weak)["tray[0]"] == "0/2"
        assert listener.wait(spin, "policy_node: inputs", (OK,)).message == "inputs fresh"
        inputs["valid"] = 1  # below min_valid_keypoints: no chunks
        listener.wait(spin, "policy_node: keypoints", (ERROR,), message="only 1 valid keypoints")
        listener.wait(spin, "policy_node: inputs", (ERROR,), message="only 1 valid keypoints")
        inputs["valid"], inputs["count"] = K - 1, K - 1  # corrupted: another keypoint count than trained on
        listener.wait(
            spin, "policy_node: inputs", (ERROR,), message=f"{K - 1} keypoints given; the checkpoint expects {K}"
        )
        inputs["count"], inputs["valid"] = K, K
        assert listener.wait(spin, "policy_node: inputs", (OK,)).message == "inputs fresh"
        inputs["on"] = False  # inputs stop: stale
        stale = listener.wait(spin, "policy_node: inputs", (ERROR,), message="s old (max_input_age_s 0.5)")
        assert float(DiagnosticsListener.values(stale)["/kil/robot_state age_s"]) > 0.5
    finally:
        _stop(process)


def test_policy_node_lifecycle_transitions_and_a_failing_configure(checkpoint: Path, tmp_path: Path, ros_node) -> None:
    """autostart:=false: unconfigured until configured; inactive makes no chunks; active does;
    deactivate holds; cleanup frees the model; a configure that fails (a missing checkpoint) reports
    the reason (response, /diagnostics ERROR) and leaves the node unconfigured, alive."""
    from lifecycle_msgs.msg import Transition

    chunks: list = []
    ros_node.create_subscription(ActionChunk, "/kil/action_chunk", chunks.append, 10)
    listener = DiagnosticsListener(ros_node)
    publish = _inputs(ros_node)
    process = _start("kil_policy.policy_node", f"checkpoint:={checkpoint}", "autostart:=false",
                     "diagnostics_period_s:=0.2")  # fmt: skip
    try:
        assert lifecycle_state(ros_node, "/policy_node") == "unconfigured"
        listener.wait(lambda t: _spin(ros_node, t), "policy_node: inputs", (WARN,), message="unconfigured")
        assert change_lifecycle_state(ros_node, "/policy_node", Transition.TRANSITION_CONFIGURE)
        assert lifecycle_state(ros_node, "/policy_node") == "inactive"
        _spin(ros_node, 2.0, publish)
        assert chunks == []  # configured, not active: no chunks
        assert change_lifecycle_state(ros_node, "/policy_node", Transition.TRANSITION_ACTIVATE)
        deadline = time.monotonic() + 60
        while not chunks and time.monotonic() < deadline:
            _spin(ros_node, 0.2, publish)
        assert chunks, "no chunks once active"
        assert change_lifecycle_state(ros_node, "/policy_node", Transition.TRANSITION_DEACTIVATE)
        _spin(ros_node, 0.5, publish)
        count = len(chunks)
        _spin(ros_node, 2.0, publish)
        assert len(chunks) == count, "chunks kept coming after deactivate"
        assert change_lifecycle_state(ros_node, "/policy_node", Transition.TRANSITION_CLEANUP)
        assert lifecycle_state(ros_node, "/policy_node") == "unconfigured"
    finally:
        _stop(process)
    missing = tmp_path / "no_such_checkpoint"
    process = _start("kil_policy.policy_node", f"checkpoint:={missing}", "autostart:=false",
                     "diagnostics_period_s:=0.2")  # fmt: skip
    try:
        assert not change_lifecycle_state(ros_node, "/policy_node", Transition.TRANSITION_CONFIGURE)
        assert lifecycle_state(ros_node, "/policy_node") == "unconfigured"  # via the error state
        error = listener.wait(lambda t: _spin(ros_node, t), "policy_node: inputs", (ERROR,), message="configure failed")
        assert str(missing) in error.message
        assert process.poll() is None  # alive: fix the parameter and configure again
    finally:
        output = _stop(process)
    assert "configure failed:" in output and str(missing) in output


def _send_goal(node, client, goal, feedback: list):
    """Send a RunPolicy goal; its accepted goal handle."""
    future = client.send_goal_async(goal, feedback_callback=lambda m: feedback.append(m.feedback))
    rclpy.spin_until_future_complete(node, future, timeout_sec=60)
    return future.result()


class _Client:
    """``python -m kil_policy.run_policy_client`` as a process whose output is read by a thread,
    while the test node spins and publishes the policy's inputs."""

    def __init__(self, node, publish, *args: str) -> None:
        self.node, self.publish, self.lines = node, publish, []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kil_policy.run_policy_client", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self.reader.start()

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, seconds: float = 60) -> bool:
        deadline = time.monotonic() + seconds
        while needle not in self.text() and self.process.poll() is None and time.monotonic() < deadline:
            _spin(self.node, 0.1, self.publish)
        return needle in self.text()

    def finish(self, seconds: float = 60) -> int | None:
        deadline = time.monotonic() + seconds
        while self.process.poll() is None and time.monotonic() < deadline:
            _spin(self.node, 0.1, self.publish)
        if self.process.poll() is None:
            self.process.kill()
        self.reader.join(timeout=10)
        return self.process.wait()


def _client(node, publish, *args: str) -> _Client:
    return _Client(node, publish, *args)


def test_run_policy_action_feedback_result_and_cancel(checkpoint: Path, tmp_path: Path, ros_node) -> None:
    """~/run_policy over DDS: feedback while chunks flow; the episode outcome on /kil/episode_outcome
    ends the goal with its reason and holds the arm; the time limit ends the next; a cancel holds the
    arm at once; a goal for another task is rejected."""
    from rclpy.action import ActionClient
    from rclpy.qos import DurabilityPolicy, QoSProfile

    from kil_interfaces.action import RunPolicy
    from kil_interfaces.msg import EpisodeOutcome

    chunks: list = []
    ros_node.create_subscription(ActionChunk, "/kil/action_chunk", chunks.append, 10)
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    outcome_pub = ros_node.create_publisher(EpisodeOutcome, "/kil/episode_outcome", latched)
    publish = _inputs(ros_node)
    client = ActionClient(ros_node, RunPolicy, "/policy_node/run_policy")
    trained = tmp_path / "checkpoint_place_mug"  # the fixture checkpoint, trained on place_mug
    shutil.copytree(checkpoint, trained)
    config = yaml.safe_load((trained / "config.yaml").read_text())
    (trained / "config.yaml").write_text(yaml.safe_dump({**config, "train": {"task": "place_mug"}}))
    process = _start("kil_policy.policy_node", f"checkpoint:={trained}", "autostart:=false")

    def finish(handle, seconds: float = 60):
        future = handle.get_result_async()
        deadline = time.monotonic() + seconds
        while not future.done() and time.monotonic() < deadline:
            _spin(ros_node, 0.1, publish)
        assert future.done(), "no result"
        return future.result().result

    def held() -> bool:
        _spin(ros_node, 0.5, publish)
        count = len(chunks)
        _spin(ros_node, 2.0, publish)
        return len(chunks) == count

    try:
        assert client.wait_for_server(timeout_sec=60)
        feedback: list = []
        handle = _send_goal(ros_node, client, RunPolicy.Goal(task="place_mug", max_duration_s=0.0), feedback)
        assert handle.accepted
        deadline = time.monotonic() + 60
        while not any(f.chunks >= 2 for f in feedback) and time.monotonic() < deadline:
            _spin(ros_node, 0.1, publish)
        last = feedback[-1]
        assert last.chunks >= 2 and last.status == "producing action chunks" and last.inference_latency_s > 0
        assert (last.keypoints_valid, last.keypoints_total) == (3, 4) and 0 <= last.input_age_s < 0.5
        outcome = EpisodeOutcome(task="place_mug", success=True, reason="task complete")
        outcome.header.stamp = ros_node.get_clock().now().to_msg()
        outcome_pub.publish(outcome)
        result = finish(handle)
        assert (result.outcome, result.reason, result.success) == ("success", "task complete", True)
        assert result.chunks >= 2 and result.duration_s > 0
        assert held(), "chunks kept coming after the episode ended"

        handle = _send_goal(ros_node, client, RunPolicy.Goal(max_duration_s=1.5), [])
        result = finish(handle)  # the latched outcome is older than this goal: the time limit ends it
        assert result.outcome == "time limit" and not result.success
        assert held()

        feedback = []
        handle = _send_goal(ros_node, client, RunPolicy.Goal(), feedback)
        while not any(f.chunks >= 1 for f in feedback) and time.monotonic() < deadline + 60:
            _spin(ros_node, 0.1, publish)
        cancel = handle.cancel_goal_async()
        rclpy.spin_until_future_complete(ros_node, cancel, timeout_sec=30)
        result = finish(handle)
        assert result.outcome == "cancelled"
        assert held(), "chunks kept coming after the cancel"

        rejected = _send_goal(ros_node, client, RunPolicy.Goal(task="pour_bottle"), [])
        assert not rejected.accepted  # trained on place_mug

        # the command-line client: a time limit (exit 1), a rejected goal (2), Ctrl-C = cancel (130)
        limited = _client(ros_node, publish, "--max-duration", "1.5", "--feedback-period", "0")
        assert limited.wait_for("result: time limit") and limited.finish() == 1, limited.text()
        assert "feedback: chunks" in limited.text() and "keypoints 3/4" in limited.text()
        assert _client(ros_node, publish, "--task", "pour_bottle").finish() == 2
        interrupted = _client(ros_node, publish, "--feedback-period", "0")
        assert interrupted.wait_for("producing action chunks"), interrupted.text()
        interrupted.process.send_signal(signal.SIGINT)
        assert interrupted.finish() == 130, interrupted.text()
        assert "result: cancelled" in interrupted.text()
        assert held(), "chunks kept coming after the client's Ctrl-C"
    finally:
        client.destroy()
        output = _stop(process)
    assert "run_policy: success (task complete); holding" in output
    assert "run_policy: cancelled" in output
    assert "rejected: task 'pour_bottle', but the checkpoint was trained on 'place_mug'" in output


def test_a_goal_restarts_perception_and_uses_no_keypoints_from_before_it(checkpoint: Path, ros_node) -> None:
    """A RunPolicy goal is a new episode: policy_node calls keypoint_reset_service (keypoint_node's
    ~/reset: a track would follow the previous scene's objects) and takes no keypoints stamped
    before its answer, however fresh by max_input_age_s."""
    from rclpy.action import ActionClient
    from std_srvs.srv import Trigger

    from kil_interfaces.action import RunPolicy

    resets: list[int] = []

    def on_reset(request, response):
        resets.append(ros_node.get_clock().now().nanoseconds)
        response.success, response.message = True, "keypoints re-initialised on the next frame"
        return response

    ros_node.create_service(Trigger, "/keypoint_node/reset", on_reset)
    chunks: list = []
    ros_node.create_subscription(ActionChunk, "/kil/action_chunk", chunks.append, 10)
    before = {"stamp": None}  # keypoints stamped at this time (None: now)
    publish = _inputs(ros_node, keypoint_stamp=lambda: before["stamp"])
    client = ActionClient(ros_node, RunPolicy, "/policy_node/run_policy")
    process = _start("kil_policy.policy_node", f"checkpoint:={checkpoint}", "max_input_age_s:=60.0")
    try:
        assert client.wait_for_server(timeout_sec=60)
        before["stamp"] = ros_node.get_clock().now().nanoseconds  # the scene before the episode
        deadline = time.monotonic() + 60
        while not chunks and time.monotonic() < deadline:
            _spin(ros_node, 0.1, publish)
        assert chunks, "no chunks before the goal (autostart, keypoints 0 s old)"
        feedback: list = []
        handle = _send_goal(ros_node, client, RunPolicy.Goal(), feedback)
        assert handle.accepted
        deadline = time.monotonic() + 60
        while not resets and time.monotonic() < deadline:
            _spin(ros_node, 0.1, publish)
        assert len(resets) == 1, "the goal did not call keypoint_node/reset"
        _spin(ros_node, 3.0, publish)  # keypoints from before the episode keep coming, well within max_input_age_s
        after = [c for c in chunks if cv.time_to_ns(c.header.stamp) > resets[0]]
        assert not after, f"{len(after)} chunks from keypoints found before the episode"
        assert feedback and "keypoints" in feedback[-1].status, feedback[-1:]
        before["stamp"] = None  # keypoints of the new scene
        deadline = time.monotonic() + 60
        while not any(cv.time_to_ns(c.header.stamp) > resets[0] for c in chunks) and time.monotonic() < deadline:
            _spin(ros_node, 0.1, publish)
        assert any(cv.time_to_ns(c.header.stamp) > resets[0] for c in chunks), "no chunks from the new keypoints"
        cancel = handle.cancel_goal_async()
        rclpy.spin_until_future_complete(ros_node, cancel, timeout_sec=30)
    finally:
        client.destroy()
        output = _stop(process)
    assert "run_policy: new episode: observations cleared; /keypoint_node/reset: keypoints re-initialised" in output


def test_an_inference_failure_costs_one_tick_not_the_node(checkpoint: Path) -> None:
    """policy_node in this process (real rclpy and DDS) with a fault injected into inference (as
    an out-of-memory error would raise): one warning naming it, no chunk from that tick, and the
    chunks resume on the following ticks."""
    from kil_policy.policy_node import PolicyNode

    with in_process(PolicyNode, {"checkpoint": checkpoint}) as (node, test, executor):
        faults, lines = [], []
        original = node.runner.tick

        def failing_once(*args):
            if not faults:
                faults.append(1)
                raise RuntimeError("CUDA out of memory (injected)")
            return original(*args)

        node.runner.tick = failing_once
        logger = type("Log", (), {"warning": lambda s, t: lines.append(t), "info": lambda s, t: lines.append(t)})()
        node.get_logger = lambda: logger
        publish = _inputs(test)
        chunks = []
        test.create_subscription(ActionChunk, "/kil/action_chunk", chunks.append, 10)
        deadline = time.monotonic() + 60
        while len(chunks) < 2 and time.monotonic() < deadline:
            publish()
            spin_executor(executor, 0.05)
        assert faults and len(chunks) >= 2
        assert "not producing action chunks: inference failed (RuntimeError: CUDA out of memory (injected))" in lines
        assert "inputs recovered; producing action chunks again" in lines


@pytest.mark.parametrize("observation", ["rgb", "s2"])
def test_policy_node_runs_image_baselines(observation: str, tmp_path: Path, ros_node) -> None:
    """An RGB checkpoint takes colour frames, an S2 checkpoint depth images + instance masks (its
    mask from mask_categories); each publishes chunks over DDS, and not before its inputs come."""
    checkpoint = tiny_image_checkpoint(tmp_path / "checkpoint", observation)
    params = [f"checkpoint:={checkpoint}"] + (
        ["mask_categories:=1:mug,2:tray,3:distractor"] if observation == "s2" else []
    )
    process = _start("kil_policy.policy_node", *params)
    chunks: list[ActionChunkData] = []
    ros_node.create_subscription(
        ActionChunk, "/kil/action_chunk", lambda m: chunks.append(cv.action_chunk_from_msg(m)), 10
    )
    state_pub = ros_node.create_publisher(RobotState, "/kil/robot_state", 10)
    image_pubs = {
        topic: ros_node.create_publisher(Image, topic, 2)
        for topic in ("/camera/color/image_raw", "/camera/depth/image_raw", "/camera/instance_mask")
    }
    rng = np.random.default_rng(0)

    def publish(frames: bool) -> None:
        now = ros_node.get_clock().now().nanoseconds
        state_pub.publish(cv.robot_state_to_msg(RobotStateData(now, "link_base", [0.3, 0.0, 0.2], DOWN, 1.0)))
        if not frames:
            return
        if observation == "rgb":
            rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            image_pubs["/camera/color/image_raw"].publish(cv.numpy_to_image(rgb, "rgb8", now, "camera"))
        else:
            depth = rng.integers(400, 1500, (48, 64)).astype(np.uint16)
            mask = rng.integers(0, 4, (48, 64)).astype(np.uint16)
            image_pubs["/camera/depth/image_raw"].publish(cv.numpy_to_image(depth, "16UC1", now, "camera"))
            image_pubs["/camera/instance_mask"].publish(cv.numpy_to_image(mask, "16UC1", now, "camera"))

    try:
        # The node's subscriptions and control loop start together, once the checkpoint is loaded
        # (seconds on a loaded machine): the state-only window starts then.
        frames_topic = "/camera/color/image_raw" if observation == "rgb" else "/camera/depth/image_raw"
        deadline = time.monotonic() + 90
        while ros_node.count_subscribers(frames_topic) < 1 and time.monotonic() < deadline:
            _spin(ros_node, 0.2)
        assert ros_node.count_subscribers(frames_topic) >= 1, f"policy_node never subscribed to {frames_topic}"
        _spin(ros_node, 8.0, lambda: publish(False))  # state only: no chunk without the frames
        assert not chunks
        deadline = time.monotonic() + 90
        while len(chunks) < 2 and time.monotonic() < deadline:
            _spin(ros_node, 0.2, lambda: publish(True))
        assert len(chunks) >= 2, "policy_node produced no chunks from image inputs"
        assert all(c.num_steps == 16 and c.frame_id == "link_base" for c in chunks)
    finally:
        output = _stop(process)
    assert f"{observation} baseline on /camera/" in output
    assert "waiting for /kil/robot_state and /camera/" in output


def test_policy_node_refuses_s2_without_its_mask_categories(tmp_path: Path) -> None:
    checkpoint = tiny_image_checkpoint(tmp_path / "checkpoint", "s2")
    command = [sys.executable, "-m", "kil_policy.policy_node", "--ros-args", "-p", f"checkpoint:={checkpoint}"]
    done = subprocess.run([*command, "-p", "mask_categories:=1:mug"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "names no mask value for tray (the checkpoint's S2 mask shows mug, tray)" in done.stderr
