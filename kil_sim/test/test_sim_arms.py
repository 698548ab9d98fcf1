"""The Lite6 and UR5e kinematic models and the reachability check of the tasks' expert paths."""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as np
import pytest

from kil_control import ur5e as ur
from kil_control.kinematics import dh_forward, pose_error
from kil_interfaces.rotations import matrix_to_quat
from kil_sim.arms import arm, lite6, ur5e_arm
from kil_sim.reachability import PathCheck, check_path, check_task, summarise

DOWN = np.diag([1.0, -1.0, -1.0])


def _pose(position, rotation=DOWN) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, position
    return pose


def test_lite6_zero_pose_matches_ufactorys_geometry() -> None:
    model = lite6()
    flange = model.forward(np.zeros(6)) @ np.linalg.inv(model.tool)
    # UFACTORY's Lite6 at all-zero joints: flange at (87, 0, 154.2) mm, tool pointing down
    # (a3 = 87 mm; 243.3 + ... : d1 - d4 + ... from the standard DH table).
    assert np.allclose(flange[:3, 3], [0.087, 0.0, 0.1542], atol=1e-4)
    assert np.allclose(flange[:3, 2], [0.0, 0.0, -1.0], atol=1e-9)
    assert np.allclose(model.shoulder(), [0.0, 0.0, 0.2433])


def test_ur5e_model_is_the_adapters_kinematics() -> None:
    model = ur5e_arm()
    rng = np.random.default_rng(1)
    for _ in range(5):
        q = rng.uniform(-np.pi, np.pi, 6)
        assert np.allclose(dh_forward(q, model.table), ur.forward(q), atol=1e-12)


@pytest.mark.parametrize("name", ["lite6", "ur5e"])
def test_inverse_kinematics_reaches_poses_of_the_forward_kinematics(name: str) -> None:
    model = arm(name)
    rng = np.random.default_rng(2)
    solved = 0
    for _ in range(12):
        q = np.clip(model.home + rng.normal(0, 0.3, 6), model.lower, model.upper)
        target = model.forward(q)
        solution = model.inverse(target, model.home)
        assert solution is not None, f"{name}: no IK solution for the pose of {q}"
        assert not model.limit_violations(solution)
        error = pose_error(model.forward(solution), target)
        assert np.linalg.norm(error[:3]) < 2e-4 and np.linalg.norm(error[3:]) < 2e-3
        solved += 1
    assert solved == 12


def test_out_of_reach_and_joint_limits_are_named() -> None:
    model = lite6()
    assert model.inverse(_pose([0.30, 0.10, 0.05])) is not None  # the tabletop in front: reachable
    assert model.inverse(_pose([0.70, 0.0, 0.10])) is None  # 0.73 m from the shoulder, reach ~0.44 m
    (message,) = model.limit_violations(np.array([0.0, 0.0, 5.4, 0.0, 0.0, 0.0]))
    assert message == "joint3 = 5.400 rad beyond its upper limit 5.236"
    with pytest.raises(ValueError, match="arm must be one of"):
        arm("panda")


def test_a_path_beyond_reach_or_too_fast_for_the_joints_is_flagged() -> None:
    model = lite6()
    quaternion = matrix_to_quat(DOWN)
    slow = [(np.array([0.25 + 0.002 * k, 0.0, 0.15]), quaternion) for k in range(20)]
    check = PathCheck("t", "in_distribution", 0)
    check_path(slow, model, 0.1, check)
    assert check.reachable and check.poses == 20 and max(check.max_joint_speed) < 1.0

    jump = [(np.array([0.25, 0.15, 0.15]), quaternion), (np.array([0.25, -0.15, 0.15]), quaternion)]
    check = PathCheck("t", "in_distribution", 1)
    check_path(jump, model, 0.1, check)  # 0.3 m in 0.1 s: joint 1 would turn ~10 rad/s
    assert check.too_fast == 1 and "joint1 would turn at" in check.first_problem and not check.reachable

    far = [(np.array([0.65, 0.0, 0.10]), quaternion)]
    check = PathCheck("t", "in_distribution", 2)
    check_path(far, model, 0.1, check)
    assert check.unreachable == 1 and "m from the shoulder, reach 0.444 m" in check.first_problem


