"""Collision detection of the simulated arms (``kil_sim.arm_collision``): the scripted expert's
grasps are not collisions; the gripper pressed into the table, an object pinned by a link and a
link sunk into the table are."""

from __future__ import annotations

import numpy as np
import pytest

from kil_interfaces.rotations import quat_to_matrix
from kil_sim.arm_collision import CollisionConfig, CollisionMonitor, collision_pose
from kil_sim.arms import lite6
from kil_sim.rollout import RolloutConfig, run_episode
from kil_sim.sim_node import follow_arm
from kil_sim.simulated_arm import SimulatedArm
from kil_sim.tasks import sample_configuration

TICK_S = 0.01


class ArmDrivenWorld:
    """A place_mug world whose gripper is carried by a simulated Lite6, each TCP target solved by
    the arm's inverse kinematics as the Lite6 controller does, with a collision monitor updated
    every ``TICK_S`` as sim_node does."""

    def __init__(self, config: CollisionConfig | None = None, task: str = "place_mug") -> None:
        self.model = lite6()
        self.episode = sample_configuration(task, "in_distribution", 0).shifted(self.model.scene_offset(task))
        self.world = self.episode.make_world(self.model.link_capsules())
        self.arm = SimulatedArm(self.model, *self.world.commanded_tcp_pose())
        follow_arm(self.world, self.arm)
        self.monitor = CollisionMonitor(config)
        self.collisions: list[tuple[float, str]] = []
        self.forces: list[tuple[float, float]] = []  # (time, net contact force) per tick

    def command(self, position, quaternion) -> None:
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = quat_to_matrix(np.asarray(quaternion)), position
        joints = self.model.inverse(pose, self.arm.target)
        assert joints is not None, f"{position} is out of the Lite6's reach"
        self.arm.command(joints)

    def tick(self) -> None:
        self.arm.step(TICK_S)
        follow_arm(self.world, self.arm)
        self.world.step(TICK_S)
        self.forces.append((self.world.time, self.world.robot_contact_force()[0]))
        found = self.monitor.update(self.world, self.arm.tcp_pose_and_links()[1], self.world.time)
        if found is not None:
            self.collisions.append((self.world.time, found))

    def move(self, position, seconds: float) -> None:
        self.command(np.asarray(position, np.float64), self.world.commanded_tcp_pose()[1])
        for _ in range(round(seconds / TICK_S)):
            self.tick()


def test_the_experts_grasp_and_carry_are_not_collisions() -> None:
    """The scripted expert's place_mug episode through the Lite6: the grasp's squeeze cancels in
    the net force and the held mug's weight stays far below the limit."""
    driven = ArmDrivenWorld()
    world = driven.world
    set_target = world.set_target
    world.set_target = lambda position, quaternion: driven.command(position, quaternion)  # through the arm's IK
    world_step = world.step

    def step(duration_s: float) -> None:
        driven.arm.step(duration_s)
        tcp, links = driven.arm.tcp_pose_and_links()
        set_target(*tcp)
        world.set_arm_links(links)
        world_step(duration_s)
        found = driven.monitor.update(world, links, world.time)
        if found is not None:
            driven.collisions.append((world.time, found))

    world.step = step
    try:
        result = run_episode(driven.episode, config=RolloutConfig(camera_hz=0.0), world=world)
        assert result.completion >= 1.0, result
        assert driven.collisions == []
        assert 1.0 < driven.monitor.peak_force_n < 0.5 * driven.monitor.config.force_n  # the mug was held
    finally:
        world.close()


def test_the_gripper_pressed_into_the_table_is_a_collision_once_it_lasts() -> None:
    driven = ArmDrivenWorld(CollisionConfig(force_n=50.0, duration_s=0.05))
    try:
        mug = driven.world.object_pose("mug")[0]
        clear = mug + [-0.1, -0.1, 0.0]  # beside the mug, over bare table
        driven.move(clear + [0, 0, 0.15], 1.5)
        driven.move(clear + [0, 0, 0.02], 1.0)  # fingertips just above the table top
        assert driven.collisions == []
        driven.move(clear + [0, 0, -0.01], 1.0)  # 1 cm into it
        assert driven.collisions, "pressing the gripper into the table was not detected"
        when, what = driven.collisions[0]
        assert "of contact with table" in what and "limit 50 N" in what, what
        # where: the gripper's fingers or palm on the table, pushed up, at the pose it was driven to
        mine, other, force = driven.world.robot_contacts()[0]
        assert other == "table" and force[2] > 50.0 and mine != "table", (mine, other, force)
        pose = collision_pose(driven.world)
        assert f"{mine} on table" in pose and "vertical +" in pose and "gripper commanded 1.00 open" in pose, pose
        assert f"{driven.world.tcp_pose()[0][2]:.3f}) m" in pose, pose
        net = sum(force for _, _, force in driven.world.robot_contacts())  # the parts add up to the whole
        assert np.linalg.norm(net) == pytest.approx(driven.world.robot_contact_force()[0], rel=1e-9)
        # reported once the force had stayed above the limit for duration_s, not at its first tick
        first_above = next(t for t, force in driven.forces if force > 50.0)
        assert 0.05 - 1e-6 <= when - first_above <= 0.05 + 1.5 * TICK_S, (first_above, when)
        assert driven.monitor.peak_force_n > 500.0
    finally:
        driven.world.close()


