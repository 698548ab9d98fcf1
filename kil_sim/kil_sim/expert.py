"""Scripted experts: per-task demonstrators that act through the teleoperation interface.

An expert emits one TCP target (position, orientation, gripper) every control period (10 Hz),
exactly what ``teleop_node`` publishes as a one-pose ``ActionChunk``; the targets then go
through ``kil_control.interpolation`` like any other command. Each task is a generator of
waypoints that reads the simulator state when it reaches each phase (so multi-object tasks
re-plan after the first object); motion between waypoints follows a minimum-jerk profile.
Human-like variation comes from an :class:`ExpertStyle` sampled per episode: speed, approach
height, pauses and small placement offsets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from kil_interfaces.rotations import matrix_to_quat, quat_angle, quat_slerp, quat_to_matrix
from kil_sim.tasks import TaskSpec
from kil_sim.world import SimWorld

OPEN, CLOSED = 1.0, 0.0


@dataclass(frozen=True)
class ExpertStyle:
    """Per-episode variation of the demonstrator.

    Attributes:
        speed: cruise TCP speed (m/s).
        turn_speed: wrist rotation speed (rad/s).
        approach_height: height of the pre-grasp pose above the grasp (m).
        lift_height: transport height of the TCP above the table (m).
        pause_s: pause after closing / opening the gripper (s).
        place_offset: (2,) small xy offset of placements (m).
    """

    speed: float = 0.2
    turn_speed: float = 1.2
    approach_height: float = 0.1
    lift_height: float = 0.22
    pause_s: float = 0.4
    place_offset: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> ExpertStyle:
        return cls(
            speed=float(rng.uniform(0.15, 0.26)),
            turn_speed=float(rng.uniform(0.9, 1.5)),
            approach_height=float(rng.uniform(0.07, 0.12)),
            lift_height=float(rng.uniform(0.2, 0.25)),
            pause_s=float(rng.uniform(0.3, 0.6)),
            place_offset=tuple(rng.normal(0.0, 0.006, size=2).tolist()),
        )


@dataclass(frozen=True)
class Waypoint:
    """A TCP goal; ``hold_s`` is spent there after arriving (e.g. for the gripper to close)."""

    position: np.ndarray
    quaternion: np.ndarray
    gripper: float
    hold_s: float = 0.0
    speed_scale: float = 1.0


def top_grasp(closing_yaw: float) -> np.ndarray:
    """TCP quaternion pointing down with the fingers closing along (cos a, sin a, 0).

    Of the two equivalent yaws (a, a + pi) the one nearest the home orientation is used.
    """
    a = math.remainder(closing_yaw + math.pi / 2, math.pi) - math.pi / 2
    y = np.array([math.cos(a), math.sin(a), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    return matrix_to_quat(np.stack([np.cross(y, z), y, z], axis=1))


def side_grasp(approach: np.ndarray) -> np.ndarray:
    """TCP quaternion approaching horizontally along ``approach`` (xy), fingers closing horizontally."""
    z = np.array([approach[0], approach[1], 0.0]) / np.hypot(approach[0], approach[1])
    y = np.cross(np.array([0.0, 0.0, 1.0]), z)
    return matrix_to_quat(np.stack([np.cross(y, z), y, z], axis=1))


def yaw_of(world: SimWorld, name: str) -> float:
    rotation = quat_to_matrix(world.object_pose(name)[1])
    return math.atan2(rotation[1, 0], rotation[0, 0])


def rotate_z(quaternion: np.ndarray, angle: float) -> np.ndarray:
    """Rotate an orientation about the base z axis by ``angle`` (rad)."""
    c, s = math.cos(angle), math.sin(angle)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return matrix_to_quat(rz @ quat_to_matrix(quaternion))


def _rz(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


HALF_TURN_DOT = 0.02
"""|q0 . q1| below this (within ~2.3 deg of a half turn): the turn goes the way the waypoint is written."""


def _canonical(quaternion: np.ndarray) -> np.ndarray:
    """(4,) the sign of ``quaternion`` whose largest-magnitude component is positive."""
    q = np.asarray(quaternion, np.float64)
    return q if q[int(np.argmax(np.abs(q)))] >= 0.0 else -q


def _turn(q0: np.ndarray, q1: np.ndarray, s: float) -> np.ndarray:
    """(4,) orientation at fraction ``s`` of the turn from q0 to q1 (x, y, z, w).

    The shorter arc, except near a half turn, where both arcs are as long and the shorter one is
    decided by the sign of noise on q0 (an arm's forward kinematics): there the turn follows q1 as
    written (no sign flip), so a demonstration turns the same way on every robot.
    """
    dot = float(np.dot(q0, q1))
    if abs(dot) >= HALF_TURN_DOT:
        return quat_slerp(q0, q1, s)
    theta = math.acos(dot)  # in (pi/2 - 0.02, pi/2 + 0.02): sin(theta) is ~1
    out = math.sin((1.0 - s) * theta) * np.asarray(q0) + math.sin(s * theta) * np.asarray(q1)
    return out / np.linalg.norm(out)


class ScriptedExpert:
    """Drives one episode of a task; call :meth:`act` once per control period.

    Args:
        spec: the task.
        world: the simulator (read for object poses as phases begin).
        rng: randomness of this demonstration (style and small variations).
        rate_hz: control rate (10 Hz, the policy's action clock).
    """

    def __init__(self, spec: TaskSpec, world: SimWorld, rng: np.random.Generator, rate_hz: float = 10.0) -> None:
        self.spec = spec
        self.world = world
        self.rng = rng
        self.style = ExpertStyle.sample(rng)
        self.dt = 1.0 / rate_hz
        position, quaternion = world.commanded_tcp_pose()
        self._position, self._quaternion, self._gripper = position, _canonical(quaternion), OPEN
        self._queue: list[tuple[np.ndarray, np.ndarray, float]] = []
        self._waypoints = _PLANS[spec.category](self)
        self.done = False

    def act(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The next 10 Hz target: TCP position (3,), quaternion (4,), gripper opening 0..1."""
        while not self._queue and not self.done:
            try:
                self._queue = self._segment(next(self._waypoints))
            except StopIteration:
                self.done = True
        if self._queue:
            self._position, self._quaternion, self._gripper = self._queue.pop(0)
        return self._position.copy(), self._quaternion.copy(), self._gripper

    def _segment(self, wp: Waypoint) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Minimum-jerk motion from the last target to ``wp``, then the hold."""
        distance = float(np.linalg.norm(wp.position - self._position))
        angle = float(quat_angle(self._quaternion, wp.quaternion))
        duration = max(distance / (self.style.speed * wp.speed_scale), angle / self.style.turn_speed, 0.3)
        if distance < 1e-6 and angle < 1e-6:
            duration = 0.0
        steps = max(1, math.ceil(duration / self.dt)) if duration > 0 else 0
        out = []
        start_p, start_q, start_g = self._position, self._quaternion, self._gripper
        for i in range(1, steps + 1):
            tau = i / steps
            s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
            out.append(
                (
                    start_p + s * (wp.position - start_p),
                    _turn(start_q, wp.quaternion, s),
                    start_g + s * (wp.gripper - start_g),
                )
            )
        hold = round(wp.hold_s / self.dt)
        out += [(wp.position.copy(), np.asarray(wp.quaternion, float), wp.gripper)] * hold
        if not out:  # already there: a single target keeps the clock ticking
            out = [(wp.position.copy(), np.asarray(wp.quaternion, float), wp.gripper)]
        return out

    # --- shared motions -------------------------------------------------------------------------

    def pick(self, grasp: np.ndarray, quaternion: np.ndarray, approach: np.ndarray | None = None) -> Iterator[Waypoint]:
        """Pre-grasp above (or along ``approach``), descend, close, lift."""
        style = self.style
        pre = grasp + (np.array([0.0, 0.0, style.approach_height]) if approach is None else approach)
        yield Waypoint(pre, quaternion, OPEN)
        yield Waypoint(grasp, quaternion, OPEN, speed_scale=0.5)
        yield Waypoint(grasp, quaternion, CLOSED, hold_s=style.pause_s)
        lift = grasp.copy()
        lift[2] = max(style.lift_height, grasp[2] + 0.08)
        if approach is not None:
            lift[2] = grasp[2] + 0.12
        yield Waypoint(lift, quaternion, CLOSED)

    def place(self, release: np.ndarray, quaternion: np.ndarray) -> Iterator[Waypoint]:
        """Move above the release pose at transport height, descend, open, retreat."""
        above = release.copy()
        above[2] = max(self.style.lift_height, release[2] + 0.05)
        yield Waypoint(above, quaternion, CLOSED)
        yield Waypoint(release, quaternion, CLOSED, speed_scale=0.5)
        yield Waypoint(release, quaternion, OPEN, hold_s=self.style.pause_s)
        retreat = release.copy()
        retreat[2] = release[2] + self.style.approach_height
        yield Waypoint(retreat, quaternion, OPEN)

    def fixture(self) -> str:
        return next(o.name for o in self.world.objects if not o.model.movable)

    def remaining(self) -> list[str]:
        """The task's objects, nearest the camera (largest x) first."""
        names = self.spec.object_names()
        return sorted(names, key=lambda n: -self.world.object_pose(n)[0][0])

    def slot(self, index: int, spacing: np.ndarray) -> np.ndarray:
        """Placement xy of object ``index`` on the fixture (side by side for two objects)."""
        centre = self.world.object_pose(self.fixture())[0][:2] + np.asarray(self.style.place_offset)
        if self.spec.count == 1:
            return centre
        return centre + (index - 0.5 * (self.spec.count - 1)) * spacing


# --- per-category plans ---------------------------------------------------------------------------


def _plan_mug(expert: ScriptedExpert) -> Iterator[Waypoint]:
    world = expert.world
    centre = world.object_pose("mug")[0]
    rim = world.keypoints("mug")["rim"]
    radial = rim[:2] - centre[:2]
    quaternion = top_grasp(math.atan2(radial[1], radial[0]))
    grasp = np.array([rim[0], rim[1], rim[2] - 0.028])
    yield from expert.pick(grasp, quaternion)
    offset = grasp - centre  # TCP relative to the mug's base centre; constant while carried
    target = np.append(expert.slot(0, np.zeros(2)), world.keypoints(expert.fixture())["centre"][2] + 0.012) + offset
    yield from expert.place(target, quaternion)


def _plan_pen(expert: ScriptedExpert) -> Iterator[Waypoint]:
    world = expert.world
    box_top = world.keypoints("box")["near_right"][2]
    for index, name in enumerate(expert.remaining()):
        centre = world.object_pose(name)[0]
        radius = world.keypoints(name)["centre"][2] - centre[2]
        quaternion = top_grasp(yaw_of(world, name) + math.pi / 2)
        grasp = np.array([centre[0], centre[1], centre[2] + max(0.003, 0.45 * radius)])
        yield from expert.pick(grasp, quaternion)
        # Carry the pen with its axis along the box's long (x) axis: fingers close along y.
        carry = top_grasp(math.pi / 2)
        release = np.append(expert.slot(index, np.array([0.0, 0.05])), box_top + 0.025)
        yield from expert.place(release, carry)


def _plan_mouse(expert: ScriptedExpert) -> Iterator[Waypoint]:
    world = expert.world
    centre = world.object_pose("mouse")[0]
    yaw = yaw_of(world, "mouse")
    quaternion = top_grasp(yaw + math.pi / 2)
    grasp = centre + np.array([0.0, 0.0, 0.012])
    yield from expert.pick(grasp, quaternion)
    # Turn the mouse to face the camera (+x): rotate the TCP about z by the yaw error.
    turned = rotate_z(quaternion, -math.remainder(yaw, 2 * math.pi))
    pad_top = world.keypoints("mouse_pad")["centre"][2]
    release = np.append(expert.slot(0, np.zeros(2)), pad_top + 0.012 + 0.006)
    yield from expert.place(release, turned)


def _plan_bottle(expert: ScriptedExpert) -> Iterator[Waypoint]:
    world = expert.world
    base = world.object_pose("bottle")[0]
    mouth = world.keypoints("bottle")["mouth"]
    height = mouth[2] - base[2]
    approach = np.array([1.0, 0.0])  # from the robot's side, along +x
    quaternion = side_grasp(approach)
    grasp = base + np.array([0.0, 0.0, 0.45 * height])
    yield from expert.pick(grasp, quaternion, approach=np.array([-0.1, 0.0, 0.0]))
    lifted = grasp + np.array([0.0, 0.0, 0.12])
    mouth_offset = mouth - grasp  # TCP -> mouth, tilted with the gripper below
    cup_top = world.keypoints("cup")["centre"]
    tilt = math.radians(expert.rng.uniform(112.0, 122.0))
    direction = 1.0 if cup_top[1] < base[1] else -1.0  # rotating +x tilts the top towards -y
    c, s = math.cos(direction * tilt), math.sin(direction * tilt)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    pour_at = cup_top + np.array([0.0, 0.0, 0.055]) - rx @ mouth_offset
    upright_over = pour_at.copy()
    yield Waypoint(upright_over, quaternion, CLOSED)
    tilted = matrix_to_quat(rx @ quat_to_matrix(quaternion))
    yield Waypoint(pour_at, tilted, CLOSED, hold_s=1.0, speed_scale=0.6)
    yield Waypoint(upright_over, quaternion, CLOSED)
    yield Waypoint(lifted, quaternion, CLOSED)
    yield Waypoint(grasp + np.array([0.0, 0.0, 0.005]), quaternion, CLOSED, speed_scale=0.5)
    yield Waypoint(grasp + np.array([0.0, 0.0, 0.005]), quaternion, OPEN, hold_s=expert.style.pause_s)
    yield Waypoint(grasp + np.array([-0.1, 0.0, 0.005]), quaternion, OPEN)


def _plan_shoe(expert: ScriptedExpert) -> Iterator[Waypoint]:
    world = expert.world
    tray_top = world.keypoints("tray")["centre"][2]
    for index, name in enumerate(expert.remaining()):
        centre = world.object_pose(name)[0]
        heel = world.keypoints(name)["heel"]
        yaw = yaw_of(world, name)
        quaternion = top_grasp(yaw)  # fingers close across the heel wall, along the shoe's axis
        grasp = np.array([heel[0], heel[1], heel[2] - 0.03])
        yield from expert.pick(grasp, quaternion)
        # Turn the shoe's long axis onto the tray's y axis (the nearer of +-90 degrees).
        turn = math.remainder(math.pi / 2 - yaw, math.pi)
        offset = _rz(turn) @ (centre - grasp)  # grasp -> shoe centre after the turn
        spot = expert.slot(index, np.array([0.085, 0.0]))
        release = np.array([spot[0] - offset[0], spot[1] - offset[1], tray_top + 0.012 - offset[2]])
        yield from expert.place(release, rotate_z(quaternion, turn))


_PLANS = {"mug": _plan_mug, "pen": _plan_pen, "mouse": _plan_mouse, "bottle": _plan_bottle, "shoe": _plan_shoe}
