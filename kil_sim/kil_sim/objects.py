"""Object models of the simulated tasks, built from MuJoCo primitives.

Each model is an MJCF ``<body>`` (with a free joint when movable) whose frame sits at the
centre of the object's footprint on the table, z up, plus the ground-truth semantic keypoints in
that frame (the ``oracle`` keypoint source, and the reference for scoring perception).
Variants of a category differ in shape, size and colour (two for training, two unseen), and
:func:`generated_variant` draws any number more, of sizes and colours no one chose.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ObjectModel:
    """One object instance's geometry, keypoints and physical properties.

    Attributes:
        category: object category, e.g. "mug" (matches the keypoint spec).
        variant: variant name, e.g. "mug_blue".
        geoms: MJCF ``<geom>`` elements in the object frame (m).
        keypoints: keypoint name -> (3,) position in the object frame (m).
        mass: total mass (kg), spread over the geoms by volume.
        movable: False for fixtures (trays, pads): no free joint.
        footprint: half-extents (x, y) of a rectangle centred on the frame origin that covers
            the object on the table (m); placements keep these apart.
    """

    category: str
    variant: str
    geoms: tuple[str, ...]
    keypoints: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    mass: float = 0.1
    movable: bool = True
    footprint: tuple[float, float] = (0.05, 0.05)

    def body_xml(self, name: str, position: np.ndarray, yaw: float) -> str:
        """The MJCF body of this object named ``name`` at ``position`` (m) rotated by ``yaw`` (rad)."""
        x, y, z = (float(v) for v in position)
        joint = f'<freejoint name="{name}_joint"/>' if self.movable else ""
        geoms = "".join(geom.replace("<geom ", f'<geom name="{name}_g{i}" ', 1) for i, geom in enumerate(self.geoms))
        mass = f'<inertial pos="0 0 {self._centre_height():.4f}" mass="{self.mass}" diaginertia="{self._inertia()}"/>'
        return (
            f'<body name="{name}" pos="{x:.6f} {y:.6f} {z:.6f}" euler="0 0 {yaw:.9f}">'
            f"{joint}{mass if self.movable else ''}{geoms}</body>"
        )

    def _centre_height(self) -> float:
        heights = [p[2] for p in self.keypoints.values()] or [0.0]
        return 0.5 * max(heights)

    def _inertia(self) -> str:
        # A solid-cylinder-like estimate from the keypoints' spread; adequate for grasping.
        pts = np.array(list(self.keypoints.values()) or [(0.0, 0.0, 0.0)])
        r = max(0.01, float(np.max(np.linalg.norm(pts[:, :2], axis=1))))
        h = max(0.01, float(np.max(pts[:, 2])))
        ixx = self.mass * (3 * r * r + h * h) / 12.0
        izz = self.mass * r * r / 2.0
        return f"{ixx:.6g} {ixx:.6g} {izz:.6g}"


def _rgba(colour: tuple[float, float, float]) -> str:
    return f"{colour[0]:.3f} {colour[1]:.3f} {colour[2]:.3f} 1"


_GRIP = 'friction="1.2 0.01 0.001" condim="4"'


def _box(half, pos, colour, grip: bool = True, euler: tuple[float, float, float] | None = None) -> str:
    rot = "" if euler is None else f' euler="{euler[0]:.6f} {euler[1]:.6f} {euler[2]:.6f}"'
    return (
        f'<geom type="box" size="{half[0]:.4f} {half[1]:.4f} {half[2]:.4f}" '
        f'pos="{pos[0]:.4f} {pos[1]:.4f} {pos[2]:.4f}"{rot} rgba="{_rgba(colour)}"{" " + _GRIP if grip else ""}/>'
    )


def _hollow_cylinder(radius, height, wall, colour, segments: int = 20, bottom: bool = True) -> list[str]:
    """A ring of ``segments`` wall boxes (outer radius ``radius``) with an optional bottom disc."""
    geoms = []
    mid = radius - 0.5 * wall
    half_chord = mid * math.tan(math.pi / segments) + 0.5 * wall
    for i in range(segments):
        a = 2 * math.pi * i / segments
        geoms.append(
            _box(
                (0.5 * wall, half_chord, 0.5 * height),
                (mid * math.cos(a), mid * math.sin(a), 0.5 * height),
                colour,
                euler=(0.0, 0.0, a),
            )
        )
    if bottom:
        geoms.append(
            f'<geom type="cylinder" size="{radius:.4f} {0.5 * wall:.4f}" pos="0 0 {0.5 * wall:.4f}" '
            f'rgba="{_rgba(colour)}" {_GRIP}/>'
        )
    return geoms


def _open_box(half_x, half_y, height, wall, colour) -> list[str]:
    """A rectangular container: bottom plate and four walls (outer half-sizes half_x, half_y)."""
    return [
        _box((half_x, half_y, 0.5 * wall), (0, 0, 0.5 * wall), colour),
        _box((0.5 * wall, half_y, 0.5 * height), (half_x - 0.5 * wall, 0, 0.5 * height), colour),
        _box((0.5 * wall, half_y, 0.5 * height), (-half_x + 0.5 * wall, 0, 0.5 * height), colour),
        _box((half_x, 0.5 * wall, 0.5 * height), (0, half_y - 0.5 * wall, 0.5 * height), colour),
        _box((half_x, 0.5 * wall, 0.5 * height), (0, -half_y + 0.5 * wall, 0.5 * height), colour),
    ]


def _corners(half_x: float, half_y: float, z: float) -> dict[str, tuple[float, float, float]]:
    """The four top corners of a rectangular fixture, named as the scene camera sees them at yaw 0
    (the camera looks along the base frame's -x: near = +x, image right = +y)."""
    return {
        "near_left": (half_x, -half_y, z),
        "near_right": (half_x, half_y, z),
        "far_left": (-half_x, -half_y, z),
        "far_right": (-half_x, half_y, z),
    }


def mug(
    variant: str,
    radius: float = 0.04,
    height: float = 0.09,
    wall: float = 0.006,
    colour: tuple[float, float, float] = (0.2, 0.35, 0.8),
    handle: float = 0.035,
) -> ObjectModel:
    """An upright mug: a hollow cylinder (outer ``radius``) with a bottom and a handle at +x.

    Keypoints: ``rim`` (wall top opposite the handle: the grasp point), ``handle`` (middle of the
    handle's top bar), ``base`` (bottom centre), ``opening`` (centre of the top opening), ``body``
    and ``body_low`` (the outer wall a quarter turn from the handle — the side the scene camera
    sees at the canonical yaw — at half and a fifth of the height).
    """
    hx = radius + 0.5 * handle - 0.002
    geoms = [
        *_hollow_cylinder(radius, height, wall, colour),
        _box((0.5 * handle, 0.006, 0.005), (hx, 0, 0.8 * height), colour),
        _box((0.5 * handle, 0.006, 0.005), (hx, 0, 0.25 * height), colour),
        _box((0.005, 0.006, 0.275 * height), (radius + handle - 0.005, 0, 0.525 * height), colour),
    ]
    return ObjectModel(
        category="mug",
        variant=variant,
        footprint=(radius + handle, radius),
        geoms=tuple(geoms),
        keypoints={
            "rim": (-radius + 0.5 * wall, 0.0, height),
            "handle": (hx, 0.0, 0.8 * height + 0.005),
            "base": (0.0, 0.0, 0.0),
            "opening": (0.0, 0.0, height),
            "body": (0.0, -radius, 0.5 * height),
            "body_low": (0.0, -radius, 0.2 * height),
        },
        mass=0.25,
    )


def block(
    variant: str = "block",
    size: tuple[float, float, float] = (0.025, 0.025, 0.025),
    colour: tuple[float, float, float] = (0.85, 0.2, 0.2),
    mass: float = 0.1,
) -> ObjectModel:
    """A box of half-sizes ``size`` (m) resting on its bottom face (also a distractor)."""
    sx, sy, sz = size
    return ObjectModel(
        category="block",
        variant=variant,
        footprint=(sx, sy),
        geoms=(_box(size, (0, 0, sz), colour),),
        keypoints={"top": (0.0, 0.0, 2 * sz), "bottom": (0.0, 0.0, 0.0), "corner": (sx, sy, 2 * sz)},
        mass=mass,
    )


def ball(variant: str = "ball", radius: float = 0.03, colour=(0.2, 0.7, 0.3)) -> ObjectModel:
    """A ball (distractor)."""
    return ObjectModel(
        category="ball",
        variant=variant,
        footprint=(radius, radius),
        geoms=(f'<geom type="sphere" size="{radius}" pos="0 0 {radius}" rgba="{_rgba(colour)}" {_GRIP}/>',),
        keypoints={"top": (0.0, 0.0, 2 * radius), "centre": (0.0, 0.0, radius)},
        mass=0.05,
    )


def can(variant: str = "can", radius: float = 0.033, height: float = 0.12, colour=(0.8, 0.8, 0.2)) -> ObjectModel:
    """A closed cylinder can (distractor)."""
    return ObjectModel(
        category="can",
        variant=variant,
        footprint=(radius, radius),
        geoms=(
            f'<geom type="cylinder" size="{radius} {0.5 * height}" pos="0 0 {0.5 * height}" '
            f'rgba="{_rgba(colour)}" {_GRIP}/>',
        ),
        keypoints={"top": (0.0, 0.0, height), "bottom": (0.0, 0.0, 0.0)},
        mass=0.15,
    )


def tray(
    variant: str = "tray",
    half_size: tuple[float, float] = (0.11, 0.09),
    rim: float = 0.02,
    colour: tuple[float, float, float] = (0.55, 0.55, 0.5),
) -> ObjectModel:
    """A fixed tray: base plate with four low rims. Keypoints: ``centre`` (top of the plate), the
    rim's four corners (``near_left``, ``near_right``, ``far_left``, ``far_right``) and the plate's
    two far inner corners (``inner_far_left``, ``inner_far_right``: on the plate, 1.5 cm inside the
    far rim, away from the tray's outline)."""
    sx, sy = half_size
    return ObjectModel(
        category="tray",
        variant=variant,
        footprint=(sx, sy),
        geoms=tuple(_open_box(sx, sy, rim, 0.008, colour)),
        keypoints={
            "centre": (0.0, 0.0, 0.008),
            **_corners(sx, sy, rim),
            "inner_far_left": (-sx + 0.015, -sy + 0.015, 0.008),
            "inner_far_right": (-sx + 0.015, sy - 0.015, 0.008),
        },
        movable=False,
    )


def pen(
    variant: str, radius: float = 0.0055, length: float = 0.14, colour=(0.1, 0.1, 0.12), cap_colour=(0.8, 0.8, 0.82)
) -> ObjectModel:
    """A pen lying along its local x axis, tip at +x. Keypoints: ``tip``, ``end``, ``centre``."""
    half = 0.5 * length - radius
    cap = 0.25 * length
    return ObjectModel(
        category="pen",
        variant=variant,
        footprint=(0.5 * length, radius),
        geoms=(
            f'<geom type="capsule" size="{radius} {half - 0.5 * cap:.4f}" pos="{0.5 * cap:.4f} 0 {radius}" '
            f'euler="0 1.5707963 0" rgba="{_rgba(colour)}" {_GRIP}/>',
            f'<geom type="capsule" size="{radius * 1.05:.4f} {0.5 * cap:.4f}" pos="{-half + 0.5 * cap:.4f} 0 {radius}" '
            f'euler="0 1.5707963 0" rgba="{_rgba(cap_colour)}" {_GRIP}/>',
        ),
        keypoints={
            "tip": (0.5 * length, 0.0, radius),
            "end": (-0.5 * length, 0.0, radius),
            "centre": (0, 0, 2 * radius),
        },
        mass=0.02,
    )


def paper_box(variant: str = "paper_box", half_size=(0.09, 0.065), height: float = 0.045, colour=(0.85, 0.78, 0.6)):
    """A fixed open cardboard box (target of pick_pen). Keypoints: ``centre`` (inner bottom) and the
    four top corners of its walls."""
    return ObjectModel(
        category="box",
        variant=variant,
        footprint=half_size,
        geoms=tuple(_open_box(half_size[0], half_size[1], height, 0.006, colour)),
        keypoints={"centre": (0.0, 0.0, 0.006), **_corners(half_size[0], half_size[1], height)},
        movable=False,
    )


def mouse(variant: str, half_size=(0.055, 0.031, 0.017), colour=(0.15, 0.15, 0.17), wheel_colour=(0.7, 0.1, 0.1)):
    """A computer mouse, front (scroll wheel) at local +x. Keypoints: ``front``, ``back``, ``wheel``, ``left``."""
    hx, hy, hz = half_size
    return ObjectModel(
        category="mouse",
        variant=variant,
        footprint=(hx, hy),
        geoms=(
            _box((hx, hy, 0.6 * hz), (0, 0, 0.6 * hz), colour),
            f'<geom type="ellipsoid" size="{0.95 * hx:.4f} {0.95 * hy:.4f} {0.8 * hz:.4f}" pos="0 0 {1.0 * hz:.4f}" '
            f'rgba="{_rgba(colour)}" {_GRIP}/>',
            f'<geom type="cylinder" size="0.006 0.003" pos="{0.55 * hx:.4f} 0 {1.75 * hz:.4f}" euler="1.5707963 0 0" '
            f'rgba="{_rgba(wheel_colour)}" contype="0" conaffinity="0"/>',
        ),
        keypoints={
            "front": (hx, 0.0, 0.6 * hz),
            "back": (-hx, 0.0, 0.6 * hz),
            "wheel": (0.55 * hx, 0.0, 1.85 * hz),
            "left": (0.0, hy, 0.6 * hz),
        },
        mass=0.08,
    )


def mouse_pad(variant: str = "mouse_pad", half_size=(0.1, 0.12), colour=(0.2, 0.3, 0.45)) -> ObjectModel:
    """A fixed mouse pad. Keypoints: ``centre`` and its four corners."""
    return ObjectModel(
        category="mouse_pad",
        variant=variant,
        footprint=half_size,
        geoms=(_box((half_size[0], half_size[1], 0.002), (0, 0, 0.002), colour),),
        keypoints={"centre": (0.0, 0.0, 0.004), **_corners(half_size[0], half_size[1], 0.004)},
        movable=False,
    )


def bottle(variant: str, radius: float = 0.03, height: float = 0.15, neck: float = 0.045, colour=(0.2, 0.6, 0.3)):
    """An upright bottle: body cylinder, shoulder and neck. Keypoints: ``mouth``, ``shoulder`` and
    ``base_front`` (on the body's edge at +x, at the top and the bottom), ``base`` (bottom centre)."""
    c = _rgba(colour)
    return ObjectModel(
        category="bottle",
        variant=variant,
        footprint=(radius, radius),
        geoms=(
            f'<geom type="cylinder" size="{radius} {0.5 * height}" pos="0 0 {0.5 * height}" rgba="{c}" {_GRIP}/>',
            f'<geom type="cylinder" size="{0.45 * radius:.4f} {0.5 * neck}" pos="0 0 {height + 0.5 * neck:.4f}" '
            f'rgba="{c}" {_GRIP}/>',
            f'<geom type="cylinder" size="{0.5 * radius:.4f} 0.004" pos="0 0 {height + neck:.4f}" '
            'rgba="0.9 0.9 0.9 1"/>',
        ),
        keypoints={
            "mouth": (0.0, 0.0, height + neck + 0.004),
            "shoulder": (radius, 0.0, height),
            "base_front": (radius, 0.0, 0.01),
            "base": (0.0, 0.0, 0.0),
        },
        mass=0.25,
    )


def cup(variant: str = "cup", radius: float = 0.045, height: float = 0.09, colour=(0.9, 0.9, 0.88)) -> ObjectModel:
    """A fixed open cup (target of pour_bottle). Keypoints: ``centre`` (opening), the rim's ``rim_near``,
    ``rim_far``, ``rim_left``, ``rim_right`` (as the scene camera sees them at yaw 0), ``base``."""
    return ObjectModel(
        category="cup",
        variant=variant,
        footprint=(radius, radius),
        geoms=tuple(_hollow_cylinder(radius, height, 0.005, colour)),
        keypoints={
            "centre": (0.0, 0.0, height),
            "rim_near": (radius, 0.0, height),
            "rim_far": (-radius, 0.0, height),
            "rim_left": (0.0, -radius, height),
            "rim_right": (0.0, radius, height),
            "base": (0.0, 0.0, 0.0),
        },
        movable=False,
    )


def shoe(
    variant: str,
    length: float = 0.2,
    width: float = 0.07,
    height: float = 0.07,
    colour=(0.6, 0.3, 0.15),
    sole_colour=(0.9, 0.9, 0.9),
) -> ObjectModel:
    """A shoe, toe at local +x, heel counter (the grasp) at -x. Keypoints: ``heel``, ``toe``, ``opening``, ``sole``."""
    hl, hw = 0.5 * length, 0.5 * width
    sole = 0.012
    wall = 0.01
    upper_h = height - sole
    return ObjectModel(
        category="shoe",
        variant=variant,
        footprint=(hl, hw),
        geoms=(
            _box((hl, hw, 0.5 * sole), (0, 0, 0.5 * sole), sole_colour),
            # Toe box over the front 45 %.
            _box((0.225 * length, hw * 0.95, 0.3 * upper_h), (0.275 * length, 0, sole + 0.3 * upper_h), colour),
            # Side walls of the upper along the back 55 %.
            _box(
                (0.275 * length, 0.5 * wall, 0.5 * upper_h),
                (-0.225 * length, hw - 0.5 * wall, sole + 0.5 * upper_h),
                colour,
            ),
            _box(
                (0.275 * length, 0.5 * wall, 0.5 * upper_h),
                (-0.225 * length, -hw + 0.5 * wall, sole + 0.5 * upper_h),
                colour,
            ),
            # Heel counter: the wall that is grasped.
            _box((0.5 * wall, hw, 0.5 * upper_h), (-hl + 0.5 * wall, 0, sole + 0.5 * upper_h), colour),
        ),
        keypoints={
            "heel": (-hl + 0.5 * wall, 0.0, height),
            "toe": (hl, 0.0, 0.5 * height),
            "opening": (-0.2 * length, 0.0, height),
            "sole": (0.0, 0.0, 0.0),
        },
        mass=0.2,
    )


#: Per category: two training variants, then two unseen variants (different shape, size, colour).
VARIANTS = {
    "mug": (
        lambda: mug("mug_blue", radius=0.04, height=0.09, colour=(0.2, 0.35, 0.8)),
        lambda: mug("mug_red", radius=0.042, height=0.085, colour=(0.8, 0.2, 0.2)),
        lambda: mug("mug_tall_green", radius=0.036, height=0.11, colour=(0.2, 0.65, 0.3), handle=0.03),
        lambda: mug("mug_wide_yellow", radius=0.047, height=0.08, colour=(0.9, 0.75, 0.2), handle=0.04),
    ),
    "pen": (
        lambda: pen("pen_black", radius=0.0055, length=0.14, colour=(0.1, 0.1, 0.12)),
        lambda: pen("pen_blue", radius=0.006, length=0.13, colour=(0.15, 0.25, 0.75)),
        lambda: pen("marker_thick_red", radius=0.009, length=0.12, colour=(0.75, 0.15, 0.15)),
        lambda: pen("pen_long_green", radius=0.005, length=0.16, colour=(0.2, 0.6, 0.25)),
    ),
    "mouse": (
        lambda: mouse("mouse_black", half_size=(0.055, 0.031, 0.017), colour=(0.15, 0.15, 0.17)),
        lambda: mouse("mouse_white", half_size=(0.058, 0.032, 0.018), colour=(0.85, 0.85, 0.87)),
        lambda: mouse("mouse_small_blue", half_size=(0.047, 0.027, 0.015), colour=(0.2, 0.35, 0.75)),
        lambda: mouse("mouse_large_grey", half_size=(0.064, 0.035, 0.02), colour=(0.5, 0.5, 0.52)),
    ),
    "bottle": (
        lambda: bottle("bottle_green", radius=0.03, height=0.15, colour=(0.2, 0.6, 0.3)),
        lambda: bottle("bottle_blue", radius=0.032, height=0.14, colour=(0.2, 0.4, 0.8)),
        lambda: bottle("bottle_slim_red", radius=0.026, height=0.16, colour=(0.8, 0.25, 0.2)),
        lambda: bottle("bottle_short_orange", radius=0.034, height=0.12, colour=(0.95, 0.55, 0.15)),
    ),
    "shoe": (
        lambda: shoe("shoe_brown", length=0.2, width=0.07, colour=(0.6, 0.3, 0.15)),
        lambda: shoe("shoe_black", length=0.21, width=0.072, colour=(0.12, 0.12, 0.13)),
        lambda: shoe("shoe_kids_pink", length=0.16, width=0.06, height=0.06, colour=(0.9, 0.45, 0.6)),
        lambda: shoe("shoe_boot_grey", length=0.23, width=0.075, height=0.09, colour=(0.45, 0.45, 0.47)),
    ),
}
#: Distractor objects for the scene-variation setting.
DISTRACTORS = (
    lambda: block("distractor_block", colour=(0.9, 0.5, 0.1)),
    lambda: ball("distractor_ball"),
    lambda: can("distractor_can"),
)


def variant(category: str, index: int) -> ObjectModel:
    """Variant ``index`` of a category: 0-1 for training, 2-3 unseen."""
    try:
        makers = VARIANTS[category]
    except KeyError:
        raise KeyError(f"unknown object category {category!r}; known: {sorted(VARIANTS)}") from None
    if not 0 <= index < len(makers):
        raise IndexError(f"{category} has variants 0..{len(makers) - 1}, got {index}")
    return makers[index]()


#: Size ranges of :func:`generated_variant` per category (m), wider than the four fixed variants on
#: every side while the parallel gripper (8 cm opening) can still take each object as the expert
#: does: a mug by its rim wall, a bottle across its body, a shoe by its heel counter, a pen across
#: its barrel, a mouse across its body.
GENERATED_SIZES: dict[str, dict[str, tuple[float, float]]] = {
    "mug": {"radius": (0.032, 0.052), "height": (0.07, 0.125), "handle": (0.025, 0.045), "wall": (0.004, 0.008)},
    "bottle": {"radius": (0.024, 0.036), "height": (0.11, 0.17), "neck": (0.035, 0.055)},
    "shoe": {"length": (0.15, 0.24), "width": (0.055, 0.08), "height": (0.055, 0.095)},
    "pen": {"radius": (0.0045, 0.0095), "length": (0.11, 0.17)},
    "mouse": {"length": (0.085, 0.13), "width": (0.05, 0.072), "height": (0.028, 0.042)},
}


def random_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    """An RGB colour (0-1) of any hue; a quarter of them nearly grey (white to black), the colours
    of a gripper, a pedestal or a table that perception must not confuse with the object."""
    hue = float(rng.uniform())
    saturation = float(rng.uniform(0.0, 0.12)) if rng.uniform() < 0.25 else float(rng.uniform(0.35, 1.0))
    value = float(rng.uniform(0.15, 0.95))
    return tuple(round(c, 3) for c in colorsys.hsv_to_rgb(hue, saturation, value))


def generated_variant(category: str, rng: np.random.Generator, name: str | None = None) -> ObjectModel:
    """A variant of ``category`` with sizes drawn uniformly from :data:`GENERATED_SIZES` and a
    :func:`random_colour` — not one of the four in :data:`VARIANTS`, so a result on these holds for
    objects nobody tuned to. The keypoints are the category's, at the drawn geometry.

    Raises:
        KeyError: a category without generated variants (the fixtures: tray, box, pad, cup).
    """
    try:
        sizes = GENERATED_SIZES[category]
    except KeyError:
        raise KeyError(f"no generated variants of {category!r}; categories: {sorted(GENERATED_SIZES)}") from None
    size = {key: float(rng.uniform(lo, hi)) for key, (lo, hi) in sizes.items()}
    colour = random_colour(rng)
    name = name or f"{category}_generated"
    if category == "mug":
        return mug(name, colour=colour, **size)
    if category == "bottle":
        return bottle(name, colour=colour, **size)
    if category == "shoe":
        return shoe(name, colour=colour, **size)
    if category == "pen":
        return pen(name, colour=colour, **size)
    half = (0.5 * size["length"], 0.5 * size["width"], 0.5 * size["height"])
    return mouse(name, half_size=half, colour=colour)
