"""Object models of the simulated tasks, built from MuJoCo primitives.

Each model is an MJCF ``<body>`` (with a free joint when movable) whose frame sits at the
centre of the object's footprint on the table, z up, plus the ground-truth semantic keypoints in
that frame (the ``oracle`` keypoint source, and the reference for scoring perception).
Variants of a category differ in shape, size and colour (two for training, two unseen).
"""

from __future__ import annotations

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
    """

    category: str
    variant: str
    geoms: tuple[str, ...]
    keypoints: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    mass: float = 0.1
    movable: bool = True

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


def mug(
    variant: str,
    radius: float = 0.04,
    height: float = 0.09,
    wall: float = 0.006,
    colour: tuple[float, float, float] = (0.2, 0.35, 0.8),
    handle: float = 0.035,
    segments: int = 20,
) -> ObjectModel:
    """An upright mug: a hollow cylinder of ``segments`` wall boxes, a bottom and a handle at +x.

    Keypoints: ``rim`` (wall top opposite the handle: the grasp point), ``handle`` (outer middle
    of the handle), ``base`` (bottom centre), ``opening`` (centre of the top opening).
    """
    c = _rgba(colour)
    friction = 'friction="1.2 0.01 0.001" condim="4"'
    geoms = []
    half_chord = radius * math.tan(math.pi / segments) + 0.5 * wall
    for i in range(segments):
        a = 2 * math.pi * i / segments
        geoms.append(
            f'<geom type="box" size="{0.5 * wall:.4f} {half_chord:.4f} {0.5 * height:.4f}" '
            f'pos="{radius * math.cos(a):.5f} {radius * math.sin(a):.5f} {0.5 * height:.4f}" '
            f'euler="0 0 {a:.6f}" rgba="{c}" {friction}/>'
        )
    geoms.append(
        f'<geom type="cylinder" size="{radius:.4f} {0.5 * wall:.4f}" pos="0 0 {0.5 * wall:.4f}" rgba="{c}" {friction}/>'
    )
    hx = radius + 0.5 * handle
    geoms += [
        f'<geom type="box" size="{0.5 * handle:.4f} 0.006 0.005" pos="{hx:.4f} 0 {0.8 * height:.4f}" rgba="{c}"/>',
        f'<geom type="box" size="{0.5 * handle:.4f} 0.006 0.005" pos="{hx:.4f} 0 {0.25 * height:.4f}" rgba="{c}"/>',
        f'<geom type="box" size="0.005 0.006 {0.275 * height:.4f}" '
        f'pos="{radius + handle:.4f} 0 {0.525 * height:.4f}" rgba="{c}"/>',
    ]
    return ObjectModel(
        category="mug",
        variant=variant,
        geoms=tuple(geoms),
        keypoints={
            "rim": (-radius, 0.0, height),
            "handle": (radius + handle + 0.005, 0.0, 0.525 * height),
            "base": (0.0, 0.0, 0.0),
            "opening": (0.0, 0.0, height),
        },
        mass=0.25,
    )


def block(variant: str = "block", size: tuple[float, float, float] = (0.025, 0.025, 0.025),
          colour: tuple[float, float, float] = (0.85, 0.2, 0.2), mass: float = 0.1) -> ObjectModel:  # fmt: skip
    """A box of half-sizes ``size`` (m) resting on its bottom face; keypoints at top and bottom centres."""
    sx, sy, sz = size
    return ObjectModel(
        category="block",
        variant=variant,
        geoms=(
            f'<geom type="box" size="{sx} {sy} {sz}" pos="0 0 {sz}" rgba="{_rgba(colour)}" '
            'friction="1.2 0.01 0.001" condim="4"/>',
        ),
        keypoints={"top": (0.0, 0.0, 2 * sz), "bottom": (0.0, 0.0, 0.0), "corner": (sx, sy, 2 * sz)},
        mass=mass,
    )


def tray(variant: str = "tray", half_size: tuple[float, float] = (0.11, 0.09), rim: float = 0.02,
         colour: tuple[float, float, float] = (0.55, 0.55, 0.5)) -> ObjectModel:  # fmt: skip
    """A fixed tray: a thin base plate with four low rims. Keypoints: ``centre``, ``corner``."""
    sx, sy = half_size
    c = _rgba(colour)
    t = 0.004
    geoms = (
        f'<geom type="box" size="{sx} {sy} {t}" pos="0 0 {t}" rgba="{c}"/>',
        f'<geom type="box" size="{t} {sy} {0.5 * rim}" pos="{sx - t} 0 {0.5 * rim}" rgba="{c}"/>',
        f'<geom type="box" size="{t} {sy} {0.5 * rim}" pos="{-sx + t} 0 {0.5 * rim}" rgba="{c}"/>',
        f'<geom type="box" size="{sx} {t} {0.5 * rim}" pos="0 {sy - t} {0.5 * rim}" rgba="{c}"/>',
        f'<geom type="box" size="{sx} {t} {0.5 * rim}" pos="0 {-sy + t} {0.5 * rim}" rgba="{c}"/>',
    )
    return ObjectModel(
        category="tray",
        variant=variant,
        geoms=geoms,
        keypoints={"centre": (0.0, 0.0, 2 * t), "corner": (sx, sy, rim)},
        movable=False,
    )
