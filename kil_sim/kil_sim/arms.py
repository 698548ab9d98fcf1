"""The two arms of the paper as kinematic models: UFACTORY Lite6 and Universal Robots UR5e
(standard DH, joint limits, maximum joint speeds, the paper's grippers' TCP offsets), each mounted
at the simulator's robot base (``link_base``, z = 0 on the table top), with inverse kinematics.

Sources of the numbers:
- Lite6 DH: UFACTORY, "Kinematic and Dynamic Parameters of UFACTORY Lite 6", standard D-H table
  (d1 243.3 mm, a2 200 mm, a3 87 mm, d4 227.6 mm, d6 61.5 mm; theta offsets -90 deg on joints 2, 3).
- Lite6 joint limits and speeds: xarm_ros2 ``xarm_description/urdf/lite6/lite6.urdf.xacro``
  (joint2 +-2.61799, joint3 -0.061087..5.235988, joint5 +-2.1642, joints 1/4/6 +-2 pi rad;
  velocity 3.14 rad/s each).
- Lite6 gripper TCP: 0.0836 m beyond the flange (xarm_ros2 ``urdf/gripper/lite_gripper.urdf.xacro``,
  ``joint_tcp``).
- UR5e DH: Universal Robots' DH parameters for the UR5e (``kil_control.ur5e.DH``); joint limits
  +-2 pi and 180 deg/s (3.14 rad/s) per joint (UR5e technical specifications; ur_description's
  ``config/ur5e/joint_limits.yaml``).
- UR5e gripper: the paper's Schunk EGK 40 with custom fingertips; its TCP offset is not published,
  so ``UR5E_TCP_OFFSET_M`` is an estimate (0.15 m) to be replaced by the measured value.
- Link geometry (``link_radii_m``): one capsule per DH segment (frame i to frame i+1), radii
  estimated from the arms' outer diameters on their product drawings (Lite6 about 80 mm, the UR5e's
  upper arm and forearm about 120 mm and its wrists about 90 mm), not published values: simple
  collision geometry along the DH skeleton, which for the UR5e leaves out the shoulder and elbow
  offsets (0.138 m and 0.131 m sideways) that the DH convention folds into the joint axes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kil_control import ur5e as ur
from kil_control.kinematics import DHJoint, IKConfig, dh_forward, dh_frames, dls_inverse

LITE6_TCP_OFFSET_M = 0.0836
UR5E_TCP_OFFSET_M = 0.15
#: The simulated tasks are laid out for the floating gripper; on an arm some must move (measured
#: with ``python -m kil_sim.reachability --robot R --offset DX DY``, 30 configurations each: the
#: scripted expert's whole path within the joint limits). Lite6 (wrist reach 0.444 m): the tray or
#: box at (0.36, -0.24) m is out of reach for place_mug and pick_pen (0/30) and the mouse pad's far
#: side for place_mouse (1/30); 8 cm towards the base all three are 30/30. pour_bottle's side grasp
#: passes over joint 1's axis for bottles near y = 0 (27/30); 5 cm to +y it is 30/30. place_shoe's
#: shoe tray (0.34 x 0.32 m) has a far corner out of reach (14/30; (-0.08, 0) 16/30, (-0.10, 0.06)
#: 22/30, (-0.09, 0.12) 29/30); 10 cm towards the base and 12 cm to +y every pose of all 30 is
#: solved (two scene-variation paths turn joint 6 at 3.2 rad/s, which the controller slows).
LITE6_SCENE_OFFSETS = (
    ("place_mug", (-0.08, 0.0)),
    ("pick_pen", (-0.08, 0.0)),
    ("place_mouse", (-0.08, 0.0)),
    ("pour_bottle", (0.0, 0.05)),
    ("place_shoe", (-0.10, 0.12)),
)
#: UR5e: pour_bottle's side grasp, approached from the base's side, puts the wrist centre within the
#: shoulder offset d4 = 0.133 m of the base axis (no IK solution: 0/30 configurations); 10 cm out
#: it still is for some poses (0/30), 15 cm to +y for 6/30; 10 cm out and 15 cm to +y every pose of
#: all 30 has a solution (the turn to the side grasp still asks wrist_1 for more than its
#: 3.14 rad/s: the controller slows it).
UR5E_SCENE_OFFSETS = (("pour_bottle", (0.10, 0.15)),)


@dataclass(frozen=True)
class ArmModel:
    """A 6-joint arm: DH table, joint limits (rad), maximum joint speeds (rad/s), TCP offset along
    the flange's z axis (m), a home configuration (TCP above the table, tool pointing down), the
    farthest the wrist centre gets from the shoulder (m; poses beyond it are refused without IK)
    and, per task, where the task's scene is laid out for this arm (``scene_offset``)."""

    name: str
    table: tuple[DHJoint, ...]
    lower: np.ndarray
    upper: np.ndarray
    max_speed: np.ndarray
    tcp_offset_m: float
    home: np.ndarray
    joint_names: tuple[str, ...]
    wrist_reach_m: float = np.inf
    ik: IKConfig = field(default_factory=IKConfig)
    scene_offsets: tuple[tuple[str, tuple[float, float]], ...] = ()
    link_radii_m: tuple[float, ...] = ()
    """Radius of each link's capsule (one per joint: the segment from DH frame i to frame i + 1);
    () = no link geometry."""

    def link_segments(self, joints: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """(start (3,), end (3,), radius) of every link capsule for ``joints`` (base frame, m)."""
        return self.forward_with_links(joints)[1]

    def forward_with_links(self, joints: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray, float]]]:
        """The (4, 4) TCP pose and :meth:`link_segments` for ``joints`` from one pass down the DH
        chain (the simulator moves both every step)."""
        frames = dh_frames(np.asarray(joints, np.float64), self.table)
        links = [(frames[i][:3, 3], frames[i + 1][:3, 3], r) for i, r in enumerate(self.link_radii_m)]
        return frames[-1] @ self.tool, links

    def link_capsules(self) -> tuple[tuple[float, float], ...]:
        """(radius, half length) of every link capsule (a DH segment's length is the same for any
        joint angle: |(a, d)|)."""
        if not self.link_radii_m:
            return ()
        return tuple((r, 0.5 * float(np.hypot(j.a, j.d))) for j, r in zip(self.table, self.link_radii_m, strict=True))

    def table_clearance(self, joints: np.ndarray) -> tuple[float, int]:
        """How far (m) the lowest link capsule stays above the table top (z = 0; negative: into
        it) and which link (1-based) — the first link, standing on the table, not counted;
        (inf, 0) without link geometry."""
        lowest, which = np.inf, 0
        for k, (start, end, radius) in enumerate(self.link_segments(joints)[1:], start=2):
            clearance = min(float(start[2]), float(end[2])) - radius
            if clearance < lowest:
                lowest, which = clearance, k
        return lowest, which

    def scene_offset(self, task: str) -> tuple[float, float]:
        """Where ``task``'s layout sits for this arm: (dx, dy) added to every object's position
        (m, base frame; ``EpisodeConfig.shifted``), (0, 0) for a task laid out as in the simulator."""
        return dict(self.scene_offsets).get(task, (0.0, 0.0))

    def __post_init__(self) -> None:
        n = len(self.table)
        for name in ("lower", "upper", "max_speed", "home"):
            value = np.asarray(getattr(self, name), np.float64)
            if value.shape != (n,):
                raise ValueError(f"ArmModel {self.name}: {name} must have {n} entries, got {value.shape}")
            object.__setattr__(self, name, value)
        if np.any(self.lower >= self.upper) or np.any(self.max_speed <= 0):
            raise ValueError(f"ArmModel {self.name}: limits must satisfy lower < upper and max_speed > 0")
        if len(self.joint_names) != n:
            raise ValueError(f"ArmModel {self.name}: {len(self.joint_names)} joint names for {n} joints")
        if self.link_radii_m and (len(self.link_radii_m) != n or min(self.link_radii_m) <= 0):
            raise ValueError(
                f"ArmModel {self.name}: link_radii_m needs one radius > 0 per joint ({n}) or none, "
                f"got {self.link_radii_m}"
            )

    @property
    def tool(self) -> np.ndarray:
        tool = np.eye(4)
        tool[2, 3] = self.tcp_offset_m
        return tool

    def forward(self, joints: np.ndarray) -> np.ndarray:
        """(n,) joints -> (4, 4) TCP pose in the base frame."""
        return dh_forward(joints, self.table, self.tool)

    def shoulder(self) -> np.ndarray:
        """The shoulder (joint 2's axis origin) in the base frame: where reach is measured from."""
        return dh_frames(np.zeros(len(self.table)), self.table)[1][:3, 3]

    def wrist_centre(self, pose: np.ndarray) -> np.ndarray:
        """Where the last joint's axis meets the flange's, for a TCP ``pose``: the TCP moved back
        along the tool axis by the TCP offset and the last link's d."""
        back = self.tcp_offset_m + self.table[-1].d
        return np.asarray(pose)[:3, 3] - back * np.asarray(pose)[:3, 2]

    def limit_violations(self, joints: np.ndarray, tolerance: float = 1e-6) -> list[str]:
        """'joint3 = 5.400 rad beyond its upper limit 5.236' per joint outside its limits."""
        joints = np.asarray(joints, np.float64)
        out = []
        for name, q, lo, hi in zip(self.joint_names, joints, self.lower, self.upper, strict=True):
            if q < lo - tolerance:
                out.append(f"{name} = {q:.3f} rad beyond its lower limit {lo:.3f}")
            elif q > hi + tolerance:
                out.append(f"{name} = {q:.3f} rad beyond its upper limit {hi:.3f}")
        return out

    def inverse(self, pose: np.ndarray, seed: np.ndarray | None = None) -> np.ndarray | None:
        """Joints within the limits reaching ``pose`` (4, 4; TCP in the base frame), the solution
        nearest ``seed`` (default: home) where several exist; None when none does."""
        seed = self.home if seed is None else np.asarray(seed, np.float64)
        pose = np.asarray(pose, np.float64)
        if np.linalg.norm(self.wrist_centre(pose) - self.shoulder()) > self.wrist_reach_m:
            return None
        if self.name == "ur5e":  # closed form: every solution, the nearest one inside the limits
            flange = np.asarray(pose, np.float64) @ np.linalg.inv(self.tool)
            best, cost = None, np.inf
            for solution in ur.inverse(flange):
                for candidate in _equivalents(solution, seed, self.lower, self.upper):
                    c = float(np.max(np.abs(candidate - seed)))
                    if c < cost:
                        best, cost = candidate, c
            return best
        rng = np.random.default_rng(0)
        seeds = [seed, self.home, *(rng.uniform(self.lower, self.upper) for _ in range(6))]
        for start in seeds:
            solution = dls_inverse(pose, start, self.table, self.lower, self.upper, self.tool, self.ik)
            if solution is not None:
                return solution
        return None


