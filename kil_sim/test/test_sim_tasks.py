"""Tasks: reproducible initial configurations, success checks true for the expert and false for
a do-nothing controller, and the control path (expert -> interpolator -> arm)."""

from __future__ import annotations

import numpy as np
import pytest

from kil_interfaces.data import ActionChunkData
from kil_sim.rollout import RolloutConfig, run_episode
from kil_sim.tasks import TASKS, _overlap, evaluation_configurations, sample_configuration

FAST = RolloutConfig(camera_hz=0)


class DoNothing:
    """Holds the arm where it is (never commands anything)."""

    done = False

    def act(self, world, stamp_ns: int) -> ActionChunkData | None:
        return None


@pytest.mark.parametrize("name", sorted(TASKS))
def test_expert_succeeds_and_doing_nothing_fails(name: str) -> None:
    episode = evaluation_configurations(name, "in_distribution", count=1)[0]
    expert = run_episode(episode, config=FAST)
    assert expert.success, f"{name}: expert completion {expert.completion}"
    idle = run_episode(episode, controller=DoNothing(), config=RolloutConfig(camera_hz=0, max_duration_s=2.0))
    assert idle.completion == 0.0


def test_configurations_are_reproducible_and_settings_differ() -> None:
    a = sample_configuration("place_mug", "in_distribution", 3)
    b = sample_configuration("place_mug", "in_distribution", 3)
    assert [(o.name, o.model.variant, o.position, o.yaw) for o in a.objects] == [
        (o.name, o.model.variant, o.position, o.yaw) for o in b.objects
    ]
    assert sample_configuration("place_mug", "in_distribution", 4).objects[0].position != a.objects[0].position
    train_variants = {
        sample_configuration("place_mug", "in_distribution", i).objects[0].model.variant for i in range(10)
    }
    unseen_variants = {
        sample_configuration("place_mug", "unseen_object", i).objects[0].model.variant for i in range(10)
    }
    assert train_variants == {"mug_blue", "mug_red"}
    assert unseen_variants == {"mug_tall_green", "mug_wide_yellow"}
    varied = sample_configuration("place_mug", "scene_variation", 2)
    assert any(o.name.startswith("distractor") for o in varied.objects)
    assert varied.scene.table_rgba != a.scene.table_rgba


@pytest.mark.parametrize("name", ["place_2_shoes", "pick_2_pens", "place_mouse_rotation"])
def test_placements_do_not_overlap_and_respect_the_yaw_range(name: str) -> None:
    spec = TASKS[name]
    for setting in ("in_distribution", "scene_variation"):
        for config in evaluation_configurations(name, setting):
            objects = config.objects
            for i in range(len(objects)):
                for j in range(i + 1, len(objects)):
                    assert not _overlap(objects[i], objects[j], 0.0), (config.index, objects[i].name, objects[j].name)
            for placed in objects[: spec.count]:
                delta = np.remainder(placed.yaw - spec.canonical_yaw + np.pi, 2 * np.pi) - np.pi
                assert abs(delta) <= spec.yaw_range + 1e-9


def test_unknown_task_and_setting_are_named() -> None:
    with pytest.raises(KeyError, match="unknown task 'fold_laundry'"):
        sample_configuration("fold_laundry", "in_distribution", 0)
    with pytest.raises(ValueError, match="unknown setting 'outdoors'"):
        sample_configuration("place_mug", "outdoors", 0)


class _StartedAt:
    """The simulator, but the expert's starting orientation reads as an arm reports it."""

    def __init__(self, world, quaternion: np.ndarray) -> None:
        self._world, self._quaternion = world, quaternion

    def commanded_tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self._world.commanded_tcp_pose()[0], self._quaternion

    def __getattr__(self, name: str):
        return getattr(self._world, name)


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("noise", [0.0, 1e-7, -1e-7])
def test_the_experts_half_turn_to_a_side_grasp_goes_one_way_whatever_the_start_quaternion(
    sign: float, noise: float
) -> None:
    """pour_bottle's side grasp is a half turn from tool-down, where the two arcs are as long: an
    arm's forward kinematics reports tool-down as +-(1, 0, 0, 0) with 1e-7 noise, and the shorter
    arc flipped with that noise (live on the UR5e the tool swung the other way, through a pose with
    the wrist over the base axis, and the adapter refused it). The tool axis follows one path."""
    from kil_interfaces.rotations import quat_to_matrix
    from kil_sim.expert import ScriptedExpert

    configuration = evaluation_configurations("pour_bottle", "in_distribution", 1)[0]
    world = configuration.make_world()
    try:
        exact = world.commanded_tcp_pose()[1]
        np.testing.assert_allclose(np.abs(exact), [1.0, 0.0, 0.0, 0.0], atol=1e-9)
        start = np.array([1.0, noise, noise, noise]) * np.sign(exact[0]) * sign
        paths = []
        for q in (exact, start / np.linalg.norm(start)):
            expert = ScriptedExpert(TASKS["pour_bottle"], _StartedAt(world, q), np.random.default_rng(0))
            paths.append(np.array([quat_to_matrix(expert.act()[1])[:, 2] for _ in range(40)]))
    finally:
        world.close()
    turned = np.degrees(np.arccos(np.clip(paths[0] @ [0.0, 0.0, -1.0], -1, 1)))
    assert turned.max() > 80.0  # the path does include the turn to the side grasp
    np.testing.assert_allclose(paths[1], paths[0], atol=1e-5)
