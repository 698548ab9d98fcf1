"""The simulated tasks (paper §IV-B, §IV-I, §IV-J): initial configurations and success checks.

Each task has a fixed target fixture, one or two movable objects whose position varies widely
and whose orientation varies around a canonical one, and a success criterion evaluated from the
simulator state. Evaluation uses 10 configurations per setting, fixed by seed and identical for
every policy (DESIGN: evaluation protocol):

- ``in_distribution``: the two training variants, default scene;
- ``unseen_object``: the two unseen variants (different shape, size, colour);
- ``scene_variation``: training variants with distractor objects and another table colour;
- ``generated_object``: not in the paper's table — objects generated per configuration
  (``objects.generated_variant``: sizes and colours drawn from wide ranges, none of the four
  variants), default scene: the check on objects nobody tuned to.

Demonstrations use the ``train`` setting: training variants, any seed.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from kil_interfaces.rotations import quat_to_matrix
from kil_sim import objects as obj
from kil_sim.scene import TABLE_CENTRE, TABLE_HALF_SIZE, PlacedObject, SceneConfig
from kil_sim.world import SimWorld

SETTINGS = ("train", "in_distribution", "unseen_object", "scene_variation", "generated_object")
#: The paper's Table I columns.
TABLE_SETTINGS = ("in_distribution", "unseen_object", "scene_variation")
#: Every setting an evaluation may use (all but ``train``).
EVALUATION_SETTINGS = tuple(s for s in SETTINGS if s != "train")
#: Table colours of the scene-variation setting.
_VARIATION_TABLES = ((0.35, 0.36, 0.4, 1.0), (0.85, 0.85, 0.82, 1.0), (0.42, 0.28, 0.2, 1.0))


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    Attributes:
        name: task name, e.g. "place_mug".
        category: category of the manipulated object(s).
        count: number of manipulated instances (2 for the multi-instance tasks).
        target: the fixed target fixture's model factory.
        target_position: (x, y) of the fixture (m, base frame).
        region: ((x_min, x_max), (y_min, y_max)) where objects are placed (m).
        canonical_yaw: canonical object yaw (rad).
        yaw_range: objects' yaw varies uniformly within canonical +- yaw_range (rad).
        min_separation: clearance between object footprints and from the fixture's (m).
        success: (world, state) -> completion in [0, 1], updated every control step; ``state`` is
            a dict the check may use to latch events (e.g. the pour).
    """

    name: str
    category: str
    count: int
    target: Callable[[], obj.ObjectModel]
    target_position: tuple[float, float]
    region: tuple[tuple[float, float], tuple[float, float]]
    canonical_yaw: float
    yaw_range: float
    min_separation: float
    success: Callable[[SimWorld, dict], float] = field(repr=False)

    def object_names(self) -> list[str]:
        return [self.category] if self.count == 1 else [f"{self.category}_{i}" for i in range(self.count)]

    @property
    def fixture_category(self) -> str:
        """The category of the task's fixed target (tray, box, mouse_pad, cup)."""
        return self.target().category

    @property
    def multi_instance(self) -> bool:
        return self.count > 1


@dataclass(frozen=True)
class EpisodeConfig:
    """A reproducible initial configuration.

    Attributes:
        task: task name; setting: one of ``SETTINGS``; index: configuration number; seed: RNG seed.
        objects: placed objects (manipulated ones first, then the fixture, then distractors).
        scene: scene configuration (table colour may vary).
    """

    task: str
    setting: str
    index: int
    seed: int
    objects: tuple[PlacedObject, ...]
    scene: SceneConfig

    def make_world(self, arm_links: tuple[tuple[float, float], ...] = ()) -> SimWorld:
        """The configuration's world; ``arm_links``: an arm's link capsules (``SimWorld``)."""
        return SimWorld(list(self.objects), self.scene, arm_links)

    def shifted(self, offset_m: tuple[float, float]) -> EpisodeConfig:
        """The same configuration with every object (fixture and distractors too) moved by
        ``offset_m`` (dx, dy) in the base frame (m): the task laid out for an arm whose reach
        differs (``kil_sim.arms.ArmModel.scene_offset_m``)."""
        dx, dy = (float(v) for v in offset_m)
        if dx == 0.0 and dy == 0.0:
            return self
        moved = tuple(replace(o, position=(o.position[0] + dx, o.position[1] + dy)) for o in self.objects)
        return replace(self, objects=moved)