def _equivalents(solution: np.ndarray, near: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> list[np.ndarray]:
    """``solution`` with each joint shifted by 2 pi to lie nearest ``near``, if that is within the limits."""
    candidate = near + (np.asarray(solution) - near + np.pi) % (2 * np.pi) - np.pi
    return [candidate] if np.all(candidate >= lower - 1e-9) and np.all(candidate <= upper + 1e-9) else []


def lite6() -> ArmModel:
    """UFACTORY Lite6 with its gripper (sources in the module docstring)."""
    half = np.pi / 2
    table = (
        DHJoint(0.2433, 0.0, -half),
        DHJoint(0.0, 0.200, np.pi, offset=-half),
        DHJoint(0.0, 0.087, half, offset=-half),
        DHJoint(0.2276, 0.0, half),
        DHJoint(0.0, 0.0, -half),
        DHJoint(0.0615, 0.0, 0.0),
    )
    two_pi = 2 * np.pi
    return ArmModel(
        name="lite6",
        table=table,
        lower=np.array([-two_pi, -2.61799, -0.061087, -two_pi, -2.1642, -two_pi]),
        upper=np.array([two_pi, 2.61799, 5.235988, two_pi, 2.1642, two_pi]),
        max_speed=np.full(6, 3.14),
        tcp_offset_m=LITE6_TCP_OFFSET_M,
        home=np.array([0.0, 0.2, 0.9, 0.0, 0.7, 0.0]),
        joint_names=tuple(f"joint{i}" for i in range(1, 7)),
        wrist_reach_m=0.200 + float(np.hypot(0.087, 0.2276)),  # a2 + |(a3, d4)|: elbow stretched, 0.444 m
        scene_offsets=LITE6_SCENE_OFFSETS,
        link_radii_m=(0.04,) * 6,
    )


def ur5e_arm() -> ArmModel:
    """Universal Robots UR5e with the paper's gripper (sources in the module docstring)."""
    dh = ur.DH()
    table = tuple(DHJoint(d, a, alpha) for d, a, alpha in dh.table())
    return ArmModel(
        name="ur5e",
        table=table,
        lower=np.full(6, -ur.JOINT_LIMIT_RAD),
        upper=np.full(6, ur.JOINT_LIMIT_RAD),
        max_speed=np.full(6, np.pi),
        tcp_offset_m=UR5E_TCP_OFFSET_M,
        # In front of the base (+x), tool down, wrist 2 at +90 deg: the branch whose wrist stays above
        # the TCP when the tool turns horizontal. From wrist 2 at -90 deg (the earlier home) the
        # pour_bottle expert drove the arm into the table (kil_sim.arm_collision): offline wrist 2's
        # axis 1-1.5 cm below the table top in 10 of 10 configurations, the fingers pressed into it
        # in 3 (up to 1.5 kN); live through ur5e_node 0/10, each stopped with link 3's axis below
        # the table top. From this one the wrist's axes stay >= 8.5 cm above the table (README,
        # "Rehearse on the simulated Lite6 / UR5e").
        home=np.array([np.pi, -1.74, 1.95, 1.36, 1.57, 1.0]),
        joint_names=ur.JOINT_NAMES,
        scene_offsets=UR5E_SCENE_OFFSETS,
        link_radii_m=(0.06, 0.06, 0.06, 0.045, 0.045, 0.045),
    )


ARMS = {"lite6": lite6, "ur5e": ur5e_arm}


def arm(name: str) -> ArmModel:
    """The arm called ``name`` (lite6, ur5e)."""
    if name not in ARMS:
        raise ValueError(f"arm must be one of {sorted(ARMS)}, got {name!r}")
    return ARMS[name]()
