"""Failure classes read from the simulator's state: scripted episodes that succeed, drop the mug,
knock it over, close beside it, never come near it, still hold it at the time limit, put it down
beside the tray, or lose it off the table each get their own class; perception is blamed only
when the manipulated object's keypoints were off."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from kil_eval.failures import ARM_CONTACT_LIMIT_N, FailureMonitor, FailureThresholds, keypoint_fault
from kil_interfaces.data import ActionChunkData
from kil_sim.expert import ScriptedExpert, top_grasp
from kil_sim.rollout import ExpertController, RolloutConfig, run_episode
from kil_sim.scene import TCP_DOWN
from kil_sim.tasks import TASKS, evaluation_configurations

EPISODE = evaluation_configurations("place_mug", "in_distribution", 1)[0]
_NS = 1_000_000_000


class Waypoints:
    """A scripted controller: one-pose chunks along straight lines (2 cm per 10 Hz tick) through
    (position, gripper opening) waypoints, at a fixed TCP orientation."""

    done = False

    def __init__(self, points, quaternion=TCP_DOWN) -> None:
        self.points = [(np.asarray(p, float), g) for p, g in points]
        self.quaternion = np.asarray(quaternion, float)
        self.index = 0
        self.position = None

    def act(self, world, stamp_ns: int) -> ActionChunkData:
        if self.position is None:
            self.position = world.commanded_tcp_pose()[0]
        target, gripper = self.points[min(self.index, len(self.points) - 1)]
        delta = target - self.position
        if np.linalg.norm(delta) <= 0.02:
            self.position, self.index = target, self.index + 1
        else:
            self.position = self.position + delta / np.linalg.norm(delta) * 0.02
        return ActionChunkData(
            stamp_ns=stamp_ns + _NS // 10,
            frame_id="link_base",
            step_ns=_NS // 10,
            positions=self.position[None],
            quaternions=self.quaternion[None],
            gripper=np.array([gripper], np.float32),
        )


class LooseGrip:
    """The scripted expert, except that once the mug is 4 cm up the grip loosens to 0.3 (still
    commanded closed, fingers too far apart to hold the wall): the mug slips out."""

    def __init__(self) -> None:
        self.controller = None
        self.loose = False

    @property
    def done(self) -> bool:
        return self.controller is not None and self.controller.done

    def act(self, world, stamp_ns: int) -> ActionChunkData:
        if self.controller is None:
            expert = ScriptedExpert(TASKS["place_mug"], world, np.random.default_rng(0), 10.0)
            self.controller = ExpertController(expert, 10.0, "link_base")
        chunk = self.controller.act(world, stamp_ns)
        self.loose = self.loose or world.object_pose("mug")[0][2] > 0.04
        if self.loose:
            chunk.gripper[:] = 0.3
        return chunk


def _mug():
    world = EPISODE.make_world()
    centre, rim = world.object_pose("mug")[0], world.keypoints("mug")["rim"]
    world.close()
    return centre, rim


def _classify(controller, episode=EPISODE, seconds: float = 8.0, fault: str = ""):
    monitor = FailureMonitor(TASKS["place_mug"])
    config = RolloutConfig(camera_hz=0, max_duration_s=seconds, stop_on_success=True)
    result = run_episode(episode, controller, config, observer=monitor)
    return result, monitor.classify(result.completion, result.ended, fault)


def _grasp_and_carry_to(destination: np.ndarray) -> Waypoints:
    """Grasp the mug's rim as the expert does, carry it, lower it at ``destination`` (TCP), open."""
    centre, rim = _mug()
    radial = rim[:2] - centre[:2]
    grasp = rim - [0, 0, 0.028]
    up = [0, 0, 0.12]
    points = [(grasp + up, 1.0), (grasp, 1.0), (grasp, 0.0), (grasp, 0.0), (grasp, 0.0), (grasp + up, 0.0),
              (destination + up, 0.0), (destination, 0.0), (destination, 1.0), (destination, 1.0),
              (destination + up, 1.0)]  # fmt: skip
    return Waypoints(points, top_grasp(math.atan2(radial[1], radial[0])))


def test_the_expert_succeeds() -> None:
    result, failure = _classify(None)
    assert result.success and failure.kind == "success"