def configuration_seed(task: str, setting: str, index: int) -> int:
    """A stable seed for (task, setting, index), the same on every machine and run."""
    return zlib.crc32(f"{task}/{setting}/{index}".encode())


def _object_yaw(world: SimWorld, name: str) -> float:
    rotation = quat_to_matrix(world.object_pose(name)[1])
    return math.atan2(rotation[1, 0], rotation[0, 0])


def _tilt(world: SimWorld, name: str) -> float:
    """Angle between the object's z axis and the vertical (rad)."""
    rotation = quat_to_matrix(world.object_pose(name)[1])
    return math.acos(float(np.clip(rotation[2, 2], -1.0, 1.0)))


def _in_fixture(world: SimWorld, name: str, fixture: str, max_z: float) -> bool:
    """Object's frame origin inside the fixture's footprint (half-sizes shrunk by 5 mm) and less
    than ``max_z`` above the fixture's base."""
    position = world.object_pose(name)[0]
    centre, quaternion = world.object_pose(fixture)
    half = np.asarray(world.objects[world.object_index(fixture)].model.footprint) - 0.005
    local = quat_to_matrix(quaternion).T @ (position - centre)
    return abs(local[0]) < half[0] and abs(local[1]) < half[1] and -0.01 < local[2] < max_z


def _released(world: SimWorld, name: str) -> bool:
    """The gripper is open and not touching the object (the object rests on its own)."""
    return world.gripper_opening() > 0.5 and not world.in_contact_with_gripper(name)


def explain(world: SimWorld, spec: TaskSpec) -> str:
    """Where the task's objects are, in words (for a failed episode's reason): each object's
    distance from the fixture's centre, tilt, and whether the gripper still touches it."""
    fixture = next(o.name for o in world.objects if not o.model.movable)
    centre = world.object_pose(fixture)[0]
    parts = []
    for name in spec.object_names():
        distance = float(np.linalg.norm(world.object_pose(name)[0][:2] - centre[:2]))
        held = "held" if world.in_contact_with_gripper(name) else "not held"
        tilt = math.degrees(_tilt(world, name))
        parts.append(f"{name} {100 * distance:.0f} cm from the {fixture} centre, tilted {tilt:.0f} deg, {held}")
    return "; ".join(parts)


#: An object this far below the table top has fallen off it; this far above, physics blew up (m).
_BELOW_TABLE_M = 0.05
_ABOVE_TABLE_M = 1.0
LEFT_SCENE = "object left the scene"


def left_scene(world: SimWorld) -> str | None:
    """Why a movable object has left the tabletop scene (fallen off the table, thrown beyond its
    edge or far above it, or a non-finite pose after a physics blow-up), or None while every
    movable object is on or above the table. The text starts with ``LEFT_SCENE``."""
    (cx, cy), (hx, hy) = TABLE_CENTRE, TABLE_HALF_SIZE
    for placed in world.objects:
        if not placed.model.movable:
            continue
        position = world.object_pose(placed.name)[0]
        where = f"{placed.name} at ({position[0]:.2f}, {position[1]:.2f}, {position[2]:.2f}) m"
        if not np.all(np.isfinite(position)):
            return f"{LEFT_SCENE}: {placed.name} has a non-finite position (physics blew up)"
        if position[2] < -_BELOW_TABLE_M:
            return f"{LEFT_SCENE}: {where}, below the table top (fell off the table)"
        if abs(position[0] - cx) > hx or abs(position[1] - cy) > hy:
            return f"{LEFT_SCENE}: {where}, beyond the table's edge"
        if position[2] > _ABOVE_TABLE_M:
            return f"{LEFT_SCENE}: {where}, {_ABOVE_TABLE_M:.0f} m above the table (physics blew up)"
    return None


def _fraction(done: list[bool]) -> float:
    return sum(done) / len(done)


