"""Why an episode failed (paper §IV-E), read from the simulator's state while it runs.

:class:`FailureMonitor` watches every control tick (``run_episode(observer=...)``): whether each
manipulated object was lifted in the gripper, fell out of it, ended up tipped over or still held,
and whether the gripper ever closed near it. :meth:`FailureMonitor.classify` then gives the
episode one class, the first of ``FAILURE_CLASSES`` that applies, and a line saying why:

- ``success``;
- ``object left the scene``: an object fell off the table or physics blew up (the episode
  ended there: ``kil_sim.tasks.left_scene``);
- ``keypoints lost or jumped``: with perceived keypoints only, the manipulated object's keypoints
  were off the ground truth by more than ``jump_fraction`` of the image width, or not found while
  visible, on more than ``lost_fraction`` of the frames before the object was dropped or knocked
  over (the policy was steered by wrong inputs; keypoints that go wrong only once the object
  fell are its consequence, not its cause: :meth:`FailureMonitor.mishap_ns`);
- ``dropped object``: lifted in the gripper (off the table), then out of it while the gripper
  was still commanded closed;
- ``object knocked over``: never lifted, ends tilted more than ``tipped_deg``;
- ``imprecise placement``: carried and released, but not as the task wants it (beside the tray,
  tipped on its rim, facing the wrong way);
- ``held at the time limit``: still in the gripper when the time ran out (never placed or poured);
- ``imprecise grasp``: the gripper closed near the object (within ``near_m`` of one of its
  keypoints) but never lifted it;
- ``time-out without a grasp``: the gripper never closed near the object.

Multi-object tasks take the class of the first object that was not handled correctly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from kil_interfaces.rotations import quat_to_matrix
from kil_sim.arm_collision import CollisionConfig, CollisionMonitor
from kil_sim.tasks import LEFT_SCENE, TaskSpec
from kil_sim.world import SimWorld

SUCCESS = "success"
#: Net contact force on the robot that a simulated arm's controller stops as a collision when it lasts
#: 20 ms (N; C31 on the Lite6, a protective stop on the UR5e: ``kil_sim.arm_collision``), which the
#: floating gripper pushes through: offline episodes are watched by the same rule
#: (``FailureMonitor.over_limit_s``).
ARM_CONTACT_LIMIT_N = CollisionConfig().force_n
FAILURE_CLASSES = (
    SUCCESS,
    LEFT_SCENE,
    "keypoints lost or jumped",
    "dropped object",
    "object knocked over",
    "imprecise placement",
    "held at the time limit",
    "imprecise grasp",
    "time-out without a grasp",
)


@dataclass(frozen=True)
class FailureThresholds:
    """Attributes:
    lift_m: an object held this far above its starting height, off the table, counts as lifted (m).
    near_m: the gripper closing within this distance of one of an object's keypoints is a grasp
        attempt (m).
    tipped_deg: an object tilted more than this at the end has been knocked over (deg).
    closed_below: commanded gripper opening (0..1) under which the gripper counts as closing.
    jump_fraction: a perceived keypoint farther than this fraction of the image width from the
        ground truth has jumped (0.05: 16 px at 320x240).
    lost_fraction: perception is at fault when more than this fraction of the frames had the
        manipulated object's keypoints jumped or lost.
    """

    lift_m: float = 0.02
    near_m: float = 0.05
    tipped_deg: float = 45.0
    closed_below: float = 0.5
    jump_fraction: float = 0.05
    lost_fraction: float = 0.25

    def __post_init__(self) -> None:
        for name in ("lift_m", "near_m", "tipped_deg", "jump_fraction", "lost_fraction"):
            if getattr(self, name) <= 0:
                raise ValueError(f"FailureThresholds.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.closed_below < 1:
            raise ValueError(f"FailureThresholds.closed_below must be in (0, 1), got {self.closed_below}")


@dataclass
class ObjectHistory:
    """What happened to one manipulated object during an episode."""

    start_z: float | None = None
    lifted: bool = False
    dropped: bool = False
    grasp_attempted: bool = False
    held_now: bool = False
    lifted_now: bool = False
    tilt_deg: float = 0.0
    dropped_ns: int | None = None  # when it first fell out of the closed gripper
    tipped_ns: int | None = None  # when it first tilted past ``tipped_deg`` before it was ever lifted


@dataclass
class Failure:
    """An episode's class (one of ``FAILURE_CLASSES``) and why, in words."""

    kind: str
    detail: str = ""
    objects: dict[str, dict] = field(default_factory=dict)