def test_the_peak_contact_force_tells_a_gentle_grasp_from_pressing_the_mug_into_the_table() -> None:
    limit = ARM_CONTACT_LIMIT_N  # what a simulated arm's controller takes for a collision
    assert limit == 50.0
    monitor = FailureMonitor(TASKS["place_mug"])
    run_episode(EPISODE, None, RolloutConfig(camera_hz=0, max_duration_s=8.0, stop_on_success=True), observer=monitor)
    assert 0 < monitor.peak_contact_n < limit and monitor.peak_contact_with == "mug", monitor.peak_contact_n
    assert monitor.over_limit_s is None and monitor.over_limit_phase == ""
    centre, _ = _mug()
    press = Waypoints([(centre + [0, 0, 0.2], 1.0), (centre, 1.0), (centre, 1.0)])  # down onto the mug, to the table
    monitor = FailureMonitor(TASKS["place_mug"])
    forces = []  # (time, net contact force) after every physics step, as an arm's controller sees them

    def observe(world, stamp_ns: int) -> None:
        if not forces:
            world.physics_observers.append(lambda w: forces.append((w.time, w.robot_contact_force()[0])))
            forces.append((world.time, 0.0))
        monitor(world, stamp_ns)

    run_episode(EPISODE, press, RolloutConfig(camera_hz=0, max_duration_s=4.0), observer=observe)
    assert monitor.peak_contact_n > 10 * limit and monitor.peak_contact_with == "mug", monitor.peak_contact_n
    # watched after every physics step, not only at the 10 Hz control ticks
    assert monitor.peak_contact_n == max(f for _, f in forces)
    # the arms' rule: over the limit for 20 ms; 20 cm down at 2 cm per 0.1 s tick reaches the mug
    # after about a second, before anything was lifted
    above = next(t for t, f in forces if f > limit)
    start = forces[0][0]
    assert above + 0.02 - 1e-6 <= start + monitor.over_limit_s <= above + 0.02 + 0.01, (above, monitor.over_limit_s)
    assert 0.3 < monitor.over_limit_s < 2.0 and monitor.over_limit_phase == "approach", monitor.over_limit_s


def test_pressing_a_held_mug_into_the_table_is_over_the_limit_while_holding() -> None:
    """Where an arm would have stopped: the expert's grasp and lift, then the held mug pushed 4 cm
    down into the table (the placement of a policy that lowers too far)."""
    grasp = _grasp_and_carry_to(np.zeros(3)).points[1][0]
    quaternion = _grasp_and_carry_to(np.zeros(3)).quaternion
    up, down = np.array([0, 0, 0.12]), np.array([0, 0, -0.04])
    lower = Waypoints([(grasp + up, 1.0), (grasp, 1.0), (grasp, 0.0), (grasp, 0.0), (grasp, 0.0), (grasp + up, 0.0),
                       (grasp + down, 0.0), (grasp + down, 0.0)], quaternion)  # fmt: skip
    monitor = FailureMonitor(TASKS["place_mug"])
    run_episode(EPISODE, lower, RolloutConfig(camera_hz=0, max_duration_s=6.0), observer=monitor)
    assert monitor.history["mug"].lifted
    assert monitor.peak_contact_n > ARM_CONTACT_LIMIT_N and monitor.over_limit_phase == "holding", (
        monitor.peak_contact_n, monitor.over_limit_phase, monitor.over_limit_s)  # fmt: skip


def test_a_loosened_grip_drops_the_mug() -> None:
    monitor = FailureMonitor(TASKS["place_mug"])
    config = RolloutConfig(camera_hz=0, max_duration_s=8.0, stop_on_success=True)
    result = run_episode(EPISODE, LooseGrip(), config, observer=monitor)
    failure = monitor.classify(result.completion, result.ended)
    assert failure.kind == "dropped object", failure
    assert failure.objects["mug"]["lifted"]
    # when it fell: perception is judged on the frames before
    assert 0 < monitor.mishap_ns() == failure.objects["mug"]["dropped_ns"] < result.duration_s * _NS
    assert failure.objects["mug"]["tipped_ns"] is None


def test_a_sweep_knocks_the_mug_over() -> None:
    centre, _ = _mug()
    sweep = Waypoints([(centre + [0, -0.15, 0.18], 1.0), (centre + [0, -0.15, 0.08], 1.0),
                       (centre + [0, 0.15, 0.08], 1.0), (centre + [0, 0.15, 0.18], 1.0)])  # fmt: skip
    _, failure = _classify(sweep)
    assert failure.kind == "object knocked over", failure
    assert not failure.objects["mug"]["lifted"]
    assert failure.objects["mug"]["tipped_ns"] > 0 and failure.objects["mug"]["dropped_ns"] is None


