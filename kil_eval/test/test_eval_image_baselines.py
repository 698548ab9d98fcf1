"""The image baselines (ResNet-18 + diffusion head) end to end on real bags: RGB on the colour
frames and S2 on a task-object mask + relative depth, each trained a few steps from recorded
demonstrations, reloaded to identical actions, fed the right observation only, and evaluated
in the simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kil_eval.evaluate import Evaluation, EvaluationConfig
from kil_eval.observations import CameraFrames, S2Frames
from kil_eval.record_demos import record
from kil_eval.specs import with_camera
from kil_interfaces.keypoint_layout import read_layout
from kil_perception.lifting import depth_in_metres
from kil_policy.checkpoint import load_policy
from kil_policy.data import EpisodeError, read_episode, resize_nearest
from kil_policy.runner import PolicyRunner
from kil_policy.s2_observation import s2_frame
from kil_policy.train import parse_config, train
from kil_sim.camera import CameraConfig
from kil_sim.oracle import oracle_keypoints
from kil_sim.tasks import evaluation_configurations

CAMERA = CameraConfig(64, 48)


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demos")
    record("place_mug", 2, out, camera_hz=5.0, width=64, height=48, progress=False, masks=True)
    return out


@pytest.mark.parametrize("observation", ["rgb", "s2"])
def test_image_baseline_trains_from_bags_reloads_and_evaluates(observation: str, demos: Path, tmp_path: Path) -> None:
    overrides = [
        f"data=[{demos}]",
        f"out={tmp_path / 'run'}",
        "steps=3",
        "batch_size=4",
        "log_every=1",
        f"policy.observation={observation}",
        "policy.image_size=[24,32]",
        "policy.head.down_dims=[16,32,64]",
        "policy.head.inference_steps=3",
    ]
    if observation == "s2":
        overrides.append("policy.mask_categories=[mug,tray]")
    result = train(parse_config(None, overrides))
    assert len(result.rows) == 3 and read_layout(result.checkpoint) is None  # no keypoints, no layout
    loaded = load_policy(result.checkpoint)
    assert loaded.config.observation == observation and loaded.config.image_size == (24, 32)
    episode = with_camera(evaluation_configurations("place_mug", "in_distribution", 1)[0], CAMERA)
    world = episode.make_world()
    source = S2Frames(("mug", "tray")) if observation == "s2" else CameraFrames()
    try:
        world.step(0.3)
        frame, state = source(world, 0), world.robot_state(0)
        assert frame.shape == (48, 64, 2 if observation == "s2" else 3) and frame.dtype == np.uint8
        chunks = [PolicyRunner(p, seed=1).tick(state, frame, 0) for p in (result.policy, loaded)]
        keypoints = oracle_keypoints(world, 0)
        other = world.render().rgb if observation == "s2" else S2Frames(("mug", "tray"))(world, 0)
    finally:
        world.close()
    np.testing.assert_array_equal(chunks[0].positions, chunks[1].positions)
    np.testing.assert_array_equal(chunks[0].gripper, chunks[1].gripper)
    with pytest.raises(ValueError, match=f"{observation} policy needs an"):
        PolicyRunner(loaded).tick(state, keypoints, 0)
    with pytest.raises(ValueError, match=f"{observation} policy needs an"):  # the other baseline's frame
        PolicyRunner(loaded).tick(state, other, 0)
    config = EvaluationConfig(name=observation.upper(), checkpoint=str(result.checkpoint), width=64, height=48,
                              episodes=1, max_duration_s=1.0)  # fmt: skip
    (row,) = Evaluation(config).run(progress=False)
    assert row.episodes == 1 and row.keypoint_frames == 0 and sum(row.failures.values()) == 1


def test_s2_frames_from_a_bag_are_its_mask_and_relative_depth(demos: Path) -> None:
    """Each step's S2 frame is built from the newest depth image and instance mask of the bag: the
    mask of the mug and tray only, the depth as min-max normalised inverse depth."""
    from rosbags.rosbag2 import Reader

    from kil_interfaces import conversion
    from kil_interfaces.typestore import kil_typestore

    bag = sorted(p for p in demos.iterdir() if (p / "metadata.yaml").exists())[0]
    episode = read_episode(bag, need_keypoints=False, need_images=True, s2_categories=("mug", "tray"))
    assert episode.images.shape == (len(episode), 48, 64, 2) and episode.images.dtype == np.uint8
    typestore, last = kil_typestore(), {}
    with Reader(bag) as reader:
        wanted = [c for c in reader.connections if c.topic in ("/camera/depth/image_raw", "/camera/instance_mask")]
        for connection, stamp, raw in reader.messages(connections=wanted):
            if stamp <= episode.times_ns[-1]:
                last[connection.topic] = typestore.deserialize_cdr(raw, connection.msgtype)
    depth = depth_in_metres(conversion.image_to_numpy(last["/camera/depth/image_raw"]), "16UC1")
    index_map = conversion.image_to_numpy(last["/camera/instance_mask"])
    # record_demos numbers the objects in scene order: 1 = mug, 2 = tray; 0 is the table and robot.
    expected = s2_frame(np.isin(index_map, [1, 2]), depth)
    np.testing.assert_array_equal(episode.images[-1], expected)
    assert 0 < (expected[..., 0] > 0).mean() < 0.5 and expected[..., 1].max() == 255
    mug_only = read_episode(bag, need_keypoints=False, need_images=True, s2_categories=("mug",), image_size=(24, 32))
    assert mug_only.images.shape[1:] == (24, 32, 2)
    np.testing.assert_array_equal(mug_only.images[-1], resize_nearest(s2_frame(index_map == 1, depth), (24, 32)))
    with pytest.raises(EpisodeError, match="S2 mask categories bottle are not in the bag's masks"):
        read_episode(bag, need_keypoints=False, need_images=True, s2_categories=("bottle",))


@pytest.mark.parametrize("observation", ["rgb", "s2"])
def test_the_evaluation_feeds_what_training_read_from_the_bag(observation: str, demos: Path) -> None:
    """The comparison is fair only if a baseline sees in the loop what it trained on: the frame
    the evaluation builds for a demonstration's own configuration at its first tick equals, pixel
    for pixel, the frame training read from that demonstration's bag (colour, or S2's mask + depth)."""
    from kil_policy.data import bag_custom_data
    from kil_sim.rollout import RolloutConfig
    from kil_sim.tasks import sample_configuration

    categories = ("mug", "tray") if observation == "s2" else ()
    for bag in sorted(p for p in demos.iterdir() if (p / "metadata.yaml").exists()):
        episode = read_episode(bag, need_keypoints=False, need_images=True, s2_categories=categories)
        configuration = int(bag_custom_data(bag)["configuration"])
        world = with_camera(sample_configuration("place_mug", "train", configuration), CAMERA).make_world()
        try:
            world.reset()
            world.step(RolloutConfig().settle_s)  # where run_episode starts, before its first tick
            source = S2Frames(categories) if observation == "s2" else CameraFrames()
            live = source(world, 0)
            np.testing.assert_allclose(episode.proprio[0], _proprio(world.robot_state(0)), atol=1e-6)
        finally:
            world.close()
        assert live.shape == episode.images[0].shape
        np.testing.assert_array_equal(live, episode.images[0])


def _proprio(state) -> np.ndarray:
    from kil_interfaces.representation import proprio_from_pose

    return proprio_from_pose(state.position[None], state.quaternion[None], np.array([state.gripper]))[0]
