"""``SimWorld``: the simulated arm, gripper, objects and RGB-D camera, without ROS.

Used by ``sim_node`` (real time, behind the driver topics) and directly for fast offline data
generation and evaluation. Positions in m in the robot base frame, quaternions (x, y, z, w),
time in s since the last reset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np

from kil_interfaces.calibration import RigidTransform
from kil_interfaces.data import CameraIntrinsics, RobotStateData
from kil_interfaces.rotations import quat_angle, quat_slerp, quat_to_matrix
from kil_sim.camera import depth_to_millimetres
from kil_sim.rendering import CameraRenderer, RenderedFrame, SceneCapture
from kil_sim.scene import (
    ARM_LINK_BODY,
    CAMERA_NAME,
    FINGER_JOINTS,
    GRIPPER_ACTUATORS,
    GRIPPER_BODY,
    GRIPPER_TARGET_BODY,
    TABLE_GEOM,
    PlacedObject,
    SceneConfig,
    build_mjcf,
)


@dataclass
class CameraFrame:
    """One RGB-D frame as the real camera driver would deliver it, plus simulator extras.

    Attributes:
        stamp_s: simulation time of the render (s).
        rgb: (H, W, 3) uint8 colour.
        depth_mm: (H, W) uint16 depth aligned to colour (mm, 0 = no return).
        instance_mask: (H, W) int16 index into ``SimWorld.objects`` + 1 per pixel (0 = not an
            object), or None when not rendered.
    """

    stamp_s: float
    rgb: np.ndarray
    depth_mm: np.ndarray
    instance_mask: np.ndarray | None = None


def _mj_quat(quat_xyzw: np.ndarray) -> np.ndarray:
    return np.array([quat_xyzw[3], quat_xyzw[0], quat_xyzw[1], quat_xyzw[2]])


def _z_onto(direction: np.ndarray) -> np.ndarray:
    """MuJoCo quaternion (w, x, y, z) turning the z axis onto ``direction`` (identity for a zero
    vector: a sphere link)."""
    length = float(np.linalg.norm(direction))
    if length < 1e-9:
        return np.array([1.0, 0.0, 0.0, 0.0])
    d = direction / length
    if d[2] < -1.0 + 1e-9:  # straight down: half a turn about x
        return np.array([0.0, 1.0, 0.0, 0.0])
    quat = np.array([1.0 + d[2], -d[1], d[0], 0.0])  # (w, z x d): the shortest arc from z to d
    return quat / np.linalg.norm(quat)


def _xyzw(quat_wxyz: np.ndarray) -> np.ndarray:
    return np.array([quat_wxyz[1], quat_wxyz[2], quat_wxyz[3], quat_wxyz[0]])


#: A point counts as visible when the rendered depth at its pixel is within this of its own (m).
VISIBLE_DEPTH_M = 0.01


class SimWorld:
    """A tabletop scene with ``objects``; call :meth:`step` to advance it.

    Args:
        objects: the task's objects and their initial placements.
        config: camera, gripper and physics settings.
        arm_links: (radius, half length) of each link capsule of an arm carrying the gripper
            (``kil_sim.arms.ArmModel.link_capsules``; placed with :meth:`set_arm_links`), none
            for the floating gripper.
    """

    def __init__(
        self,
        objects: list[PlacedObject],
        config: SceneConfig | None = None,
        arm_links: tuple[tuple[float, float], ...] = (),
    ) -> None:
        self.config = config or SceneConfig()
        self.objects = list(objects)
        self.model = mujoco.MjModel.from_xml_string(build_mjcf(self.objects, self.config, arm_links))
        self.data = mujoco.MjData(self.model)
        self._arm_links = [
            self.model.body_mocapid[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, f"{ARM_LINK_BODY}{i + 1}")]
            for i in range(len(arm_links))
        ]
        self._mocap = self.model.body_mocapid[
            mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, GRIPPER_TARGET_BODY)
        ]
        self._gripper = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, GRIPPER_BODY)
        self._gripper_bodies = {self._gripper, *np.flatnonzero(self.model.body_parentid == self._gripper).tolist()}
        link_bodies = [
            mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, f"{ARM_LINK_BODY}{i + 1}")
            for i in range(len(arm_links))
        ]
        self._robot_bodies = np.zeros(self.model.nbody, bool)  # the gripper, its fingers, the arm's links
        # Called after every physics step (``step``), e.g. to watch contacts as an arm's controller does.
        self.physics_observers: list[Callable[[SimWorld], None]] = []
        self._robot_bodies[[*self._gripper_bodies, *link_bodies]] = True
        self._finger_qpos = [
            self.model.jnt_qposadr[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in FINGER_JOINTS
        ]
        self._actuators = [
            mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_ACTUATOR, name) for name in GRIPPER_ACTUATORS
        ]
        self._half_open = 0.5 * self.config.gripper.max_opening_m
        self._table = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_GEOM, TABLE_GEOM)
        self._body_ids = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, o.name) for o in self.objects]
        # geom id -> object index + 1 (0 for the table, robot, gripper).
        self._geom_instance = np.zeros(self.model.ngeom + 1, np.int16)
        for index, body in enumerate(self._body_ids):
            self._geom_instance[np.flatnonzero(self.model.geom_bodyid == body)] = index + 1
        self._renderer: CameraRenderer | None = None
        self._capture: SceneCapture | None = None
        self.reset()

    # --- state ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Objects back to their placements, gripper home and open, time 0."""
        mujoco.mj_resetData(self.model, self.data)
        gripper = self.config.gripper
        self.data.mocap_pos[self._mocap] = gripper.home_position
        self.data.mocap_quat[self._mocap] = _mj_quat(np.asarray(gripper.home_quaternion))
        for q in self._finger_qpos:
            self.data.qpos[q] = self._half_open
        self._target_position = np.array(gripper.home_position, dtype=np.float64)
        self._target_quaternion = np.array(gripper.home_quaternion, dtype=np.float64)
        self._on_target = False  # whether the mocap setpoint has reached the target
        self.set_gripper(1.0)
        mujoco.mj_forward(self.model, self.data)

    @property
    def time(self) -> float:
        """Simulation time since reset (s)."""
        return float(self.data.time)

    def set_target(self, position: np.ndarray, quaternion: np.ndarray) -> None:
        """Set the TCP pose target; the TCP moves there within the speed limits."""
        position = np.asarray(position, dtype=np.float64)
        quaternion = np.asarray(quaternion, dtype=np.float64)
        if position.shape != (3,) or not np.all(np.isfinite(position)):
            raise ValueError(f"TCP target position must be 3 finite values, got {position}")
        norm = np.linalg.norm(quaternion)
        if quaternion.shape != (4,) or not abs(norm - 1.0) < 1e-3:
            raise ValueError(f"TCP target quaternion must be a unit (x, y, z, w), got {quaternion}")
        self._target_position = position
        self._target_quaternion = quaternion / norm
        self._on_target = False

    def set_arm_links(self, segments: list[tuple[np.ndarray, np.ndarray, float]]) -> None:
        """Place the arm's link capsules on ``segments`` ((start, end, radius) per link, base
        frame; ``kil_sim.arms.ArmModel.link_segments``), one per link this world was built with."""
        if len(segments) != len(self._arm_links):
            raise ValueError(f"{len(segments)} link segments for a world built with {len(self._arm_links)} links")
        for mocap, (start, end, _radius) in zip(self._arm_links, segments, strict=True):
            start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
            self.data.mocap_pos[mocap] = 0.5 * (start + end)
            self.data.mocap_quat[mocap] = _z_onto(end - start)

    def set_gripper(self, opening: float) -> None:
        """Gripper opening command, 0 (close, squeezing with the grip force) .. 1 (fully open)."""
        opening = float(np.clip(opening, 0.0, 1.0))
        self.data.ctrl[self._actuators] = opening * self._half_open

    def step(self, duration_s: float) -> None:
        """Advance physics by ``duration_s`` (rounded to whole physics steps, at least one), calling
        each of ``physics_observers`` with the world after every step."""
        dt = self.model.opt.timestep
        gripper = self.config.gripper
        max_step, max_turn = gripper.max_linear_speed * dt, gripper.max_angular_speed * dt
        for _ in range(max(1, round(duration_s / dt))):
            if not self._on_target:  # the setpoint moves towards the target within the speed limits
                position = self.data.mocap_pos[self._mocap]
                delta = self._target_position - position
                distance = np.linalg.norm(delta)
                current = _xyzw(self.data.mocap_quat[self._mocap])
                angle = float(quat_angle(current, self._target_quaternion))
                if distance <= max_step and angle <= max_turn:  # there: it stays until the next target
                    position[:] = self._target_position
                    self.data.mocap_quat[self._mocap] = _mj_quat(self._target_quaternion)
                    self._on_target = True
                else:
                    position += delta if distance <= max_step else delta * (max_step / distance)
                    fraction = 1.0 if angle <= max_turn else max_turn / angle
                    self.data.mocap_quat[self._mocap] = _mj_quat(quat_slerp(current, self._target_quaternion, fraction))
            mujoco.mj_step(self.model, self.data)
            for observer in self.physics_observers:
                observer(self)

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Measured TCP position (3,) and quaternion (4,) in the base frame."""
        return self.data.xpos[self._gripper].copy(), _xyzw(self.data.xquat[self._gripper])

    def commanded_tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The speed-limited TCP setpoint the gripper is being pulled to (base frame)."""
        return self.data.mocap_pos[self._mocap].copy(), _xyzw(self.data.mocap_quat[self._mocap])

    def gripper_command(self) -> float:
        """Commanded opening, 0 (close) .. 1 (fully open): what the fingers are driven towards."""
        return float(np.clip(np.mean(self.data.ctrl[self._actuators]) / self._half_open, 0.0, 1.0))

    def gripper_opening(self) -> float:
        """Measured opening, 0 (closed) .. 1 (fully open)."""
        q = np.mean([self.data.qpos[i] for i in self._finger_qpos])
        return float(np.clip(q / self._half_open, 0.0, 1.0))

    def robot_state(self, stamp_ns: int | None = None) -> RobotStateData:
        """Proprioception as the robot adapter publishes it (stamp defaults to sim time)."""
        position, quaternion = self.tcp_pose()
        return RobotStateData(
            stamp_ns=round(self.time * 1e9) if stamp_ns is None else stamp_ns,
            frame_id=self.config.base_frame,
            position=position,
            quaternion=quaternion,
            gripper=self.gripper_opening(),
            joint_names=FINGER_JOINTS,
            joint_positions=np.array([self.data.qpos[i] for i in self._finger_qpos]),
        )

    def object_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Position (3,) and quaternion (4,) of an object's frame in the base frame."""
        body = self._body_ids[self.object_index(name)]
        return self.data.xpos[body].copy(), _xyzw(self.data.xquat[body])

    def keypoints(self, name: str) -> dict[str, np.ndarray]:
        """Ground-truth keypoints of an object in the base frame (m)."""
        index = self.object_index(name)
        position, quaternion = self.object_pose(name)
        rotation = quat_to_matrix(quaternion)
        return {k: rotation @ np.asarray(p) + position for k, p in self.objects[index].model.keypoints.items()}

    def in_contact_with_gripper(self, name: str) -> bool:
        """True when any geom of object ``name`` touches the gripper (palm or fingers)."""
        body = self._body_ids[self.object_index(name)]
        bodies = self.model.geom_bodyid
        for contact in self.data.contact[: self.data.ncon]:
            pair = (bodies[contact.geom1], bodies[contact.geom2])
            if body in pair and any(b in self._gripper_bodies for b in pair):
                return True
        return False

    def robot_contact_force(self) -> tuple[float, str]:
        """The net contact force (N) that everything else exerts on the robot (gripper, fingers and
        arm links; world frame, vector sum: a grasp's squeeze cancels, a held object's weight does
        not), and the name of the body (or static geom, e.g. the table) pushing hardest ("" when
        nothing touches the robot)."""
        net, hardest, push = np.zeros(3), -1, 0.0
        for _, other, normal, force in self._robot_contact_forces():
            net += force
            if normal > push:
                hardest, push = other, normal
        return float(np.linalg.norm(net)), self._geom_owner(hardest) if hardest >= 0 else ""

    def robot_contacts(self) -> list[tuple[str, str, np.ndarray]]:
        """Every contact on the robot now, hardest first: (the robot's body, what touches it — a
        body, or a static geom such as the table —, the force (3,) it exerts on the robot, world
        frame, N). Where :meth:`robot_contact_force` says how hard, this says where (a finger on
        the mug's rim, a link on the table)."""
        found = [(self._geom_owner(mine), self._geom_owner(other), force)
                 for mine, other, _, force in self._robot_contact_forces()]  # fmt: skip
        return sorted(found, key=lambda c: -float(np.linalg.norm(c[2])))

    def _robot_contact_forces(self) -> list[tuple[int, int, float, np.ndarray]]:
        """Each contact between the robot and something else: (the robot's geom, the other geom,
        the normal force, the force (3,) on the robot in the world frame; N)."""
        found: list[tuple[int, int, float, np.ndarray]] = []
        if self.data.ncon == 0:
            return found
        contacts = self.data.contact  # arrays over this step's contacts: select the robot's at once
        geom1, geom2 = contacts.geom1, contacts.geom2
        robot, bodies = self._robot_bodies, self.model.geom_bodyid
        first, second = robot[bodies[geom1]], robot[bodies[geom2]]
        force = np.zeros(6)
        for i in np.flatnonzero(first != second):  # robot-robot (excluded in the model) or robot-free: skipped
            mujoco.mj_contactForce(self.model, self.data, i, force)  # contact frame; +normal pushes geom2
            world = contacts.frame[i].reshape(3, 3).T @ force[:3]
            if second[i]:
                found.append((int(geom2[i]), int(geom1[i]), float(force[0]), world))
            else:
                found.append((int(geom1[i]), int(geom2[i]), float(force[0]), -world))
        return found

    def _geom_owner(self, geom: int) -> str:
        """The name of the body that owns ``geom``, or the geom's own name for a static one."""
        body = self.model.geom_bodyid[geom]
        kind, index = (mujoco.mjtObj.mjOBJ_BODY, body) if body else (mujoco.mjtObj.mjOBJ_GEOM, geom)
        return mujoco.mj_id2name(self.model, kind, index) or f"geom {geom}"

    def on_table(self, name: str) -> bool:
        """True when any geom of object ``name`` touches the table top."""
        body = self._body_ids[self.object_index(name)]
        bodies = self.model.geom_bodyid
        for contact in self.data.contact[: self.data.ncon]:
            geoms = (contact.geom1, contact.geom2)
            if self._table in geoms and body in (bodies[contact.geom1], bodies[contact.geom2]):
                return True
        return False

    def object_index(self, name: str) -> int:
        """Index of object ``name`` in ``objects`` (its instance-mask value is this + 1)."""
        for index, placed in enumerate(self.objects):
            if placed.name == name:
                return index
        raise KeyError(f"no object named {name!r}; objects: {[o.name for o in self.objects]}")

    # --- camera -----------------------------------------------------------------------------

    @property
    def camera_intrinsics(self) -> CameraIntrinsics:
        return self.config.camera.intrinsics()

    @property
    def camera_extrinsics(self) -> RigidTransform:
        """Pose of the camera optical frame in the robot base frame."""
        return self.config.camera.extrinsics(self.config.base_frame)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (N, 2) of base-frame points (N, 3) in the scene camera, and whether each lies in
        front of it (pixels are zero where not)."""
        optical = self.camera_extrinsics.inverse().apply(np.asarray(points, np.float64).reshape(-1, 3))
        in_front = optical[:, 2] > 1e-3
        uv = np.zeros((len(optical), 2))
        uv[in_front] = self.camera_intrinsics.project(optical[in_front])
        return uv, in_front

    def visible(self, points: np.ndarray, depth_mm: np.ndarray, tolerance_m: float = VISIBLE_DEPTH_M) -> np.ndarray:
        """(N,) True where a base-frame point is seen in a rendered depth image: inside the image,
        in front of the camera, and the depth at its pixel within ``tolerance_m`` of its own (not
        hidden behind something, on the camera side of its object)."""
        points = np.asarray(points, np.float64).reshape(-1, 3)
        uv, in_front = self.project(points)
        depth_of_point = self.camera_extrinsics.inverse().apply(points)[:, 2]
        pixel = np.rint(uv).astype(int)
        height, width = depth_mm.shape
        inside = in_front & (pixel[:, 0] >= 0) & (pixel[:, 0] < width) & (pixel[:, 1] >= 0) & (pixel[:, 1] < height)
        seen = np.zeros(len(points), bool)
        rendered = depth_mm[pixel[inside, 1], pixel[inside, 0]] / 1000.0
        seen[inside] = (rendered > 0) & (np.abs(rendered - depth_of_point[inside]) < tolerance_m)
        return seen

    def render(self, instance_mask: bool = False) -> CameraFrame:
        """Render the scene camera: colour, depth in mm and optionally per-object instance masks."""
        if self._renderer is None:
            self._renderer = self.camera_renderer()
        return self.camera_frame(self._renderer.render(self.data, segmentation=instance_mask), self.time)

    def camera_renderer(self) -> CameraRenderer:
        """A new renderer of the scene camera at the configured size, bound to the calling thread
        (the caller closes it; :meth:`render` keeps one of its own)."""
        camera = self.config.camera
        return CameraRenderer(self.model, CAMERA_NAME, camera.width, camera.height)

    def capture_camera(self) -> SceneCapture:
        """The scene camera's view of the state now, to draw later with a renderer of
        :meth:`camera_renderer` (possibly on another thread; one capture per world, reused: take
        the next only once the last one was drawn)."""
        if self._capture is None:
            self._capture = SceneCapture(self.model, CAMERA_NAME)
        return self._capture.capture(self.data)

    def camera_frame(self, rendered: RenderedFrame, stamp_s: float) -> CameraFrame:
        """A rendered frame as the camera delivers it: depth in mm within the sensor's range and
        geom ids turned into the instance mask."""
        camera = self.config.camera
        mask = None
        if rendered.geom_ids is not None:
            mask = self._geom_instance[np.where(rendered.geom_ids < 0, self.model.ngeom, rendered.geom_ids)]
        return CameraFrame(
            stamp_s=stamp_s,
            rgb=rendered.rgb,
            depth_mm=depth_to_millimetres(rendered.depth_m, camera.min_range_m, camera.max_range_m),
            instance_mask=mask,
        )

    def close(self) -> None:
        """Release the renderer's GL context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
