"""The RGB baseline (ResNet-18 + diffusion head) end to end on real bags: trained a few steps from
recorded demonstrations, reloaded to identical actions, and evaluated on the rendered frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kil_eval.evaluate import Evaluation, EvaluationConfig
from kil_eval.record_demos import record
from kil_eval.specs import with_camera
from kil_interfaces.keypoint_layout import read_layout
from kil_policy.checkpoint import load_policy
from kil_policy.runner import PolicyRunner
from kil_policy.train import parse_config, train
from kil_sim.camera import CameraConfig
from kil_sim.oracle import oracle_keypoints
from kil_sim.tasks import evaluation_configurations


def test_rgb_baseline_trains_from_bags_reloads_and_evaluates(tmp_path: Path) -> None:
    record("place_mug", 2, tmp_path / "demos", camera_hz=5.0, width=64, height=48, progress=False)
    overrides = [
        f"data=[{tmp_path / 'demos'}]",
        f"out={tmp_path / 'run'}",
        "steps=3",
        "batch_size=4",
        "log_every=1",
        "policy.observation=rgb",
        "policy.image_size=[24,32]",
        "policy.head.down_dims=[16,32,64]",
        "policy.head.inference_steps=3",
    ]
    result = train(parse_config(None, overrides))
    assert len(result.rows) == 3 and read_layout(result.checkpoint) is None  # no keypoints, no layout
    loaded = load_policy(result.checkpoint)
    assert loaded.config.observation == "rgb" and loaded.config.image_size == (24, 32)
    episode = with_camera(evaluation_configurations("place_mug", "in_distribution", 1)[0], CameraConfig(64, 48))
    world = episode.make_world()
    try:
        world.step(0.3)
        frame, state = world.render().rgb, world.robot_state(0)
        chunks = [PolicyRunner(p, seed=1).tick(state, frame, 0) for p in (result.policy, loaded)]
        keypoints = oracle_keypoints(world, 0)
    finally:
        world.close()
    np.testing.assert_array_equal(chunks[0].positions, chunks[1].positions)
    np.testing.assert_array_equal(chunks[0].gripper, chunks[1].gripper)
    with pytest.raises(ValueError, match="RGB policy needs an"):
        PolicyRunner(loaded).tick(state, keypoints, 0)
    config = EvaluationConfig(name="RGB", checkpoint=str(result.checkpoint), width=64, height=48, episodes=1,
                              max_duration_s=1.0)  # fmt: skip
    (row,) = Evaluation(config).run(progress=False)
    assert row.episodes == 1 and row.keypoint_frames == 0