def test_a_pose_that_puts_a_link_into_the_table_is_flagged() -> None:
    """The tool held horizontally (pointing along +x) 2 cm above the table: the Lite6 solves it,
    but its wrist link (radius 4 cm) would be 2 cm into the table; 8 cm up it clears it."""
    model = lite6()
    sideways = matrix_to_quat(np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]))
    low, high = ((np.array([0.33, 0.0, z]), sideways) for z in (0.02, 0.08))
    check = PathCheck("t", "in_distribution", 0)
    check_path([high, low], model, 1.0, check)
    assert check.into_table == 1 and check.poses == 2 and check.reachable  # (reported, not refused)
    where = r"\(0\.330, 0\.000, 0\.020\) m puts the lite6's link \d 2\.0 cm into the table"
    assert re.search(where, check.first_into_table), check.first_into_table
    for joints in (model.home, model.inverse(_pose([0.30, 0.10, 0.05]))):  # tool down: the links stay above
        assert model.table_clearance(joints)[0] > 0.0


@pytest.mark.parametrize("name", ["lite6", "ur5e"])
def test_link_segments_follow_the_kinematic_chain_to_the_flange(name: str) -> None:
    model = arm(name)
    joints = model.home + 0.3
    segments = model.link_segments(joints)
    assert len(segments) == len(model.table) == len(model.link_capsules())
    np.testing.assert_allclose(segments[0][0], 0.0, atol=1e-12)  # from the base
    for (_, end, _), (start, _, _) in itertools.pairwise(segments):
        np.testing.assert_allclose(end, start, atol=1e-12)  # a chain
    tcp = model.forward(joints)
    np.testing.assert_allclose(segments[-1][1] + model.tcp_offset_m * tcp[:3, 2], tcp[:3, 3], atol=1e-9)  # the flange
    for (start, end, _), (_, half_length) in zip(segments, model.link_capsules(), strict=True):
        assert np.linalg.norm(end - start) == pytest.approx(2 * half_length, abs=1e-9)  # rigid links
    pose, links = model.forward_with_links(joints)  # the simulator's one-pass form: the same numbers
    np.testing.assert_allclose(pose, tcp, atol=1e-12)
    for (start, end, radius), (start2, end2, radius2) in zip(links, segments, strict=True):
        np.testing.assert_allclose(np.stack([start, end]), np.stack([start2, end2]), atol=1e-12)
        assert radius == radius2


def test_link_radii_must_name_every_link_or_none() -> None:
    model = arm("lite6")
    assert dataclasses.replace(model, link_radii_m=()).link_capsules() == ()  # no geometry: allowed
    assert dataclasses.replace(model, link_radii_m=()).table_clearance(model.home) == (np.inf, 0)
    for radii in [(0.04,) * 5, (0.04,) * 7, (0.04,) * 5 + (0.0,)]:
        with pytest.raises(ValueError, match="link_radii_m needs one radius > 0 per joint"):
            dataclasses.replace(model, link_radii_m=radii)


def test_arm_links_push_objects_and_stay_out_of_the_camera() -> None:
    """The arm's link capsules in the MuJoCo world: kinematic bodies that push an object they
    sweep through, kept off the gripper, and not drawn by the scene camera (the images stay those
    the floating-gripper demonstrations were recorded with)."""
    from kil_sim.tasks import sample_configuration

    model = ur5e_arm()
    world = sample_configuration("place_mug", "in_distribution", 0).make_world(model.link_capsules())
    try:
        parked = [(np.array([0.0, 0.0, -1.0]), np.array([0.0, 0.0, -0.9]), r) for r, _ in model.link_capsules()]
        world.set_arm_links(parked)
        world.step(0.3)
        mug = world.object_pose("mug")[0].copy()
        before = world.render().rgb.copy()
        above = list(parked)
        above[2] = (mug + [-0.1, 0.0, 0.25], mug + [0.1, 0.0, 0.25], 0.06)  # in view, touching nothing
        world.set_arm_links(above)
        world.step(0.05)
        np.testing.assert_array_equal(world.render().rgb, before)
        geom = world.model.geom("arm_link3")
        np.testing.assert_allclose(world.data.geom_xpos[geom.id], mug + [0.0, 0.0, 0.25], atol=1e-9)  # centred
        np.testing.assert_allclose(world.data.geom_xmat[geom.id].reshape(3, 3)[:, 2], [1.0, 0.0, 0.0], atol=1e-9)
        with pytest.raises(ValueError, match="5 link segments for a world built with 6 links"):
            world.set_arm_links(above[:5])
        for k in range(40):  # the forearm swept along x through the mug, 5 cm above the table
            x = mug[0] - 0.25 + 0.01 * k
            sweep = list(parked)
            sweep[2] = (np.array([x, mug[1] - 0.1, 0.05]), np.array([x, mug[1] + 0.1, 0.05]), 0.04)
            world.set_arm_links(sweep)
            world.step(0.01)
        assert np.linalg.norm(world.object_pose("mug")[0][:2] - mug[:2]) > 0.05  # pushed
    finally:
        world.close()


