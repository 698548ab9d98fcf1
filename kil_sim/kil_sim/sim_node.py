"""``sim_node``: the MuJoCo arm, gripper and RGB-D camera behind the real drivers' topics.

Publishes (default names, all remappable):
    /camera/color/image_raw (rgb8), /camera/depth/image_raw (16UC1, mm, aligned to colour),
    /camera/color/camera_info at ``camera_rate_hz``; /kil/robot_state at ``state_rate_hz``;
    /kil/keypoints/oracle (ground-truth KeypointArray) with the camera frames;
    /camera/instance_mask (16UC1 object index + 1) when ``publish_instance_mask``.
TF: the camera's pose ``base_frame`` -> ``camera_frame`` on /tf_static (latched; re-sent when an
    episode's configuration moves the camera) and the gripper's ``base_frame`` -> ``tcp_frame`` on
    /tf at the state rate, as a calibrated real setup and its arm driver provide them.
Subscribes: /kil/servo_target (geometry_msgs/PoseStamped, TCP in the base frame),
    /kil/gripper_command (std_msgs/Float32, opening 0..1).
Services: ~/reset (kil_interfaces/srv/ResetEpisode) to a numbered task configuration.
Episodes: the task's success check runs at 10 Hz; the first success, or ``max_episode_s`` without
    one, ends the episode: /kil/episode_outcome (kil_interfaces/EpisodeOutcome, latched) and a log
    line say how (success, completion, duration, and for a failure where the objects are). A
    ~/reset starts the next episode.

Time: the node owns the simulated clock and publishes it on ``/clock`` (rosgraph_msgs/Clock):
physics advances by ``real_time_factor`` x the elapsed wall time (capped after a stall), starting
at the wall time of start-up, and every stamp, rate and the episode limit are in simulated time.
The other nodes of a sim graph run with ``use_sim_time``, so a slow machine (or
``real_time_factor:=0.25``) slows the whole loop instead of starving it.
Robot: ``robot:=floating`` (default) is the fast gripper-only model: /kil/servo_target moves the
gripper, /kil/robot_state reports it. ``robot:=ur5e`` simulates the arm (``kil_sim.arms``, joints
within their limits and speeds) behind ur_robot_driver's interface (``kil_sim.driver_interfaces``:
joint_states, forward_position_controller/commands) for ``kil_control.ur5e_node``, which then
publishes /kil/robot_state; the gripper body follows the arm's TCP. ``robot:=lite6`` likewise
behind xarm_api's services and robot_states under ``xarm_hw_ns`` for ``kil_control.lite6_node``
(Cartesian servo targets through the controller's own inverse kinematics and step rule; the
gripper through its open/close services instead of /kil/gripper_command). The arm starts at the
joints that put its TCP on the scene's gripper home pose. Each task's scene is laid out where the
arm reaches it (``ArmModel.scene_offset``; ``scene_layout:=simulated`` keeps the floating
gripper's layout, where a checkpoint trained in the simulator saw it; configurations the arm
cannot reach there are refused).
Collisions (robot:=lite6/ur5e, ``kil_sim.arm_collision``): a net contact force on the arm and gripper
above ``collision_force_n`` for ``collision_time_s``, or a link's axis below the table top, stops the
arm as its controller would (Lite6: error C31 in robot_states until ``clean_error``, ``set_mode`` 1,
``set_state`` 0; UR5e: a protective stop until ``dashboard_client/unlock_protective_stop``) and ends
the episode as a failure whose reason starts with "collision:". A ~/reset does not clear it (it
does not on the real arm either).
Controller: with ``controller:=expert`` the task's scripted expert drives the arm from inside the
node, publishing one-pose chunks on /kil/action_chunk at 10 Hz (as teleoperation does) once
interpolator_node commands the arm.
Camera: a frame falling due is captured at that instant (``SimWorld.capture_camera``) and drawn
and published on a thread of its own (``kil_sim.camera_thread``) while physics goes on, as a real
camera is a device of its own; a frame due while the last is still being drawn is skipped.
/diagnostics (1 Hz), check ``simulation``: the episode (task, setting, index, simulated seconds,
outcome) and the real-time factor achieved since the last report; WARN when it falls below 80 % of
``real_time_factor`` (this machine does not keep up: lower it). Also the simulated clock
(``sim_time_s``) and counters: ``physics_ticks``, ``camera_frames`` (published),
``camera_frames_skipped`` and, for the floating gripper, ``contacts_over_arm_limit`` (contacts over
the arms' collision rule, each logged with the pose: what a Lite6 or UR5e would have stopped).
"""