def _place_upright_on(fixture: str, max_tilt_deg: float = 20.0):
    def check(world: SimWorld, state: dict) -> float:
        names = [o.name for o in world.objects if o.name != fixture and not o.name.startswith("distractor")]
        return _fraction(
            [
                _in_fixture(world, n, fixture, 0.05)
                and _tilt(world, n) < math.radians(max_tilt_deg)
                and _released(world, n)
                for n in names
            ]
        )

    return check


def _pens_in_box(world: SimWorld, state: dict) -> float:
    names = [o.name for o in world.objects if o.model.category == "pen"]
    return _fraction([_in_fixture(world, n, "box", 0.04) and _released(world, n) for n in names])


def _mouse_on_pad_facing_camera(world: SimWorld, state: dict) -> float:
    # "Facing the scene camera with the scroll wheel": the mouse's front (+x) points towards the
    # camera (+x of the base frame) within 30 degrees.
    yaw_error = abs(math.remainder(_object_yaw(world, "mouse"), 2 * math.pi))
    on_pad = _in_fixture(world, "mouse", "mouse_pad", 0.03) and _tilt(world, "mouse") < math.radians(20)
    return float(on_pad and yaw_error < math.radians(30) and _released(world, "mouse"))


def _shoes_on_tray(world: SimWorld, state: dict) -> float:
    # On the tray, upright, long axis within 30 degrees of the tray's y axis (either direction).
    names = [o.name for o in world.objects if o.model.category == "shoe"]
    done = []
    for n in names:
        axis_error = abs(math.remainder(_object_yaw(world, n) - math.pi / 2, math.pi))
        done.append(
            _in_fixture(world, n, "tray", 0.05)
            and _tilt(world, n) < math.radians(25)
            and axis_error < math.radians(30)
            and _released(world, n)
        )
    return _fraction(done)


def _poured(world: SimWorld, state: dict) -> float:
    # Latches once the bottle's mouth is over the cup opening while tilted past horizontal.
    if state.get("poured"):
        return 1.0
    mouth = world.keypoints("bottle")["mouth"]
    cup_top = world.keypoints("cup")["centre"]
    over = np.linalg.norm(mouth[:2] - cup_top[:2]) < 0.045 and cup_top[2] < mouth[2] < cup_top[2] + 0.12
    state["poured"] = bool(over and _tilt(world, "bottle") > math.radians(95))
    return float(state["poured"])


_SPECS = [
    TaskSpec("place_mug", "mug", 1, obj.tray, (0.36, -0.24), ((0.26, 0.46), (-0.05, 0.22)), math.pi / 2,
             math.radians(20), 0.04, _place_upright_on("tray")),
    TaskSpec("pick_pen", "pen", 1, obj.paper_box, (0.36, -0.25), ((0.24, 0.46), (-0.08, 0.22)), math.pi / 2,
             math.radians(20), 0.04, _pens_in_box),
    TaskSpec("place_mouse", "mouse", 1, obj.mouse_pad, (0.38, -0.22), ((0.24, 0.46), (0.0, 0.22)), 0.0,
             math.radians(20), 0.04, _mouse_on_pad_facing_camera),
    TaskSpec("pour_bottle", "bottle", 1, obj.cup, (0.36, -0.16), ((0.26, 0.46), (0.02, 0.2)), 0.0,
             math.radians(20), 0.06, _poured),
    TaskSpec("place_shoe", "shoe", 1, lambda: obj.tray("shoe_tray", half_size=(0.17, 0.16)), (0.38, -0.27),
             ((0.26, 0.46), (0.0, 0.2)), 0.0, math.radians(20), 0.04, _shoes_on_tray),
    TaskSpec("place_2_shoes", "shoe", 2, lambda: obj.tray("shoe_tray", half_size=(0.17, 0.16)), (0.38, -0.27),
             ((0.24, 0.48), (0.0, 0.26)), 0.0, math.radians(15), 0.05, _shoes_on_tray),
    TaskSpec("pick_2_pens", "pen", 2, obj.paper_box, (0.36, -0.25), ((0.24, 0.46), (-0.08, 0.22)), math.pi / 2,
             math.radians(20), 0.05, _pens_in_box),
]  # fmt: skip
# Full-rotation variants (§IV-J): orientation varied over +-180 degrees.
_SPECS += [
    replace(_SPECS[1], name="pick_pen_rotation", yaw_range=math.pi),
    replace(_SPECS[2], name="place_mouse_rotation", yaw_range=math.pi),
]
TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in _SPECS}