@pytest.mark.parametrize("name", ["lite6", "ur5e"])
def test_sim_node_keeps_the_links_and_the_gripper_on_the_arm(name: str) -> None:
    """What sim_node does at every step with an arm (``follow_arm``): every link capsule on its
    segment of the arm's current joints (the gripper's target on its TCP)."""
    from kil_sim.sim_node import follow_arm
    from kil_sim.simulated_arm import SimulatedArm
    from kil_sim.tasks import sample_configuration

    model = arm(name)
    world = sample_configuration("place_mug", "in_distribution", 0).make_world(model.link_capsules())
    try:
        moved = SimulatedArm(model, *world.commanded_tcp_pose())
        moved.command(moved.joints + 0.2)
        moved.step(1.0)
        follow_arm(world, moved)
        world.step(0.01)
        for i, (start, end, _) in enumerate(model.link_segments(moved.joints)):
            geom = world.model.geom(f"arm_link{i + 1}")
            np.testing.assert_allclose(world.data.geom_xpos[geom.id], 0.5 * (start + end), atol=1e-9)
    finally:
        world.close()


def test_an_expert_episode_is_checked_on_the_ur5e() -> None:
    checks = check_task("place_mug", "ur5e", episodes=1, settings=("in_distribution",), progress=False)
    (check,) = checks
    assert check.expert_success and check.poses > 50
    assert check.reachable, check.first_problem  # the UR5e (850 mm reach) covers place_mug's workspace
    row = summarise(checks)["place_mug"]["in_distribution"]
    assert row == {"configurations": 1, "reachable": 1, "expert_success": 1, "problems": []}


def test_the_ur5e_adapters_servo_follows_the_pour_bottle_side_grasp() -> None:
    """The expert's turn to pour_bottle's side grasp (laid out for the UR5e), upsampled to
    ur5e_node's 125 Hz, through the adapter's JointServo with the simulated arm following at its
    joint speeds: no target refused (the turn asks wrist_1 for ~6 rad/s; seeded from the
    trailing commands, the adapter refused hundreds of targets as branch jumps), and the TCP
    stays within the interpolator's 5 cm resync distance of the targets."""
    from scipy.spatial.transform import Rotation, Slerp

    from kil_sim.rollout import RolloutConfig, run_episode
    from kil_sim.simulated_arm import SimulatedArm
    from kil_sim.tasks import evaluation_configurations

    model = ur5e_arm()
    configuration = evaluation_configurations("pour_bottle", "in_distribution", 1)[0]
    configuration = configuration.shifted(model.scene_offset("pour_bottle"))
    poses: list = []
    record = lambda world, _stamp: poses.append(world.commanded_tcp_pose())  # noqa: E731
    result = run_episode(configuration, config=RolloutConfig(camera_hz=0.0, stop_on_success=True), observer=record)
    assert result.success
    rate_hz, per_tick = 125.0, 12.5
    targets = []
    for (p0, q0), (p1, q1) in itertools.pairwise(poses):
        slerp = Slerp([0.0, 1.0], Rotation.from_quat([q0, q1]))
        for t in np.arange(0.0, 1.0, 1.0 / per_tick):
            target = np.eye(4)
            target[:3, :3], target[:3, 3] = slerp(t).as_matrix(), p0 + t * (p1 - p0)
            targets.append(target)
    arm_sim = SimulatedArm(model, poses[0][0], poses[0][1])
    servo = ur.JointServo()
    tool = np.linalg.inv(model.tool)
    refused, errors = [], []
    for target in targets:
        command = servo.step(target @ tool, arm_sim.joints)
        if command.joints is None:
            refused.append(command.reason)
        else:
            assert arm_sim.command(command.joints) is None
        arm_sim.step(1.0 / rate_hz)
        errors.append(np.linalg.norm(model.forward(arm_sim.joints)[:3, 3] - target[:3, 3]))
    assert not refused, f"{len(refused)} refused, first: {refused[0]}"
    assert max(errors) < 0.05