def test_closing_beside_the_mug_is_an_imprecise_grasp_and_staying_away_a_timeout() -> None:
    centre, rim = _mug()
    beside = rim.copy()
    beside[:2] = centre[:2] + 2.0 * (rim[:2] - centre[:2])  # 4 cm beyond the rim, outside the mug
    miss = Waypoints([(beside + [0, 0, 0.1], 1.0), (beside - [0, 0, 0.03], 1.0), (beside - [0, 0, 0.03], 0.0),
                      (beside + [0, 0, 0.1], 0.0)])  # fmt: skip
    _, failure = _classify(miss)
    assert failure.kind == "imprecise grasp", failure
    _, failure = _classify(Waypoints([([0.25, 0.0, 0.25], 1.0)]), seconds=2.0)
    assert failure.kind == "time-out without a grasp", failure


def test_held_at_the_time_limit_and_placed_beside_the_tray() -> None:
    _, rim = _mug()
    grasp = rim - [0, 0, 0.028]
    result, failure = _classify(_grasp_and_carry_to(grasp + [0.0, 0.0, 0.0]), seconds=3.5)
    assert result.ended == "time limit" and failure.kind == "held at the time limit", failure
    beside = grasp + [-0.12, 0.0, 0.002]  # put down 12 cm from where it stood, far from the tray
    result, failure = _classify(_grasp_and_carry_to(beside), seconds=12.0)
    assert not result.success and failure.kind == "imprecise placement", failure


def test_a_mug_falling_off_the_table_ends_the_episode_as_left_scene() -> None:
    mug, *rest = EPISODE.objects
    off = replace(EPISODE, objects=(replace(mug, position=(0.95, 0.0)), *rest))  # beyond the edge at x = 0.9
    result, failure = _classify(Waypoints([([0.25, 0.0, 0.25], 1.0)]), episode=off, seconds=5.0)
    assert result.ended.startswith("object left the scene: mug at") and "below the table top" in result.ended
    assert result.duration_s < 2.0  # ended there, not at the time limit
    assert failure.kind == "object left the scene"


def test_perception_is_blamed_only_for_the_manipulated_objects_keypoints() -> None:
    thresholds = FailureThresholds()
    moving = np.array([True, True, False])
    good = np.array([[2.0, 3.0, 50.0]] * 10)  # the fixture's keypoint far off: not the policy's problem here
    assert keypoint_fault(good, None, moving, 320, thresholds) == ""
    jumped = good.copy()
    jumped[:4, 0] = 40.0  # 4 of 10 frames with a mug keypoint 40 px off (limit 16 px at 320 px)
    assert "4/10 frames" in keypoint_fault(jumped, None, moving, 320, thresholds)
    lost = np.ones((10, 3), bool)
    lost[:3, 1] = False  # not found while visible on 3 of 10 frames
    assert "3/10 frames" in keypoint_fault(good, lost, moving, 320, thresholds)
    hidden = good.copy()
    hidden[:5, :2] = np.nan  # hidden under the gripper: no ground truth, no blame
    assert keypoint_fault(hidden, ~np.isnan(hidden), moving, 320, thresholds) == ""
    _, failure = _classify(Waypoints([([0.25, 0.0, 0.25], 1.0)]), seconds=1.0, fault="on 4/10 frames ...")
    assert failure.kind == "keypoints lost or jumped"


def test_keypoints_that_go_wrong_only_after_the_object_fell_are_not_blamed() -> None:
    """A dropped or knocked-over object takes its keypoints with it (tracks lose it, matches jump):
    only the frames before the mishap say whether perception misled the policy."""
    thresholds, moving = FailureThresholds(), np.array([True, False])
    stamps = np.arange(10) * _NS // 10
    after = np.array([[2.0, 1.0]] * 10)
    after[6:, 0] = 40.0  # 4 of 10 frames off, all after the fall at frame 6
    assert "4/10 frames" in keypoint_fault(after, None, moving, 320, thresholds)  # every frame: blamed
    assert keypoint_fault(after, None, moving, 320, thresholds, stamps, until_ns=int(stamps[6])) == ""
    before = after[::-1].copy()  # off on frames 0-3, then the fall at frame 6: perception's fault
    blamed = keypoint_fault(before, None, moving, 320, thresholds, stamps, until_ns=int(stamps[6]))
    assert "4/6 frames before the object fell" in blamed
    assert keypoint_fault(before, None, moving, 320, thresholds, stamps, until_ns=None).startswith("on 4/10 frames a")
    with pytest.raises(ValueError, match="one stamp per frame"):
        keypoint_fault(before, None, moving, 320, thresholds, stamps[:5], until_ns=int(stamps[6]))


@pytest.mark.parametrize("field", ["lift_m", "near_m", "jump_fraction"])
def test_thresholds_are_validated(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FailureThresholds(**{field: 0.0})