from __future__ import annotations

import sys
import time
from functools import partial

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32

from kil_interfaces import conversion
from kil_interfaces.calibration import RigidTransform
from kil_interfaces.diagnostics import ERROR, OK, WARN, Check, Diagnostics
from kil_interfaces.msg import ActionChunk, EpisodeOutcome, KeypointArray, RobotState
from kil_interfaces.node_runtime import ThrottledWarning, WarnOnce, declare, qos_event_callbacks, spin_node
from kil_interfaces.srv import ResetEpisode
from kil_interfaces.tf import StaticTransformBroadcaster, TransformBroadcaster
from kil_sim.arm_collision import CollisionConfig, CollisionMonitor, collision_pose
from kil_sim.arms import arm as arm_model
from kil_sim.camera import CameraConfig
from kil_sim.camera_thread import CameraJob, CameraThread
from kil_sim.driver_interfaces import UrDriverInterface, XArmDriverInterface
from kil_sim.expert import ScriptedExpert
from kil_sim.oracle import oracle_keypoints
from kil_sim.reachability import check_configuration
from kil_sim.rollout import ExpertController
from kil_sim.scene import SceneConfig
from kil_sim.simulated_arm import SimulatedArm
from kil_sim.tasks import SETTINGS, EpisodeConfig, explain, left_scene, sample_configuration, task

_NS = 1_000_000_000
#: sim_node's robot models: the gripper alone, or an arm behind its vendor driver's interface.
ROBOTS = ("floating", "ur5e", "lite6")
#: Where an arm's scene is laid out: for the arm (``ArmModel.scene_offset``), or as simulated.
SCENE_LAYOUTS = ("arm", "simulated")


def follow_arm(world, arm: SimulatedArm) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Put the world's gripper target on the arm's TCP and its link capsules on the arm's links;
    returns the links' segments (``SimulatedArm.tcp_pose_and_links``)."""
    tcp, links = arm.tcp_pose_and_links()
    world.set_target(*tcp)
    world.set_arm_links(links)
    return links