@pytest.mark.parametrize("name", ["ur5e", "lite6"])
def test_simulated_arm_starts_on_the_home_pose_and_moves_within_its_joint_speeds(name: str) -> None:
    from kil_sim.simulated_arm import SimulatedArm

    model = arm(name)
    home = np.array([0.3, 0.05, 0.3])
    down = matrix_to_quat(DOWN)
    simulated = SimulatedArm(model, home, down)
    position, quaternion = simulated.tcp_pose()
    assert np.allclose(position, home, atol=1e-4) and abs(abs(float(np.dot(quaternion, down))) - 1) < 1e-6
    start = simulated.joints.copy()
    goal = start + np.array([0.2, -0.3, 0.4, -0.5, -0.6, 0.7])
    assert simulated.command(goal) is None
    dt = 0.01
    simulated.step(dt)
    moved = simulated.joints - start
    assert simulated.speed_limited and np.allclose(np.abs(moved), model.max_speed * dt)
    for _ in range(200):
        simulated.step(dt)
    assert np.allclose(simulated.joints, goal) and not simulated.speed_limited
    assert np.allclose(simulated.tcp_pose()[0], model.forward(goal)[:3, 3])


def test_simulated_arm_refuses_what_the_controller_would_not_follow() -> None:
    from kil_sim.simulated_arm import SimulatedArm

    model = lite6()
    simulated = SimulatedArm(model, np.array([0.25, 0.0, 0.25]), matrix_to_quat(DOWN))
    before = simulated.target.copy()
    beyond = before.copy()
    beyond[2] = 5.4  # joint3's upper limit is 5.236 rad
    assert "joint3 = 5.400 rad beyond its upper limit 5.236" in simulated.command(beyond)
    assert "not finite" in simulated.command(np.full(6, np.nan))
    assert "has 5 values; the lite6 has 6 joints" in simulated.command(np.zeros(5))
    assert simulated.refused == 3 and np.array_equal(simulated.target, before)
    with pytest.raises(ValueError, match="cannot reach the scene's gripper home pose"):
        SimulatedArm(model, np.array([0.9, 0.0, 0.2]), matrix_to_quat(DOWN))


def test_arm_cost_benchmark_times_both_arms_on_a_path_they_reach() -> None:
    """``python -m kil_sim.bench``'s ``arms`` entry: both arms solve every pose of the path it times
    (timing failures would measure the wrong thing)."""
    from kil_sim.bench import arm_costs

    costs = arm_costs("place_shoe", 0)
    assert costs["poses"] > 20
    for name in ("ur5e", "lite6"):
        assert costs[name]["solved"] == costs["poses"]
        assert costs[name]["ik_per_command_ms"] > 0 and costs[name]["step_and_fk_ms"] > 0
        assert 0 < costs[name]["cpu_share_per_simulated_s"] < 10


