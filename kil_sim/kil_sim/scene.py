"""The MuJoCo tabletop scene: table, robot pedestal, parallel-jaw gripper, camera, objects.

Frames: the world frame is the robot base frame (REP-103: x forward, y left, z up), origin at
the robot's base on the table top (z = 0 is the table surface).

The gripper is a dynamic body, gravity-compensated and welded to a kinematic (mocap) target that
moves within the arm's speed limits, so that contacts see its real velocity. Its frame is the
tool centre point (TCP) between the fingertips, with its z axis pointing from the palm towards
the fingertips. Its two fingers are slide joints along its y axis, each closed by a
force-limited position actuator, so objects are held by friction only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kil_sim.camera import CameraConfig
from kil_sim.objects import ObjectModel

CAMERA_NAME = "scene_camera"
GRIPPER_BODY = "gripper"
GRIPPER_TARGET_BODY = "gripper_target"
FINGER_JOINTS = ("finger_left_joint", "finger_right_joint")
FINGER_BODIES = ("finger_left", "finger_right")
#: Link bodies of an arm carrying the gripper: ``arm_link1`` .. ``arm_linkN``.
ARM_LINK_BODY = "arm_link"
GRIPPER_ACTUATORS = ("finger_left", "finger_right")
#: Finger mass (kg) including the reflected drive inertia; heavier fingers make the squeeze contact
#: stiffer (MuJoCo scales contact stiffness with the effective mass), so thin walls hold.
FINGER_MASS = 0.2
#: The table top (z = 0): centre (x, y) and half-extents (m, base frame).
TABLE_GEOM = "table"
TABLE_CENTRE = (0.4, 0.0)
TABLE_HALF_SIZE = (0.5, 0.6)
#: TCP orientation pointing straight down, fingers closing along the base y axis (x, y, z, w).
TCP_DOWN = (1.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class GripperConfig:
    """The simulated gripper and its motion limits (roughly a UFactory Lite6 with its gripper).

    Attributes:
        max_opening_m: distance between the fingers' inner faces when fully open (m).
        grip_force_n: maximum squeezing force per finger (N).
        close_time_s: time to close fully (s), set through the fingers' damping.
        max_linear_speed: TCP speed limit when tracking targets (m/s).
        max_angular_speed: TCP rotation speed limit (rad/s).
        home_position: TCP position at reset (m, base frame).
        home_quaternion: TCP orientation at reset (x, y, z, w).
    """

    max_opening_m: float = 0.08
    grip_force_n: float = 15.0
    close_time_s: float = 0.4
    max_linear_speed: float = 0.5
    max_angular_speed: float = 2.0
    home_position: tuple[float, float, float] = (0.25, 0.0, 0.25)
    home_quaternion: tuple[float, float, float, float] = TCP_DOWN

    def __post_init__(self) -> None:
        for name in (
            "max_opening_m",
            "grip_force_n",
            "close_time_s",
            "max_linear_speed",
            "max_angular_speed",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"GripperConfig.{name} must be > 0, got {getattr(self, name)}")
        if abs(np.linalg.norm(self.home_quaternion) - 1.0) > 1e-6:
            raise ValueError(f"GripperConfig.home_quaternion must be a unit quaternion, got {self.home_quaternion}")


@dataclass(frozen=True)
class SceneConfig:
    """Everything about the world that is not the task's objects.

    Attributes:
        camera: the scene camera.
        gripper: the gripper and its limits.
        table_rgba: table colour (a scene variation changes it).
        timestep_s: physics step (s).
        base_frame: name of the robot base frame in messages.
    """

    camera: CameraConfig = field(default_factory=CameraConfig)
    gripper: GripperConfig = field(default_factory=GripperConfig)
    table_rgba: tuple[float, float, float, float] = (0.62, 0.5, 0.38, 1.0)
    timestep_s: float = 0.002
    base_frame: str = "link_base"

    def __post_init__(self) -> None:
        if not 0.0 < self.timestep_s <= 0.01:
            raise ValueError(f"SceneConfig.timestep_s must be in (0, 0.01], got {self.timestep_s}")


@dataclass(frozen=True)
class PlacedObject:
    """An object model placed in the scene.

    Attributes:
        name: unique body name, e.g. "mug" or "shoe_1".
        model: geometry and keypoints.
        position: (x, y) on the table (m, base frame).
        yaw: rotation about z (rad).
    """

    name: str
    model: ObjectModel
    position: tuple[float, float]
    yaw: float = 0.0


def _vec(values) -> str:
    return " ".join(f"{float(v):.9g}" for v in values)


def _gripper_xml(config: GripperConfig) -> str:
    half_open = 0.5 * config.max_opening_m
    damping = config.grip_force_n * config.close_time_s / half_open  # force / closing speed
    pos, quat = config.home_position, config.home_quaternion
    finger = 'type="box" size="0.009 0.005 0.026" rgba="0.25 0.25 0.27 1" friction="1.5 0.02 0.002" condim="4"'
    return f"""
    <body name="{GRIPPER_TARGET_BODY}" mocap="true" pos="{_vec(pos)}" quat="{_vec((quat[3], *quat[:3]))}"/>
    <body name="{GRIPPER_BODY}" pos="{_vec(pos)}" quat="{_vec((quat[3], *quat[:3]))}" gravcomp="1">
      <freejoint name="gripper_joint"/>
      <geom name="palm" type="box" size="0.022 0.058 0.012" pos="0 0 -0.064" rgba="0.85 0.85 0.87 1"/>
      <geom name="flange" type="cylinder" size="0.032 0.02" pos="0 0 -0.096" rgba="0.9 0.9 0.92 1"
            contype="0" conaffinity="0"/>
      <body name="finger_left" gravcomp="1">
        <joint name="{FINGER_JOINTS[0]}" type="slide" axis="0 1 0" range="0 {half_open:.4f}" damping="{damping:.4g}"/>
        <inertial pos="0 0.005 -0.026" mass="{FINGER_MASS}" diaginertia="5e-5 5e-5 2e-5"/>
        <geom name="finger_left_pad" {finger} pos="0 0.005 -0.026"/>
      </body>
      <body name="finger_right" gravcomp="1">
        <joint name="{FINGER_JOINTS[1]}" type="slide" axis="0 -1 0" range="0 {half_open:.4f}" damping="{damping:.4g}"/>
        <inertial pos="0 -0.005 -0.026" mass="{FINGER_MASS}" diaginertia="5e-5 5e-5 2e-5"/>
        <geom name="finger_right_pad" {finger} pos="0 -0.005 -0.026"/>
      </body>
    </body>"""


def _arm_links_xml(arm_links: tuple[tuple[float, float], ...]) -> tuple[str, str]:
    """Kinematic (mocap) link bodies, one capsule each (a sphere for a zero-length link), and the
    contact exclusions that keep them off the gripper they carry. The links push objects; static
    like the table, they pass through it unfelt (``kil_sim.arms.ArmModel.table_clearance`` names
    the poses where they would).
    Geom group 3: not drawn by the scene camera, so the images are those of the floating gripper."""
    bodies, excludes = [], []
    for i, (radius, half_length) in enumerate(arm_links):
        shape = (
            f'type="capsule" size="{radius:.4g} {half_length:.4g}"'
            if half_length > 0
            else f'type="sphere" size="{radius:.4g}"'
        )
        bodies.append(
            f'<body name="{ARM_LINK_BODY}{i + 1}" mocap="true" pos="0 0 -1">'
            f'<geom name="{ARM_LINK_BODY}{i + 1}" {shape} group="3" rgba="0.8 0.8 0.82 1"/></body>'
        )
        excludes += [f'<exclude body1="{ARM_LINK_BODY}{i + 1}" body2="{b}"/>' for b in (GRIPPER_BODY, *FINGER_BODIES)]
    return "\n    ".join(bodies), "\n    ".join(excludes)


def build_mjcf(
    objects: list[PlacedObject], config: SceneConfig, arm_links: tuple[tuple[float, float], ...] = ()
) -> str:
    """The MJCF of the scene with ``objects`` at their placements; ``arm_links``: (radius, half
    length) of each link capsule of an arm carrying the gripper (``SimWorld.set_arm_links`` places
    them), none for the floating gripper."""
    names = [o.name for o in objects]
    if len(set(names)) != len(names):
        raise ValueError(f"object names must be unique, got {names}")
    cam = config.camera
    half_open = 0.5 * config.gripper.max_opening_m
    kp = 20.0 * config.gripper.grip_force_n / half_open
    force = config.gripper.grip_force_n
    actuators = "\n    ".join(
        f'<position name="{name}" joint="{joint}" kp="{kp:.5g}" ctrlrange="0 {half_open:.4f}" '
        f'forcerange="-{force} {force}"/>'
        for name, joint in zip(GRIPPER_ACTUATORS, FINGER_JOINTS, strict=True)
    )
    bodies = "\n    ".join(
        o.model.body_xml(o.name, np.array([o.position[0], o.position[1], 0.0005]), o.yaw) for o in objects
    )
    links, excludes = _arm_links_xml(tuple(arm_links))
    return f"""<mujoco model="kil_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{config.timestep_s}" cone="elliptic" impratio="10" integrator="implicitfast"/>
  <visual>
    <global offwidth="{max(cam.width, 640)}" offheight="{max(cam.height, 480)}"/>
    <!-- No multisampling: it triples the cost of software (llvmpipe) rendering. -->
    <quality shadowsize="2048" offsamples="0"/>
    <map znear="0.01" zfar="50"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.45 0.45 0.45" specular="0.1 0.1 0.1"/>
  </visual>
  <default>
    <!-- Stiff contacts (time constant 4 physics steps) so squeezed objects barely interpenetrate. -->
    <geom solref="{4 * config.timestep_s} 1" solimp="0.95 0.99 0.001"/>
  </default>
  <asset>
    <texture name="sky" type="skybox" builtin="flat" rgb1="0.78 0.8 0.82" rgb2="0.78 0.8 0.82" width="8" height="8"/>
  </asset>
  <worldbody>
    <light name="ceiling" pos="0.4 0.0 2.0" dir="0 0 -1" diffuse="0.55 0.55 0.55" castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" rgba="0.45 0.45 0.47 1"/>
    <geom name="{TABLE_GEOM}" type="box" size="{_vec(TABLE_HALF_SIZE)} 0.02" pos="{_vec(TABLE_CENTRE)} -0.02"
          rgba="{_vec(config.table_rgba)}"
          friction="0.8 0.01 0.001"/>
    <geom name="robot_pedestal" type="cylinder" size="0.06 0.05" pos="0 0 0.05" rgba="0.9 0.9 0.92 1"/>
    <camera name="{CAMERA_NAME}" pos="{_vec(cam.position)}" xyaxes="{cam.mujoco_xyaxes()}" fovy="{cam.fovy_deg}"/>
    {_gripper_xml(config.gripper)}
    {links}
    {bodies}
  </worldbody>
  <contact>
    {excludes}
  </contact>
  <equality>
    <weld body1="{GRIPPER_TARGET_BODY}" body2="{GRIPPER_BODY}" solref="0.005 1"/>
  </equality>
  <actuator>
    {actuators}
  </actuator>
</mujoco>"""