def task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


def _target_name(spec: TaskSpec) -> str:
    return {"tray": "tray", "box": "box", "mouse_pad": "mouse_pad", "cup": "cup"}[spec.target().category]


def sample_configuration(
    task_name: str, setting: str, index: int, yaw_range: float | None = None, scene: SceneConfig | None = None
) -> EpisodeConfig:
    """The initial configuration ``index`` of a task in a setting (deterministic).

    Args:
        yaw_range: override the task's orientation range (rad), e.g. for the rotation study.
        scene: base scene configuration (camera, gripper); the setting may change the table colour.
    """
    spec = task(task_name)
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; known: {SETTINGS}")
    seed = configuration_seed(task_name, setting, index)
    rng = np.random.default_rng(seed)
    scene = scene or SceneConfig()
    yaw_range = spec.yaw_range if yaw_range is None else yaw_range
    fixture = PlacedObject(_target_name(spec), spec.target(), spec.target_position)
    occupied = [fixture]
    placed: list[PlacedObject] = []
    variants = (2, 3) if setting == "unseen_object" else (0, 1)
    first_variant = int(rng.integers(2))
    for k, name in enumerate(spec.object_names()):
        if setting == "generated_object":
            model = obj.generated_variant(spec.category, rng, f"{spec.category}_generated_{index}_{k}")
        else:
            model = obj.variant(spec.category, variants[(first_variant + k) % 2])
        candidate = _free_placement(
            rng, name, model, spec.region, spec.canonical_yaw, yaw_range, occupied, spec.min_separation
        )
        occupied.append(candidate)
        placed.append(candidate)
    extras: list[PlacedObject] = []
    if setting == "scene_variation":
        scene = replace(scene, table_rgba=_VARIATION_TABLES[index % len(_VARIATION_TABLES)])
        for d, make in enumerate(obj.DISTRACTORS[: 1 + index % 3]):
            region = ((0.15, 0.55), (-0.35, 0.35))
            candidate = _free_placement(rng, f"distractor_{d}", make(), region, 0.0, math.pi, occupied, 0.05)
            occupied.append(candidate)
            extras.append(candidate)
    return EpisodeConfig(task_name, setting, index, seed, (*placed, fixture, *extras), scene)


def _corners(placed: PlacedObject, margin: float) -> np.ndarray:
    hx, hy = (h + 0.5 * margin for h in placed.model.footprint)
    c, s = math.cos(placed.yaw), math.sin(placed.yaw)
    local = np.array([[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy]])
    return local @ np.array([[c, s], [-s, c]]) + np.asarray(placed.position)


def _overlap(a: PlacedObject, b: PlacedObject, margin: float) -> bool:
    """Separating-axis test of the two footprint rectangles, each grown by margin / 2."""
    ca, cb = _corners(a, margin), _corners(b, margin)
    for corners in (ca, cb):
        for i in range(2):
            axis = corners[i + 1] - corners[i]
            axis = np.array([-axis[1], axis[0]])
            pa, pb = ca @ axis, cb @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


def _free_placement(rng, name, model, region, canonical_yaw, yaw_range, occupied, margin) -> PlacedObject:
    (x0, x1), (y0, y1) = region
    for _ in range(2000):
        candidate = PlacedObject(
            name,
            model,
            (float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1))),
            float(canonical_yaw + rng.uniform(-yaw_range, yaw_range)),
        )
        if not any(_overlap(candidate, other, margin) for other in occupied):
            return candidate
    raise RuntimeError(f"no free placement for {name} in region {region} with clearance {margin} m")


def evaluation_configurations(task_name: str, setting: str, count: int = 10) -> list[EpisodeConfig]:
    """The fixed evaluation configurations of a setting (10 per setting in the paper's protocol)."""
    if setting == "train":
        raise ValueError(f"evaluation uses one of {', '.join(EVALUATION_SETTINGS)}, not train")
    return [sample_configuration(task_name, setting, i) for i in range(count)]