def _tilt_deg(world: SimWorld, name: str) -> float:
    rotation = quat_to_matrix(world.object_pose(name)[1])
    return math.degrees(math.acos(float(np.clip(rotation[2, 2], -1.0, 1.0))))


class FailureMonitor:
    """Watches one episode of ``spec`` (call it at every control tick), then :meth:`classify`.

    Args:
        spec: the task (its manipulated objects are ``spec.object_names()``).
        thresholds: the rules' numbers.
    """

    def __init__(self, spec: TaskSpec, thresholds: FailureThresholds | None = None) -> None:
        self.spec = spec
        self.thresholds = thresholds or FailureThresholds()
        self.history = {name: ObjectHistory() for name in spec.object_names()}
        # The floating gripper pushes through what stops a simulated arm's controller (kil_sim.
        # arm_collision: over 50 N for 20 ms, C31 or a protective stop), so an offline success may
        # be a collision there: the contact is watched after every physics step by the arms' own
        # rule (a control tick, 10 Hz, misses most grasp and placement spikes), which also keeps the
        # largest net contact force (:attr:`peak_contact_n`, :attr:`peak_contact_with`). When the
        # rule first fired (s since the first tick) and what the gripper was doing then (:meth:`phase`):
        self.over_limit_s: float | None = None
        self.over_limit_phase = ""
        self._arm_rule = CollisionMonitor(CollisionConfig(table_depth_m=-1.0))  # no links: the force rule
        self._start_s: float | None = None

    def __call__(self, world: SimWorld, stamp_ns: int) -> None:
        t = self.thresholds
        if self._start_s is None:  # the first tick: watch every physics step from now on
            self._start_s = world.time
            world.physics_observers.append(self._physics_step)
        closed = world.gripper_command() < t.closed_below
        tcp = world.tcp_pose()[0]
        for name, h in self.history.items():
            z = float(world.object_pose(name)[0][2])
            if h.start_z is None:
                h.start_z = z
            held = world.in_contact_with_gripper(name)
            lifted_now = held and z > h.start_z + t.lift_m and not world.on_table(name)
            if h.lifted_now and not held and closed:
                h.dropped = True  # out of the closed fingers: it slipped, nobody let it go
                h.dropped_ns = stamp_ns if h.dropped_ns is None else h.dropped_ns
            h.lifted = h.lifted or lifted_now
            h.held_now, h.lifted_now = held, lifted_now
            if closed and not h.grasp_attempted:
                distance = min(np.linalg.norm(p - tcp) for p in world.keypoints(name).values())
                h.grasp_attempted = distance < t.near_m
            h.tilt_deg = _tilt_deg(world, name)
            if h.tipped_ns is None and not h.lifted and h.tilt_deg > t.tipped_deg:
                h.tipped_ns = stamp_ns

    def _physics_step(self, world: SimWorld) -> None:
        """After every physics step: the arms' collision rule (which also keeps the peak contact)."""
        if self._arm_rule.update(world, [], world.time) is not None and self.over_limit_s is None:
            self.over_limit_s, self.over_limit_phase = world.time - self._start_s, self.phase()
            self._arm_rule.disarm()

    @property
    def peak_contact_n(self) -> float:
        """The largest net contact force on the robot so far (N; after every physics step)."""
        return self._arm_rule.peak_force_n

    @property
    def peak_contact_with(self) -> str:
        """What pushed hardest at :attr:`peak_contact_n` ("" when nothing touched the robot)."""
        return self._arm_rule.peak_with

    def phase(self) -> str:
        """What the gripper is doing with the manipulated objects: "approach" (none lifted yet),
        "holding" (one lifted and still in the gripper) or "after release"."""
        if not any(h.lifted for h in self.history.values()):
            return "approach"
        return "holding" if any(h.lifted and h.held_now for h in self.history.values()) else "after release"

    def mishap_ns(self) -> int | None:
        """When the first manipulated object was dropped, or knocked over (tipped before it was
        ever lifted, and never lifted after), or None: perception is judged on the frames before."""
        stamps = [h.dropped_ns for h in self.history.values() if h.dropped_ns is not None]
        stamps += [h.tipped_ns for h in self.history.values() if h.tipped_ns is not None and not h.lifted]
        return min(stamps) if stamps else None

    def classify(self, completion: float, ended: str, keypoint_fault: str = "") -> Failure:
        """The episode's class.

        Args:
            completion: the task's completion at the end (1 = success).
            ended: why the episode ended (``EpisodeResult.ended``).
            keypoint_fault: why perception was at fault ('' = it was not, or keypoints were not
                perceived), from :func:`keypoint_fault`.
        """
        objects = {name: vars(h).copy() for name, h in self.history.items()}
        if completion >= 1.0:
            return Failure(SUCCESS, ended, objects)
        if ended.startswith(LEFT_SCENE):
            return Failure(LEFT_SCENE, ended[len(LEFT_SCENE) :].lstrip(": "), objects)
        if keypoint_fault:
            return Failure("keypoints lost or jumped", keypoint_fault, objects)
        t = self.thresholds
        for name, h in self.history.items():
            if h.dropped:
                return Failure("dropped object", f"{name} fell out of the closed gripper after being lifted", objects)
            if not h.lifted and h.tilt_deg > t.tipped_deg:
                return Failure("object knocked over", f"{name} tilted {h.tilt_deg:.0f} deg, never lifted", objects)
            if h.lifted and h.held_now:
                return Failure("held at the time limit", f"{name} still in the gripper", objects)
            if h.lifted:
                return Failure("imprecise placement", f"{name} released, tilted {h.tilt_deg:.0f} deg", objects)
        # Nothing was lifted (completion < 1 with every object handled does not reach here for
        # single-object tasks; for multi-object tasks the first unhandled object decides).
        for name, h in self.history.items():
            if not h.lifted:
                if h.grasp_attempted:
                    return Failure("imprecise grasp", f"the gripper closed near {name} but never lifted it", objects)
                return Failure("time-out without a grasp", f"the gripper never closed near {name}", objects)
        return Failure("imprecise placement", "every object was lifted and released", objects)