def test_an_object_pinned_by_a_link_is_a_collision() -> None:
    """The forearm's capsule pressed down onto the mug (the gripper far from it): the link pushes
    the mug into the table and the monitor names the mug."""
    driven = ArmDrivenWorld()
    world = driven.world
    try:
        mug = world.object_pose("mug")[0]
        height = max(p[2] for p in world.objects[world.object_index("mug")].model.keypoints.values())
        segments = driven.arm.tcp_pose_and_links()[1]
        found = None
        for k in range(60):  # lowered 2 mm per tick from 5 cm above the mug's rim
            z = height + 0.05 + 0.04 - 0.002 * k
            pressed = list(segments)
            pressed[2] = (mug + [-0.1, 0.0, z], mug + [0.1, 0.0, z], 0.04)
            world.set_arm_links(pressed)
            world.step(TICK_S)
            found = driven.monitor.update(world, segments, world.time)  # (the arm's own links: above the table)
            if found:
                break
        assert found is not None and "contact with mug" in found, found
        mine, other, force = world.robot_contacts()[0]
        assert (mine, other) == ("arm_link3", "mug"), (mine, other, force)  # the pressed link, not the gripper
        assert force[2] > 0  # the mug pushes the link up
    finally:
        world.close()


def test_a_link_below_the_table_top_is_a_collision_whatever_its_radius() -> None:
    driven = ArmDrivenWorld()
    try:
        segments = driven.arm.tcp_pose_and_links()[1]
        assert driven.monitor.update(driven.world, segments, 0.0) is None
        sunk = list(segments)
        start, end, radius = sunk[2]
        sunk[2] = (start, np.array([end[0], end[1], -0.012]), radius)
        found = driven.monitor.update(driven.world, sunk, 0.0)
        assert found == "link 3's axis 12.0 mm below the table top", found
        grazing = list(segments)
        grazing[2] = (start, np.array([end[0], end[1], 0.5 * radius]), radius)  # its surface in, its axis above
        assert driven.monitor.update(driven.world, grazing, 0.0) is None
        first = list(segments)
        first[0] = (np.array([0.0, 0.0, -0.5]), segments[0][1], segments[0][2])  # the base link stands on the table
        assert driven.monitor.update(driven.world, first, 0.0) is None
        off = CollisionMonitor(CollisionConfig(table_depth_m=-1.0))
        assert off.update(driven.world, sunk, 0.0) is None
    finally:
        driven.world.close()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("force_n", -1.0, "force_n must be >= 0"),
        ("duration_s", float("nan"), "duration_s must be >= 0"),
        ("table_depth_m", float("inf"), "table_depth_m must be finite"),
    ],
)
def test_collision_config_refuses_bad_values(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CollisionConfig(**{field: value})


def test_after_a_collision_nothing_is_reported_until_the_contact_is_over() -> None:
    """Once the controller's fault is cleared the arm must be able to back off what it hit: a
    disarmed monitor stays quiet while the gripper still presses on the table, and reports the
    next collision once it has been off it."""
    driven = ArmDrivenWorld()
    try:
        spot = driven.world.object_pose("mug")[0] + [-0.1, -0.1, 0.0]
        driven.move(spot + [0, 0, 0.15], 1.5)
        driven.move(spot + [0, 0, -0.01], 1.0)
        assert driven.collisions
        driven.monitor.disarm()
        driven.collisions.clear()
        driven.move(spot + [0, 0, -0.01], 0.5)  # still pressing
        assert driven.collisions == []
        driven.move(spot + [0, 0, 0.05], 0.5)  # off the table
        driven.move(spot + [0, 0, -0.01], 1.0)  # and into it again
        assert driven.collisions and "contact with table" in driven.collisions[0][1]
    finally:
        driven.world.close()