class SimNode(Node):
    """Runs one :class:`~kil_sim.world.SimWorld` in real time behind ROS topics."""

    def __init__(self) -> None:
        super().__init__("sim_node")
        p = partial(declare, self)
        self.task = p("task", "place_mug", "task whose configuration is loaded at start-up")
        self.setting = p("setting", "in_distribution", f"configuration setting: {', '.join(SETTINGS)}")
        self.index = p("index", 0, "configuration number within the setting")
        camera_rate = p("camera_rate_hz", 15.0, "camera frame rate (Hz)")
        state_rate = p("state_rate_hz", 100.0, "robot state rate (Hz); physics advances at this rate")
        width = p("width", 640, "image width (px)")
        height = p("height", 480, "image height (px)")
        self.base_frame = p("base_frame", "link_base", "robot base frame (frame_id of poses)")
        optical_frame = p("camera_frame", "camera_color_optical_frame", "camera optical frame")
        reliability = p("image_reliability", "reliable", "image QoS reliability: reliable or best_effort")
        self.publish_mask = p("publish_instance_mask", False, "publish per-object instance masks")
        self.tcp_frame = p("tcp_frame", "link_tcp", "gripper TCP frame (child of base_frame on /tf)")
        self.max_episode_s = p("max_episode_s", 40.0, "an episode without success ends as a failure after this (s)")
        self.rtf = p("real_time_factor", 1.0, "simulated seconds per wall second (the loop's speed)")
        self.controller = p("controller", "none", "none (commands come from outside) or expert (scripted)")
        if self.rtf <= 0:
            raise ValueError(f"parameter real_time_factor must be > 0, got {self.rtf}")
        if self.controller not in ("none", "expert"):
            raise ValueError(f"parameter controller must be none or expert, got {self.controller!r}")
        self.robot = p("robot", "floating", f"robot model: {', '.join(ROBOTS)} (an arm behind its driver's interface)")
        if self.robot not in ROBOTS:
            raise ValueError(f"parameter robot must be one of {', '.join(ROBOTS)}, got {self.robot!r}")
        self.xarm_hw_ns = p("xarm_hw_ns", "ufactory", "robot:=lite6: namespace of the simulated xarm_api")
        self.arm_model = arm_model(self.robot) if self.robot != "floating" else None
        self.scene_layout = p(
            "scene_layout",
            "arm",
            "robot:=lite6/ur5e: arm (each task laid out where the arm reaches, ArmModel.scene_offset) or "
            "simulated (as for the floating gripper: where a checkpoint trained in the simulator saw it)",
        )
        if self.scene_layout not in SCENE_LAYOUTS:
            raise ValueError(
                f"parameter scene_layout must be one of {', '.join(SCENE_LAYOUTS)}, got {self.scene_layout!r}"
            )
        self.check_reach = p(
            "check_reach",
            True,
            "robot:=lite6/ur5e: refuse a configuration whose scripted expert path the arm cannot reach "
            "(at start-up: logged, no episode runs and diagnostics say why; ~/reset answers why)",
        )
        self.collisions = CollisionMonitor(
            CollisionConfig(
                force_n=p(
                    "collision_force_n",
                    50.0,
                    "robot:=lite6/ur5e: net contact force on the arm and gripper that its controller takes for a "
                    "collision (N; Lite6: error C31, UR5e: protective stop; robot:=floating: logged and counted, "
                    "nothing stops; 0: off)",
                ),
                duration_s=p("collision_time_s", 0.02, "robot:=lite6/ur5e: ...for at least this long (s)"),
                table_depth_m=p(
                    "collision_table_depth_m",
                    0.0,
                    "robot:=lite6/ur5e: a link axis this far below the table top is a collision (m; < 0: off)",
                ),
            )
        )
        self.state_ns, self.camera_ns = round(_NS / state_rate), round(_NS / camera_rate)
        if reliability not in ("reliable", "best_effort"):
            raise ValueError(f"parameter image_reliability must be reliable or best_effort, got {reliability!r}")
        camera = CameraConfig(width=width, height=height, frame_id=optical_frame)
        self.scene = SceneConfig(camera=camera, base_frame=self.base_frame)
        image_qos = QoSProfile(
            depth=2,
            reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        )
        self.color_pub, self.depth_pub, self.info_pub, self.mask_pub = (
            self.create_publisher(
                kind, topic, image_qos, event_callbacks=qos_event_callbacks(self, topic, image_qos, "publisher")
            )
            for kind, topic in (
                (Image, "camera/color/image_raw"),
                (Image, "camera/depth/image_raw"),
                (CameraInfo, "camera/color/camera_info"),
                (Image, "camera/instance_mask"),
            )
        )
        if self.robot == "floating":
            self.state_pub = self.create_publisher(RobotState, "kil/robot_state", 10)
            self.create_subscription(PoseStamped, "kil/servo_target", self._on_target, 10)
        self.oracle_pub = self.create_publisher(KeypointArray, "kil/keypoints/oracle", 10)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.outcome_pub = self.create_publisher(EpisodeOutcome, "kil/episode_outcome", latched)
        self.clock_pub = self.create_publisher(Clock, "/clock", 10)
        self.chunk_pub = self.create_publisher(ActionChunk, "kil/action_chunk", 10)
        if self.robot != "lite6":  # the Lite6's gripper is driven through xarm_api's services
            self.create_subscription(Float32, "kil/gripper_command", self._on_gripper, 10)
        self.create_service(ResetEpisode, "~/reset", self._on_reset)
        self.static_tf = StaticTransformBroadcaster(self)
        self.tf = TransformBroadcaster(self)
        self.world = None
        self.arm: SimulatedArm | None = None
        self.driver: UrDriverInterface | XArmDriverInterface | None = None
        self._warn = ThrottledWarning(self.get_logger(), 2.0)
        self.sim_ns = time.time_ns()  # the simulated clock starts at the wall time of start-up
        self._last_wall = time.monotonic()
        self.physics_ticks = 0  # physics callbacks that advanced the simulated clock
        # frames are drawn and published on a thread of their own while physics goes on
        self.camera = CameraThread(self._publish_frame)
        self.camera_frames_skipped = 0  # due while the last frame was still being drawn
        self.contacts_over_arm_limit = 0  # robot:=floating: contacts an arm's controller would have stopped
        first = self._configuration(self.task, self.setting, self.index)
        self._refused = self._reach_problem(first)  # the configuration loaded, but no episode runs
        if self._refused:
            self.get_logger().error(f"refused: {self._refused}; ~/reset to a configuration the arm reaches")
        self._load(first)
        # Paced by the wall clock (a steady clock: this node is the source of simulated time).
        self.create_timer(1.0 / state_rate, self._on_physics, clock=RosClock(clock_type=ClockType.STEADY_TIME))
        self._warn_once = WarnOnce(self.get_logger())
        self._outcome = ""
        self._rtf_mark = (time.monotonic(), self.sim_ns)
        self.diagnostics = Diagnostics(self, hardware_id="mujoco")
        self.diagnostics.add("simulation", self._check_simulation)
        self.get_logger().info(
            f"simulating {self.task} ({self.setting} #{self.index}); camera {width}x{height} at {camera_rate} Hz; "
            f"real_time_factor {self.rtf}; controller {self.controller}; robot {self.robot}"
        )

    def _check_simulation(self) -> Check:
        wall, sim = time.monotonic(), self.sim_ns
        last_wall, last_sim = self._rtf_mark
        self._rtf_mark = (wall, sim)
        achieved = (sim - last_sim) / _NS / max(wall - last_wall, 1e-9)
        values = {
            "task": self.task,
            "setting": self.setting,
            "index": self.index,
            "episode_s": (sim - self._episode_start_ns) / _NS,
            "real_time_factor": achieved,
            "requested_real_time_factor": self.rtf,
            "sim_time_s": f"{sim / _NS:.3f}",  # the simulated clock, to the millisecond
            "physics_ticks": self.physics_ticks,
            "camera_frames": self.camera.frames,
            "camera_frames_skipped": self.camera_frames_skipped,
            "contacts_over_arm_limit": self.contacts_over_arm_limit,
        }
        episode = f"{self.task} {self.setting} #{self.index}"
        if self._refused:
            return Check(ERROR, f"refused: {self._refused}", values)
        if self._outcome:
            values["outcome"] = self._outcome
        if achieved < 0.8 * self.rtf:
            return Check(WARN, f"{episode}: running at {achieved:.2f}x real time of {self.rtf}x requested", values)
        return Check(OK, f"{episode}: {self._outcome or 'running'}", values)

    def close(self) -> None:
        """Stop the camera thread and release the renderers (called by spin_node at shutdown)."""
        self.camera.close()
        self.world.close()

    def _load(self, episode: EpisodeConfig) -> None:
        if self.world is not None:
            self.world.close()
        self.episode = episode
        self.world = episode.make_world(self.arm_model.link_capsules() if self.arm_model is not None else ())
        if self.arm_model is not None:
            # The arm starts where the floating gripper would: its TCP on the gripper's home pose.
            self.arm = SimulatedArm(self.arm_model, *self.world.commanded_tcp_pose())
            follow_arm(self.world, self.arm)
            if self.driver is None and self.robot == "ur5e":
                self.driver = UrDriverInterface(self, self.arm, self._warn, self._on_arm_commanded)
            elif self.driver is None:
                self.driver = XArmDriverInterface(
                    self, self.arm, self._warn, self._set_gripper, self._on_arm_commanded, self.xarm_hw_ns
                )
            self.driver.reset(self.arm)
        self.collisions.reset()
        self.world.step(0.3)  # objects settle
        self.static_tf.send([self.world.camera_extrinsics], self.sim_ns)
        self._episode_start_ns = self.sim_ns
        self._next_state = self._next_camera = self._next_check = self.sim_ns
        self._success_state: dict = {}
        self._ended = False
        self._outcome = ""
        self._expert = None  # created when the arm is first commanded (controller:=expert)
        if self.publish_mask:
            values = ",".join(f"{i + 1}:{o.model.category}" for i, o in enumerate(self.world.objects))
            self.get_logger().info(f"/camera/instance_mask values (keypoint_node mask_categories): {values}")

    def _stamp(self):
        return conversion.ns_to_time(self.sim_ns)

    # --- callbacks --------------------------------------------------------------------------------

    def _on_physics(self) -> None:
        """Advance the simulation by the wall time since the last call x real_time_factor, then
        publish whatever fell due in simulated time (clock, state, camera, checks, expert)."""
        wall = time.monotonic()
        elapsed = min(wall - self._last_wall, 0.1)  # never leap after a stall
        self._last_wall = wall
        step_ns = round(elapsed * self.rtf * _NS)
        if step_ns <= 0:
            return
        self.physics_ticks += 1
        if self.arm is not None:  # the arm's joints move, the gripper body follows its TCP
            if self._refused:  # no episode on a refused configuration: the arm holds
                self.arm.command(self.arm.joints)
            self.arm.step(step_ns / _NS)
            links = follow_arm(self.world, self.arm)
        self.world.step(step_ns / _NS)
        self.sim_ns += step_ns
        if self.arm is not None and not self._refused:
            self._check_collision(links)
        elif self.arm is None:
            self._watch_contact()
        self.clock_pub.publish(Clock(clock=self._stamp()))
        if self.sim_ns >= self._next_state:
            self._next_state = max(self._next_state + self.state_ns, self.sim_ns)
            state = self.world.robot_state(self.sim_ns)
            if self.driver is not None:
                self.driver.publish_state(self.sim_ns)
            else:
                self.state_pub.publish(conversion.robot_state_to_msg(state))
            tcp = RigidTransform(self.base_frame, self.tcp_frame, state.position, state.quaternion)
            self.tf.send([tcp], self.sim_ns)
        if self.sim_ns >= self._next_camera:
            self._next_camera = max(self._next_camera + self.camera_ns, self.sim_ns)
            self._on_camera()
        if self.sim_ns >= self._next_check:
            self._next_check = max(self._next_check + _NS // 10, self.sim_ns)
            self._on_check()
            if self._expert is not None and not self._ended and not self._expert.done:
                self.chunk_pub.publish(conversion.action_chunk_to_msg(self._expert.act(self.world, self.sim_ns)))

    def _watch_contact(self) -> None:
        """robot:=floating: nothing stops the gripper, but where its contact goes over the arms'
        collision rule (``collision_force_n`` for ``collision_time_s``) an arm's controller would
        have: logged with the pose and counted (diagnostics ``contacts_over_arm_limit``), so a
        live run on the floating gripper tells which of its contacts a Lite6 or UR5e would stop."""
        found = self.collisions.update(self.world, [], self.sim_ns / _NS)
        if found is None:
            return
        self.collisions.disarm()  # once per contact
        self.contacts_over_arm_limit += 1
        at = (self.sim_ns - self._episode_start_ns) / _NS
        self.get_logger().warning(
            f"floating gripper {at:.2f} s into {self.task} {self.setting} #{self.index}: {found}, which an arm's "
            f"controller would have stopped (nothing stops the floating gripper); {collision_pose(self.world)}"
        )

    def _check_collision(self, links: list[tuple[np.ndarray, np.ndarray, float]]) -> None:
        """The controller's collision detection (``kil_sim.arm_collision``) on the arm's link
        segments now: on a collision the driver stops the arm (Lite6: error C31; UR5e: protective
        stop) and the episode fails."""
        if self.driver.faulted:
            return  # stopped already: the arm holds until the fault is cleared
        collision = self.collisions.update(self.world, links, self.sim_ns / _NS)
        if collision is None:
            return
        self.driver.collide(collision)
        self.collisions.disarm()  # until the arm is off what it hit
        self.get_logger().warning(f"collision: {collision}; {collision_pose(self.world)}")
        if not self._ended:
            completion = task(self.task).success(self.world, self._success_state)
            reaction = "controller error C31" if self.robot == "lite6" else "protective stop"
            duration = (self.sim_ns - self._episode_start_ns) / _NS
            self._end(False, completion, duration, f"collision: {collision} ({reaction})")

    def _on_check(self) -> None:
        """The task's success check; ends the episode on success or at the time limit."""
        if self._ended or self._refused:
            return
        completion = task(self.task).success(self.world, self._success_state)
        duration = (self.sim_ns - self._episode_start_ns) / _NS
        gone = left_scene(self.world) if completion < 1.0 else None
        if completion >= 1.0:
            self._end(True, completion, duration, "task complete")
        elif gone is not None:
            self._end(False, completion, duration, gone)
        elif duration >= self.max_episode_s:
            reason = f"time limit of {self.max_episode_s:.0f} s reached; {explain(self.world, task(self.task))}"
            self._end(False, completion, duration, reason)

    def _end(self, success: bool, completion: float, duration: float, reason: str) -> None:
        self._ended = True
        msg = EpisodeOutcome(task=self.task, setting=self.setting, index=self.index, success=success, reason=reason)
        msg.header.stamp = self._stamp()
        msg.completion, msg.duration = float(completion), float(duration)
        self.outcome_pub.publish(msg)
        text = f"episode {self.task} {self.setting} #{self.index}: "
        self._outcome = f"success in {duration:.1f} s" if success else f"failure after {duration:.1f} s ({reason})"
        text += self._outcome
        # One call site per severity: rclpy refuses a call site that changes its severity.
        if success:
            self.get_logger().info(text)
        else:
            self.get_logger().warning(text)

    def _on_camera(self) -> None:
        """A frame falls due: capture the scene now and have the camera thread draw and publish it
        (physics goes on meanwhile); skipped while the last frame is still being drawn."""
        if not self.camera.idle:
            self.camera_frames_skipped += 1
            return
        oracle = oracle_keypoints(self.world, self.sim_ns)  # the same instant as the picture
        job = CameraJob(self.world, self.world.capture_camera(), self.sim_ns, self.publish_mask, oracle)
        self.camera.submit(job)

    def _publish_frame(self, frame, job: CameraJob) -> None:
        """On the camera thread: one drawn frame's images, camera_info and oracle keypoints."""
        stamp = job.stamp_ns
        intrinsics = job.world.camera_intrinsics
        optical = intrinsics.frame_id
        self.color_pub.publish(conversion.numpy_to_image(frame.rgb, "rgb8", stamp, optical))
        self.depth_pub.publish(conversion.numpy_to_image(frame.depth_mm, "16UC1", stamp, optical))
        self.info_pub.publish(conversion.camera_info_to_msg(intrinsics, stamp))
        if frame.instance_mask is not None:
            mask = frame.instance_mask.astype(np.uint16)
            self.mask_pub.publish(conversion.numpy_to_image(mask, "16UC1", stamp, optical))
        self.oracle_pub.publish(conversion.keypoints_to_msg(job.extra))

    def _on_target(self, msg: PoseStamped) -> None:
        if msg.header.frame_id not in ("", self.base_frame):
            self._warn_once(
                "frame", f"/kil/servo_target in frame {msg.header.frame_id!r} dropped; expected {self.base_frame!r}"
            )
            return
        p, q = msg.pose.position, msg.pose.orientation
        try:
            self.world.set_target(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))
        except ValueError as error:
            self._warn_once("target", f"/kil/servo_target dropped: {error}")
            return
        self._on_arm_commanded()

    def _on_arm_commanded(self) -> None:
        if self.controller == "expert" and self._expert is None and not self._ended and not self._refused:
            # The arm is commanded (interpolator_node is up): the expert's episode starts now.
            spec = task(self.task)
            rng = np.random.default_rng(self.episode.seed)
            self._expert = ExpertController(ScriptedExpert(spec, self.world, rng), 10.0, self.base_frame)
            self._episode_start_ns = self.sim_ns

    def _configuration(self, task_name: str, setting: str, index: int) -> EpisodeConfig:
        """Configuration ``index`` of a task and setting, laid out for the arm
        (``ArmModel.scene_offset``: e.g. place_mug 8 cm nearer a Lite6's base) unless
        ``scene_layout`` is ``simulated``."""
        episode = sample_configuration(task_name, setting, index, scene=self.scene)
        if self.arm_model is None:
            return episode
        if self.scene_layout == "simulated":
            return episode
        offset = self.arm_model.scene_offset(task_name)
        if offset != (0.0, 0.0):
            self.get_logger().info(f"{task_name} laid out for the {self.robot}: scene moved by {offset} m")
        return episode.shifted(offset)

    def _reach_problem(self, episode: EpisodeConfig) -> str | None:
        """Why the arm cannot do ``episode`` (a pose of the scripted expert's path out of reach or
        beyond a joint limit), or None; a path only too fast for the joints is warned about (the
        controller slows it)."""
        if self.arm_model is None or not self.check_reach:
            return None
        check = check_configuration(episode, self.arm_model)
        where = f"{episode.task} {episode.setting} #{episode.index}"
        if check.unreachable:
            return f"{where} is beyond the {self.robot}'s reach ({check.unreachable} poses): {check.first_unreachable}"
        if check.too_fast:
            too_fast = f"{where}: the expert's path is too fast for the {self.robot}: {check.first_problem}"
            self.get_logger().warning(too_fast + " (the controller slows it)")
        if check.into_table:
            self.get_logger().warning(
                f"{where}: {check.into_table} poses of the expert's path put a {self.robot} link capsule into the "
                f"table (the simulated links do not collide with it): {check.first_into_table}"
            )
        return None

    def _set_gripper(self, opening: float) -> None:
        self.world.set_gripper(opening)

    def _on_gripper(self, msg: Float32) -> None:
        if not np.isfinite(msg.data):
            self._warn_once("gripper", "/kil/gripper_command is not finite; dropped")
            return
        self.world.set_gripper(float(msg.data))

    def _on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response):
        task = request.task or self.task
        setting = request.setting or self.setting
        try:
            episode = self._configuration(task, setting, int(request.index))
        except (KeyError, ValueError) as error:
            response.success, response.message = False, str(error).strip("'\"")
            return response
        problem = self._reach_problem(episode)
        if problem:
            self.get_logger().error(f"~/reset refused: {problem}")
            response.success, response.message = False, problem
            return response
        self.task, self.setting, self.index = task, setting, int(request.index)
        self._refused = None
        # a frame of the old scene being drawn is published before the answer, never after it
        self.camera.wait_idle(5.0)
        self._load(episode)
        response.success = True
        response.message = f"{task} {setting} #{request.index}: " + ", ".join(
            f"{o.name}={o.model.variant}" for o in episode.objects
        )
        return response


def main(args: list[str] | None = None) -> int:
    return spin_node(SimNode, args)


if __name__ == "__main__":
    sys.exit(main())