def test_after_a_reset_the_drivers_do_not_follow_the_stream_aimed_at_the_old_place() -> None:
    """A simulator reset places the arm anew; the stream still aimed at where the last episode
    ended is not followed (a real arm is never moved by a reset) until a target near the arm
    arrives: UR commands are dropped with a warning, xArm targets answered ret 9 without a fault."""
    import rclpy
    from std_msgs.msg import Float64MultiArray
    from xarm_msgs.srv import SetInt16, SetInt16ById

    from kil_control.lite6 import pose_to_xarm
    from kil_sim.driver_interfaces import XARM_NOT_READY, XARM_OK, UrDriverInterface, XArmDriverInterface
    from kil_sim.simulated_arm import SimulatedArm

    down = matrix_to_quat(DOWN)
    rclpy.init(args=[])
    try:
        node = rclpy.create_node("driver_reset_test")
        warnings: list[str] = []
        warn = lambda key, text: warnings.append(text)  # noqa: E731

        ur_old = SimulatedArm(arm("ur5e"), np.array([0.45, 0.15, 0.2]), down)
        ur = UrDriverInterface(node, ur_old, warn)
        old_joints = ur_old.joints.copy()
        fresh = SimulatedArm(arm("ur5e"), np.array([0.3, -0.05, 0.3]), down)
        ur.reset(fresh)
        ur._on_command(Float64MultiArray(data=list(old_joints)))  # the old stream: not followed
        assert np.allclose(fresh.target, fresh.joints) and ur.commands == 0
        assert "right after a reset: not followed" in warnings[-1]
        near = fresh.joints + 0.01
        ur._on_command(Float64MultiArray(data=list(near)))  # a command near the arm: followed
        assert np.allclose(fresh.target, near) and ur.commands == 1
        ur._on_command(Float64MultiArray(data=list(near + 0.2)))  # then the stream is the arm's again
        assert np.allclose(fresh.target, near + 0.2) and ur.commands == 2

        xarm = XArmDriverInterface(node, SimulatedArm(lite6(), np.array([0.3, 0.05, 0.25]), down), warn, print)
        xarm._on_enable(SetInt16ById.Request(id=8, data=1), SetInt16ById.Response())  # lite6_node's set-up
        xarm._on_mode(SetInt16.Request(data=1), SetInt16.Response())
        xarm._on_state(SetInt16.Request(data=0), SetInt16.Response())
        old = pose_to_xarm(*xarm.arm.tcp_pose())
        moved = SimulatedArm(lite6(), np.array([0.25, -0.05, 0.3]), down)
        xarm.reset(moved)
        ret, message = xarm.servo(old)
        assert ret == XARM_NOT_READY and "reset the arm" in message and xarm.error == 0  # no fault
        ret, message = xarm.servo(pose_to_xarm(*moved.tcp_pose()))
        assert ret == XARM_OK, message
        node.destroy_node()
    finally:
        rclpy.try_shutdown()


def test_tasks_beyond_an_arms_reach_are_laid_out_where_it_reaches() -> None:
    """place_mug's tray and place_shoe's far corner (a larger shoe) are beyond a Lite6 and
    pour_bottle's side grasp inside a UR5e's shoulder offset as the simulator lays them out; each
    arm's layout of the task (the scene moved by ``ArmModel.scene_offset``) puts every pose of the
    expert's path within the joint limits."""
    from kil_sim.arms import arm
    from kil_sim.tasks import evaluation_configurations

    config = evaluation_configurations("place_mug", "scene_variation", 1)[0]
    moved = config.shifted((-0.08, 0.05))
    assert len(moved.objects) == len(config.objects) > 2  # mug, tray and distractors all move
    for before, after in zip(config.objects, moved.objects, strict=True):
        np.testing.assert_allclose(np.subtract(after.position, before.position), [-0.08, 0.05])
        assert (after.name, after.yaw, after.model) == (before.name, before.yaw, before.model)
    assert config.shifted((0.0, 0.0)) is config
    assert arm("lite6").scene_offset("place_mug") != (0.0, 0.0) and arm("ur5e").scene_offset("place_mug") == (0.0, 0.0)
    cases = (("lite6", "place_mug", "in_distribution"), ("lite6", "place_shoe", "unseen_object"),
             ("ur5e", "pour_bottle", "in_distribution"))  # fmt: skip
    for robot, task, setting in cases:
        kwargs = dict(episodes=1, settings=(setting,), progress=False)
        (as_simulated,) = check_task(task, robot, offset_m=(0.0, 0.0), **kwargs)
        assert as_simulated.unreachable > 0 and "no " + robot + " solution" in as_simulated.first_unreachable
        (laid_out,) = check_task(task, robot, **kwargs)
        assert laid_out.unreachable == 0 and laid_out.expert_success, (robot, task, laid_out.first_problem)