def keypoint_fault(
    errors: np.ndarray,
    valid: np.ndarray | None,
    moving: np.ndarray,
    width: int,
    thresholds: FailureThresholds,
    stamps: np.ndarray | None = None,
    until_ns: int | None = None,
) -> str:
    """Why the manipulated object's perceived keypoints misled the policy ('' = they did not).

    Args:
        errors: (F, K) pixel error of every perceived frame's keypoints (NaN: no ground truth,
            e.g. hidden).
        valid: (F, K) whether perception found each keypoint, or None.
        moving: (K,) True for the manipulated object's keypoints.
        width: image width (px).
        stamps: (F,) each frame's time (ns), needed with ``until_ns``.
        until_ns: only the frames before this time count (the object was dropped or knocked
            over then: :meth:`FailureMonitor.mishap_ns`); None: every frame.
    """
    after = ""
    if until_ns is not None and errors.size:
        if stamps is None or len(stamps) != len(errors):
            raise ValueError(f"keypoint_fault: until_ns needs one stamp per frame ({len(errors)} frames)")
        before = np.asarray(stamps) < until_ns
        errors = errors[before]
        valid = valid[before] if valid is not None else None
        after = " before the object fell" if not before.all() else ""
    if errors.size == 0 or not moving.any():
        return ""
    limit = thresholds.jump_fraction * width
    visible = np.isfinite(errors[:, moving])
    jumped = visible & (np.nan_to_num(errors[:, moving], nan=0.0) > limit)
    lost = visible & ~valid[:, moving] if valid is not None else np.zeros_like(jumped)
    frames = visible.any(axis=1)
    bad = (jumped | lost).any(axis=1) & frames
    if not frames.any():
        return ""
    fraction = bad.sum() / frames.sum()
    if fraction <= thresholds.lost_fraction:
        return ""
    return (
        f"on {bad.sum()}/{frames.sum()} frames{after} a keypoint of the manipulated object was over {limit:.0f} px "
        f"off ({jumped.any(axis=1).sum()} frames) or not found while visible ({lost.any(axis=1).sum()} frames)"
    )
