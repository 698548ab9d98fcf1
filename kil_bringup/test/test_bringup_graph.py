"""The rollout graph: its description, and the whole loop running in the simulator as separate
processes over DDS (sim camera -> keypoint_node -> policy_node -> interpolator_node -> sim arm)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
import torch
from geometry_msgs.msg import PoseStamped

from kil_bringup.graph import rollout_graph
from kil_bringup.run_graph import start, stop
from kil_interfaces import conversion as cv
from kil_interfaces.msg import ActionChunk, KeypointArray, RobotState
from kil_policy.checkpoint import save_policy
from kil_policy.config import EncoderConfig, HeadConfig, PolicyConfig
from kil_policy.policy import KeypointDiffusionPolicy
from kil_sim.tasks import sample_configuration


def test_sim_graph_nodes_parameters_and_errors() -> None:
    nodes = rollout_graph("sim", task="pick_pen", spec="/s.yaml", checkpoint="/c", calibration="/cal.yaml")
    assert [n.name for n in nodes] == ["sim_node", "keypoint_node", "policy_node", "interpolator_node"]
    sim, keypoints, policy, interpolator = nodes
    assert sim.parameters["task"] == "pick_pen" and sim.parameters["calibration_file"] == "/cal.yaml"
    assert keypoints.parameters["extrinsics_file"] == "/cal.yaml" and keypoints.remappings == {}
    assert policy.parameters["checkpoint"] == "/c" and interpolator.parameters["rate_hz"] == 100.0
    assert interpolator.ros_args()[:3] == ["--ros-args", "-r", "__node:=interpolator_node"]
    assert "rate_hz:=100.0" in interpolator.ros_args()
    with pytest.raises(ValueError, match="robot must be one of"):
        rollout_graph("panda")
    with pytest.raises(ValueError, match="use camera:=sim"):
        rollout_graph("sim", camera="zed2i")
    with pytest.raises(NotImplementedError, match="lite6 adapter"):
        rollout_graph("lite6", calibration="/cal.yaml")
    tracked = rollout_graph("sim", spec="/s.yaml", checkpoint="/c", method="track", inference="compiled")
    assert tracked[1].parameters["method"] == "track" and tracked[2].parameters["inference"] == "compiled"
    with pytest.raises(ValueError, match="method must be one of image, instance, track"):
        rollout_graph("sim", method="flow")
    with pytest.raises(ValueError, match="inference must be one of"):
        rollout_graph("sim", inference="onnx")


def test_graph_choices_match_the_nodes() -> None:
    """The graph lists the choices without importing torch; they must stay those of the nodes."""
    from kil_bringup.graph import INFERENCE_MODES, METHODS
    from kil_perception.pipeline import METHODS as PERCEPTION_METHODS
    from kil_policy.runner import INFERENCE_MODES as RUNNER_MODES

    assert METHODS == PERCEPTION_METHODS and INFERENCE_MODES == RUNNER_MODES


def _spec_and_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    world = sample_configuration("place_mug", "in_distribution", 0).make_world()
    world.step(0.3)
    intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
    names = ("rim", "handle", "opening")
    uv = intr.project(to_cam.apply(np.array([world.keypoints("mug")[n] for n in names])))
    cv2.imwrite(str(tmp_path / "reference.png"), cv2.cvtColor(world.render().rgb, cv2.COLOR_RGB2BGR))
    world.close()
    points = "\n".join(f"          {n}: [{u:.1f}, {v:.1f}]" for n, (u, v) in zip(names, uv, strict=True))
    (tmp_path / "spec.yaml").write_text(
        "categories:\n  - name: mug\n    references:\n      - image: reference.png\n        keypoints:\n"
        + points
        + "\n"
    )
    policy = KeypointDiffusionPolicy(
        PolicyConfig(
            encoder=EncoderConfig(num_keypoints=3, d_model=16, num_layers=1, num_heads=2, mlp_dim=32),
            head=HeadConfig(down_dims=(16, 32, 64), inference_steps=4),
        )
    )
    g = torch.Generator().manual_seed(0)
    home = torch.tensor([0.25, 0.0, 0.25, 1, 0, 0, 0, -1, 0, 1.0])
    policy.fit_normalizers(
        home + 0.05 * torch.rand(32, 10, generator=g),
        torch.rand(32, 7, generator=g),
        torch.rand(32, 3, 3, generator=g),
        torch.ones(32, 3, dtype=torch.bool),
    )
    return tmp_path / "spec.yaml", save_policy(tmp_path / "checkpoint", policy)


def test_the_whole_loop_runs_in_the_simulator(tmp_path: Path) -> None:
    spec, checkpoint = _spec_and_checkpoint(tmp_path)
    nodes = rollout_graph(
        "sim",
        task="place_mug",
        spec=str(spec),
        checkpoint=str(checkpoint),
        calibration=str(tmp_path / "calibration.yaml"),
        backend="classic",
    )
    processes = start(nodes)
    rclpy.init()
    node = rclpy.create_node("loop_test")
    seen: dict[str, list] = {"keypoints": [], "chunks": [], "targets": [], "states": []}
    node.create_subscription(
        KeypointArray, "/kil/keypoints", lambda m: seen["keypoints"].append(cv.keypoints_from_msg(m)), 10
    )
    node.create_subscription(ActionChunk, "/kil/action_chunk", lambda m: seen["chunks"].append(m), 10)
    node.create_subscription(PoseStamped, "/kil/servo_target", lambda m: seen["targets"].append(m), 10)
    node.create_subscription(
        RobotState, "/kil/robot_state", lambda m: seen["states"].append(cv.robot_state_from_msg(m)), 10
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (len(seen["chunks"]) < 3 or not seen["targets"]):
            rclpy.spin_once(node, timeout_sec=0.1)
            assert all(p.poll() is None for p in processes), "a node of the graph exited"
        assert len(seen["chunks"]) >= 3, {k: len(v) for k, v in seen.items()}
        kp = seen["keypoints"][-1]
        assert kp.names == ("rim", "handle", "opening") and kp.frame_id == "link_base" and kp.valid.any()
        first = seen["states"][0].position
        moved = max(np.linalg.norm(s.position - first) for s in seen["states"])
        assert moved > 0.005  # the policy's chunks reached the simulated arm through the interpolator
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)
