"""The node graphs of a rollout and of demonstration recording, as plain data: which nodes run,
with which parameters and remappings, for a robot (``sim``, ``lite6``, ``ur5e``) and a camera
(``sim``, ``femto_bolt``, ``zed2i``). ``launch/rollout.launch.py`` and ``launch/teleop.launch.py``
turn them into launch actions on a ROS 2 install; ``kil_bringup.run_graph`` starts the same
processes without ``ros2 launch`` (here, and in tests).

Topic graph (DESIGN.md): camera -> keypoint_node -> policy_node -> interpolator_node -> robot;
for recording, Quest -> teleop_node -> interpolator_node -> robot, with recorder_node listening.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial

from kil_interfaces.checkpoint_info import checkpoint_extraction, checkpoint_observation
from kil_interfaces.tf import prefixed

ROBOTS = ("sim", "lite6", "ur5e")
CAMERAS = ("sim", "femto_bolt", "zed2i")
#: keypoint_node methods and policy_node inference modes (kept equal to kil_perception.pipeline.METHODS
#: and kil_policy.runner.INFERENCE_MODES by a test; not imported, so a launch file stays light).
METHODS = ("image", "instance", "track")
INFERENCE_MODES = ("module", "packed", "compiled", "graph")
#: policy_node's precisions for inference graph (kept equal to kil_policy.graphed.PRECISIONS by a test).
PRECISIONS = ("fp32", "tf32", "bf16")
#: policy_node's kernel fusion for inference graph (kept equal to kil_policy.graphed.FUSIONS by a test).
FUSIONS = ("none", "inductor", "triton")
#: QoS reliability of the image topics (keypoint_node, sim_node and recorder_node take it).
RELIABILITY = ("reliable", "best_effort")
#: Where policy_node's keypoints come from: keypoint_node, or the simulator's ground truth.
KEYPOINTS = ("perception", "oracle")

#: The robots the simulator has an arm model and a simulated vendor driver for (use_sim:=true).
SIMULATED_ARMS = ("ur5e", "lite6")
#: sim_node's scene layouts for a simulated arm (``kil_sim.sim_node.SCENE_LAYOUTS``; a test keeps
#: them equal, so that a launch file imports no simulator).
SCENE_LAYOUTS = ("arm", "simulated")
#: The TCP offset of the simulated UR5e's gripper (m; kept equal to kil_sim.arms by a test, not
#: imported, so a launch file stays light): its adapter is told it (xArm reports the TCP itself).
SIM_TCP_OFFSET_M = {"ur5e": 0.15}

#: The simulator's ``/camera/instance_mask`` values per task (object index + 1: the manipulated objects,
#: then the fixture; distractors are left unnamed), as keypoint_node's and policy_node's
#: ``mask_categories`` (kept equal to kil_sim.tasks by a test, not imported, so a launch file stays light).
SIM_MASK_CATEGORIES = {
    "place_mug": "1:mug,2:tray",
    "pick_pen": "1:pen,2:box",
    "place_mouse": "1:mouse,2:mouse_pad",
    "pour_bottle": "1:bottle,2:cup",
    "place_shoe": "1:shoe,2:tray",
    "place_2_shoes": "1:shoe,2:shoe,3:tray",
    "pick_2_pens": "1:pen,2:pen,3:box",
    "pick_pen_rotation": "1:pen,2:box",
    "place_mouse_rotation": "1:mouse,2:mouse_pad",
}
#: keypoint_node's settings that shape the keypoints (``kil_perception.pipeline.ExtractorConfig``): a
#: rollout takes them from the checkpoint's ``keypoint_extraction`` (what its training keypoints were
#: extracted with) and refuses an explicit one that differs. (``model`` and ``device`` say where the
#: weights are and what runs them, which differs between machines; they are not taken.)
EXTRACTION_SETTINGS = (
    "method", "backend", "feature_scale", "min_score", "colour", "tracker", "track_init", "redetect_every",
    "mask_guard", "instance_threshold", "layout_check",
)  # fmt: skip
#: keypoint_node's defaults for the settings a rollout always passes.
_EXTRACTION_DEFAULTS = {"method": "image", "backend": "effnet_lite0", "feature_scale": 1.0}

#: Each robot's base frame and the interpolator rate its servo interface wants.
_ROBOT = {
    "sim": {"base_frame": "link_base", "rate_hz": 100.0},
    "lite6": {"base_frame": "link_base", "rate_hz": 200.0},
    "ur5e": {"base_frame": "base", "rate_hz": 125.0},
}
#: The camera topics the kil nodes use (relative: they follow ``namespace``).
CAMERA_TOPICS = ("camera/color/image_raw", "camera/depth/image_raw", "camera/color/camera_info")


def base_frame(robot: str, namespace: str = "") -> str:
    """The robot's base frame (REP-105 ``base_link``-like frame the kil topics use), prefixed by
    the namespace (robots sharing one TF tree)."""
    _check_choices(("robot", robot, ROBOTS))
    return prefixed(namespace, _ROBOT[robot]["base_frame"])


#: The topics kil_bringup's RViz configuration shows (absolute there; remapped under a namespace).
RVIZ_TOPICS = ("/kil/keypoints/markers", "/kil/keypoints/image", "/kil/servo_target", "/camera/color/image_raw")


def rviz_remappings(namespace: str) -> dict:
    """RViz's configured topics moved into ``namespace`` ({} for the root)."""
    namespace = check_namespace(namespace)
    return {topic: topic.lstrip("/") for topic in RVIZ_TOPICS} if namespace else {}


def check_namespace(namespace: str) -> str:
    """A valid ROS namespace without its leading slash ('' for none); raises ValueError."""
    stripped = namespace.strip("/")
    if stripped and not all(
        part and (part[0].isalpha()) and part.replace("_", "").isalnum() for part in stripped.split("/")
    ):
        raise ValueError(
            "namespace must be ROS name tokens (letters, digits, underscores; each starting with a letter), "
            f"got {namespace!r}"
        )
    return stripped


@dataclass(frozen=True)
class NodeSpec:
    """One node: ``python -m module`` (``ros2 run package executable``) with parameters/remappings,
    in ``namespace`` ('' = the root)."""

    name: str
    package: str
    executable: str
    parameters: dict = field(default_factory=dict)
    remappings: dict = field(default_factory=dict)
    namespace: str = ""

    @property
    def module(self) -> str:
        return f"{self.package}.{self.executable}"

    def ros_args(self) -> list[str]:
        """``--ros-args`` arguments: node name, namespace, parameters, remappings."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:=/{self.namespace}"]
        for key, value in self.parameters.items():
            if isinstance(value, bool):
                value = str(value).lower()
            elif isinstance(value, list | tuple):
                value = "[" + ", ".join(str(v) for v in value) + "]"
            args += ["-p", f"{key}:={value}"]
        for source, target in self.remappings.items():
            args += ["-r", f"{source}:={target}"]
        return args


@dataclass(frozen=True)
class DriverInclude:
    """A vendor launch file the launch files include: ``<package share>/launch/<launch_file>`` with
    ``arguments``; ``source`` cites where the file and its arguments are defined."""

    package: str
    launch_file: str
    arguments: dict
    source: str


def _check_choices(*checks: tuple[str, str, tuple[str, ...]]) -> None:
    for name, value, allowed in checks:
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _default_camera(robot: str, camera: str | None, use_sim: bool = False) -> str:
    _check_choices(("robot", robot, ROBOTS))
    simulated = robot == "sim" or use_sim
    camera = camera or ("sim" if simulated else "femto_bolt")
    if camera not in CAMERAS:
        raise ValueError(f"camera must be one of {', '.join(CAMERAS)}, got {camera!r}")
    if simulated and camera != "sim":
        raise ValueError(f"the simulator renders its own camera (robot:={robot} use_sim:=true); use camera:=sim")
    if camera == "sim" and not simulated:
        raise ValueError(f"camera:=sim needs the simulator: robot:=sim, or robot:={robot} use_sim:=true")
    return camera


def _camera_name(camera: str, namespace: str) -> str:
    """The vendor driver's ``camera_name`` (its topic namespace): under ``namespace`` when given."""
    name = {"femto_bolt": "camera", "zed2i": "zed"}[camera]
    return f"{namespace}/{name}" if namespace else name


def camera_remappings(camera: str, namespace: str = "") -> dict:
    """The kil camera topics remapped onto the camera driver's (absolute) topics: orbbec_camera
    publishes ``/<camera_name>/color/image_raw``, ``/<camera_name>/depth/image_raw`` (aligned to
    colour with ``depth_registration:=true``) and ``/<camera_name>/color/camera_info``;
    zed_wrapper (4.x) ``/<camera_name>/zed_node/rgb/image_rect_color``,
    ``.../depth/depth_registered`` (32FC1 m) and ``.../rgb/camera_info``. The sim's are ours."""
    if camera == "sim":
        return {}
    root = "/" + _camera_name(camera, namespace)
    if camera == "femto_bolt":
        targets = (f"{root}/color/image_raw", f"{root}/depth/image_raw", f"{root}/color/camera_info")
    else:
        targets = (
            f"{root}/zed_node/rgb/image_rect_color",
            f"{root}/zed_node/depth/depth_registered",
            f"{root}/zed_node/rgb/camera_info",
        )
    return dict(zip(CAMERA_TOPICS, targets, strict=True))


def _xarm_hw_ns(namespace: str) -> str:
    """xarm_api's service namespace: its launch file joins ``prefix`` and ``hw_ns`` without a
    separator (``_robot_driver.launch.py``: ``'{}{}'.format(prefix.strip('/'), hw_ns.strip('/'))``)."""
    return "/" + (f"{namespace}/" if namespace else "").strip("/") + "ufactory"


def driver_includes(
    robot: str, camera: str | None = None, robot_ip: str = "", namespace: str = ""
) -> list[DriverInclude]:
    """The vendor launch files that bring up the robot's and the camera's drivers (none for the sim).

    Lite6: xarm_ros2 ``xarm_api/launch/lite6_driver.launch.py`` (robot_ip, report_type, hw_ns;
    prefix forwarded to ``_xarm_driver.launch.py``). UR5e: ur_robot_driver
    ``ur_robot_driver/launch/ur_control.launch.py`` (ur_type, robot_ip, initial_joint_controller,
    launch_rviz, tf_prefix). Femto Bolt: OrbbecSDK_ROS2 ``orbbec_camera/launch/femto_bolt.launch.py``
    (camera_name, depth_registration, enable_point_cloud). ZED 2i: zed-ros2-wrapper
    ``zed_wrapper/launch/zed_camera.launch.py`` (camera_model, camera_name).

    Raises:
        ValueError: a real robot without ``robot_ip``, or a bad robot/camera/namespace.
    """
    camera = _default_camera(robot, camera)
    namespace = check_namespace(namespace)
    if robot == "sim":
        return []
    if not robot_ip:
        raise ValueError(
            f"robot_ip:= is required to start the {robot} driver "
            "(or drivers:=false to attach to drivers started elsewhere)"
        )
    prefix = f"{namespace}/" if namespace else ""
    includes = []
    if robot == "lite6":
        includes.append(
            DriverInclude(
                "xarm_api",
                "lite6_driver.launch.py",
                {"robot_ip": robot_ip, "report_type": "dev", "hw_ns": "ufactory", "prefix": prefix},
                "github.com/xArm-Developer/xarm_ros2: xarm_api/launch/lite6_driver.launch.py "
                "(report_type dev: 100 Hz states)",
            )
        )
    else:
        includes.append(
            DriverInclude(
                "ur_robot_driver",
                "ur_control.launch.py",
                {
                    "ur_type": "ur5e",
                    "robot_ip": robot_ip,
                    "initial_joint_controller": "forward_position_controller",
                    "launch_rviz": "false",
                    "tf_prefix": prefix,
                },
                "github.com/UniversalRobots/Universal_Robots_ROS2_Driver: ur_robot_driver/launch/ur_control.launch.py",
            )
        )
    if camera == "femto_bolt":
        includes.append(
            DriverInclude(
                "orbbec_camera",
                "femto_bolt.launch.py",
                {
                    "camera_name": _camera_name(camera, namespace),
                    "depth_registration": "true",
                    "enable_point_cloud": "false",
                },
                "github.com/orbbec/OrbbecSDK_ROS2: orbbec_camera/launch/femto_bolt.launch.py",
            )
        )
    else:
        includes.append(
            DriverInclude(
                "zed_wrapper",
                "zed_camera.launch.py",
                {"camera_model": "zed2i", "camera_name": _camera_name(camera, namespace)},
                "github.com/stereolabs/zed-ros2-wrapper: zed_wrapper/launch/zed_camera.launch.py",
            )
        )
    return includes


def _robot_side(
    robot: str,
    camera: str | None,
    task: str,
    calibration: str,
    namespace: str,
    sim: dict | None = None,
    use_sim: bool = False,
):
    """Validated camera and the robot's own nodes: the simulator for ``sim``; for ``lite6`` the
    adapter to xarm_ros2, for ``ur5e`` to ur_robot_driver (the vendor drivers come from
    :func:`driver_includes`), and calibration_node publishing the calibration YAML on /tf_static
    when one is given (else TF must come from elsewhere, e.g. a hand-eye calibration tool).
    ``use_sim``: the simulator's arm behind a simulated vendor driver, then the same adapter.
    ``sim``: extra sim_node parameters."""
    camera = _default_camera(robot, camera, use_sim)
    frame = partial(prefixed, namespace)
    base = frame(_ROBOT[robot]["base_frame"])

    def sim_node(**extra) -> NodeSpec:
        parameters = {
            "task": task,
            **extra,
            "base_frame": base,
            "camera_frame": frame("camera_color_optical_frame"),
            "tcp_frame": frame("link_tcp"),
            **(sim or {}),
        }
        return NodeSpec("sim_node", "kil_sim", "sim_node", parameters)

    if use_sim:
        if robot not in SIMULATED_ARMS:
            raise ValueError(
                f"use_sim:=true simulates {' or '.join(SIMULATED_ARMS)} (arm and vendor driver); "
                f"robot:={robot} is the simulator's floating gripper already"
            )
        # Relative driver topics and services: they follow the namespace, so two simulated arms never meet.
        # Physics (and /clock) tick at the vendor controller's rate, so at 1x the adapter's stream
        # reaches the simulated controller at the rate it would reach the real one.
        rate = _ROBOT[robot]["rate_hz"]
        if robot == "ur5e":
            simulator = sim_node(robot=robot, state_rate_hz=rate)
            adapter = {"base_frame": base, "tcp_offset_m": SIM_TCP_OFFSET_M[robot]}
        else:
            simulator = sim_node(robot=robot, xarm_hw_ns="ufactory", state_rate_hz=rate)
            adapter = {"base_frame": base, "namespace": "ufactory"}
        return camera, [simulator, NodeSpec(f"{robot}_node", "kil_control", f"{robot}_node", adapter)]
    if robot in ("lite6", "ur5e"):
        name = f"{robot}_node"
        if robot == "lite6":
            adapter = NodeSpec(name, "kil_control", name, {"base_frame": base, "namespace": _xarm_hw_ns(namespace)})
        else:  # ur_robot_driver's topics are absolute (its controller spawner names /controller_manager)
            remap = {"joint_states": "/joint_states"}
            remap["forward_position_controller/commands"] = "/forward_position_controller/commands"
            adapter = NodeSpec(name, "kil_control", name, {"base_frame": base}, remap)
        nodes = [adapter]
        if calibration:
            params = {"calibration_file": calibration, "frame_prefix": namespace}
            nodes.append(NodeSpec("calibration_node", "kil_perception", "calibration_node", params))
        return camera, nodes
    return camera, [sim_node()]


def _interpolator(robot_cfg: dict, namespace: str) -> NodeSpec:
    return NodeSpec(
        "interpolator_node",
        "kil_control",
        "interpolator_node",
        {"rate_hz": robot_cfg["rate_hz"], "base_frame": prefixed(namespace, robot_cfg["base_frame"])},
    )


def teleop_graph(
    robot: str = "sim",
    camera: str | None = None,
    task: str = "place_mug",
    output_dir: str = "demos",
    calibration: str = "",
    input_type: str = "quest2ros",
    controller_to_base_rpy: tuple[float, float, float] = (0.0, 0.0, 0.0),
    scale: float = 1.0,
    image_reliability: str = "reliable",
    namespace: str = "",
    use_sim: bool = False,
) -> list[NodeSpec]:
    """The nodes for recording demonstrations: robot (or sim), teleop_node, recorder_node,
    interpolator_node. The recorder takes the camera topics through the camera's remappings.

    Args:
        output_dir: where recorder_node writes the episode bags.
        input_type: teleop_node's button messages (quest2ros or joy).
        controller_to_base_rpy, scale: teleop_node's mapping (see ``kil_teleop.quest_mapping``).
        image_reliability: QoS reliability of the image topics (``reliable``, the drivers'
            default, or ``best_effort``), for every node that publishes or subscribes them.
        namespace: every node in this namespace (relative topic names follow it) and the frames
            prefixed by it; '' = the root.
        use_sim: for ``lite6`` and ``ur5e``: the simulator's arm behind a simulated vendor driver
            in place of the real one (the adapter, teleop and recorder as on the robot).
    """
    _check_choices(
        ("input_type", input_type, ("quest2ros", "joy")), ("image_reliability", image_reliability, RELIABILITY)
    )
    namespace = check_namespace(namespace)
    sim = {"image_reliability": image_reliability}
    camera, nodes = _robot_side(robot, camera, task, calibration, namespace, sim, use_sim)
    robot_cfg = _ROBOT[robot]
    nodes = [
        *nodes,
        NodeSpec(
            "teleop_node",
            "kil_teleop",
            "teleop_node",
            {
                "input_type": input_type,
                "controller_to_base_rpy": [float(v) for v in controller_to_base_rpy],  # (a double array)
                "scale": float(scale),
            },
        ),
        NodeSpec(
            "recorder_node",
            "kil_teleop",
            "recorder_node",
            {"output_dir": output_dir, "task": task, "image_reliability": image_reliability},
            camera_remappings(camera, namespace),
        ),
        _interpolator(robot_cfg, namespace),
    ]
    return _finish(nodes, robot == "sim" or use_sim, namespace)


def expert_graph(
    robot: str = "sim",
    task: str = "place_mug",
    use_sim: bool = True,
    image_size: tuple[int, int] = (64, 48),
    camera_rate_hz: float = 2.0,
    max_episode_s: float = 40.0,
    real_time_factor: float = 1.0,
    namespace: str = "",
    scene_layout: str = "arm",
) -> list[NodeSpec]:
    """The simulator with its scripted expert (``controller:=expert``) driving the arm through
    the robot's real path: interpolator_node, then for ``lite6``/``ur5e`` with ``use_sim`` the
    adapter and the simulated vendor driver (``robot:=sim``: the floating gripper). A rehearsal
    of the control path without a policy or perception (the camera renders small and slowly).
    ``scene_layout``: sim_node's (``arm`` or ``simulated``), for ``lite6``/``ur5e``."""
    if robot == "sim":
        use_sim = False
    elif not use_sim:
        raise ValueError("expert_graph needs the simulator: robot:=sim, or use_sim with lite6/ur5e")
    namespace = check_namespace(namespace)
    sim = {
        "controller": "expert",
        "width": int(image_size[0]),
        "height": int(image_size[1]),
        "camera_rate_hz": float(camera_rate_hz),
        "max_episode_s": float(max_episode_s),
        "real_time_factor": float(real_time_factor),
    }
    sim |= _scene_layout(scene_layout, robot, use_sim)
    _, nodes = _robot_side(robot, None, task, "", namespace, sim, use_sim)
    return _finish([*nodes, _interpolator(_ROBOT[robot], namespace)], True, namespace)


def _scene_layout(scene_layout: str, robot: str, use_sim: bool) -> dict:
    """sim_node's ``scene_layout`` parameter for a graph ({} for the default); ValueError when it
    does not apply (only a simulated arm has a layout of its own)."""
    _check_choices(("scene_layout", scene_layout, SCENE_LAYOUTS))
    if scene_layout == "arm":
        return {}
    if robot not in SIMULATED_ARMS or not use_sim:
        raise ValueError(f"scene_layout:={scene_layout} applies to a simulated arm (lite6 or ur5e with use_sim)")
    return {"scene_layout": scene_layout}


def _same(a, b) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)))
    return a == b


def sim_mask_categories(task: str) -> str:
    """The simulator's instance-mask values of ``task`` ('1:mug,2:tray'); raises ValueError."""
    if task not in SIM_MASK_CATEGORIES:
        raise ValueError(f"task must be one of {', '.join(SIM_MASK_CATEGORIES)}, got {task!r}")
    return SIM_MASK_CATEGORIES[task]


def keypoint_settings(checkpoint: str, given: dict, simulated: bool, task: str) -> dict:
    """keypoint_node's extraction parameters for a rollout of ``checkpoint``.

    The settings its training keypoints were extracted with (its ``keypoint_extraction``), then
    ``given`` (the caller's explicit ones: each must agree with the checkpoint's, else ValueError
    naming both), then keypoint_node's defaults. Instance matching takes the simulator's instance
    masks in a simulated graph where the checkpoint's keypoints came from masks (or it does not
    say), SAM3 otherwise (on a real robot SAM3 stands where the simulator's masks stood); so do
    tracks started by instance matching (``track_init: instance``, the paper's KIL-T).
    """
    recorded = checkpoint_extraction(checkpoint) if checkpoint else {}
    trained = {k: v for k, v in recorded.items() if k in EXTRACTION_SETTINGS}
    for key, value in given.items():
        if key in trained and not _same(trained[key], value):
            raise ValueError(
                f"checkpoint {checkpoint} was trained on keypoints extracted with {key}={trained[key]!r} (its "
                f"keypoint_extraction); {key}:={value!r} would feed it keypoints of another extractor. "
                f"Leave {key} unset to use the checkpoint's"
            )
    settings = _EXTRACTION_DEFAULTS | trained | given
    _check_choices(("method", settings["method"], METHODS))
    # Tracks started by instance matching (the paper's KIL-T) need the instances as instance matching does.
    if settings["method"] == "instance" or (settings["method"] == "track" and settings.get("track_init") == "instance"):
        settings["instance_source"] = recorded.get("instance_source", "masks") if simulated else "sam3"
        if settings["instance_source"] == "masks":
            settings["mask_categories"] = sim_mask_categories(task)
    return settings


def rollout_graph(
    robot: str = "sim",
    camera: str | None = None,
    task: str = "place_mug",
    spec: str = "",
    checkpoint: str = "",
    calibration: str = "",
    backend: str | None = None,
    device: str = "cpu",
    max_input_age_s: float = 0.5,
    method: str | None = None,
    feature_scale: float | None = None,
    inference: str = "packed",
    precision: str = "fp32",
    fuse_kernels: str = "none",
    keypoints: str = "perception",
    image_size: tuple[int, int] | None = None,
    max_episode_s: float = 40.0,
    image_reliability: str = "reliable",
    real_time_factor: float = 1.0,
    namespace: str = "",
    autostart: bool = True,
    use_sim: bool = False,
    mask_categories: str = "",
    scene_layout: str = "arm",
    cpu_threads: int | None = None,
) -> list[NodeSpec]:
    """The nodes of a policy rollout.

    What runs follows the checkpoint: a KIL checkpoint gets keypoint_node with the extraction its
    training keypoints came from (:func:`keypoint_settings`); an RGB or S2 checkpoint gets the
    camera topics straight into policy_node (no keypoint_node), and S2 the instance masks too.

    Args:
        robot: ``sim``, ``lite6`` or ``ur5e``. camera: defaults to ``sim`` for the sim robot and
            ``femto_bolt`` otherwise.
        spec: keypoint spec YAML (KIL checkpoints); checkpoint: policy checkpoint directory; calibration: camera
            extrinsics YAML published on /tf_static by calibration_node (real robots; '' = the
            camera's TF comes from elsewhere; the simulator publishes its own).
        max_input_age_s: policy_node stops producing chunks when its inputs are older than this;
            raise it where perception is slow (CPU-only machines).
        cpu_threads: keypoint_node's and policy_node's torch CPU threads (None = the nodes' default,
            1; 0 = torch's, one per core: for a machine with cores to spare).
        backend, method, feature_scale: keypoint_node's feature backend, extraction method (image,
            instance, track) and frame scale before the backend; None (or '') = the checkpoint's
            (``keypoint_extraction``), else keypoint_node's defaults; a value that differs from the
            checkpoint's is refused.
        inference: policy_node's UNet execution (packed, compiled, graph on CUDA, module).
        precision, fuse_kernels: policy_node's tensor-core precision (fp32, tf32, bf16; kept only
            within its tolerance of fp32) and kernel fusion (none, inductor, triton), both for
            inference graph only.
        keypoints: ``perception`` (keypoint_node on the camera, needs ``spec``) or ``oracle`` (the
            simulator's ground-truth keypoints routed to policy_node; sim only).
        image_size: (width, height) of the simulated camera (the spec's reference image size).
        max_episode_s: the simulated episode's time limit (s).
        image_reliability: QoS reliability of the image topics (``reliable``, the drivers'
            default, or ``best_effort``), for every node that publishes or subscribes them.
        real_time_factor: simulated seconds per wall second (sim only; every other node of a sim
            graph runs on the simulator's ``/clock``).
        namespace: every node in this namespace (relative topic names follow it; a sim graph's
            ``/clock`` too) and the TF frames prefixed by it; '' = the root.
        autostart: keypoint_node and policy_node configure and activate themselves at start-up;
            False leaves them unconfigured for a lifecycle manager (or ``~/run_policy``).
        use_sim: for ``lite6`` and ``ur5e``: the simulator's arm behind a simulated vendor driver
            in place of the real one; the adapter, interpolator, policy and perception as on the robot.
        mask_categories: instance-mask values to categories ('1:mug,2:tray') of the masks on
            ``camera/instance_mask`` an S2 checkpoint needs on a real robot (a segmentation node's);
            the simulator's own in a simulated graph.
    """
    _check_choices(
        ("inference", inference, INFERENCE_MODES),
        ("precision", precision, PRECISIONS),
        ("fuse_kernels", fuse_kernels, FUSIONS),
        ("keypoints", keypoints, KEYPOINTS),
        ("image_reliability", image_reliability, RELIABILITY),
    )
    if real_time_factor <= 0:
        raise ValueError(f"real_time_factor must be > 0, got {real_time_factor}")
    if cpu_threads is not None and cpu_threads < 0:
        raise ValueError(f"cpu_threads must be 0 (torch's default) or more, got {cpu_threads}")
    threads = {} if cpu_threads is None else {"cpu_threads": int(cpu_threads)}
    if inference != "graph" and (precision != "fp32" or fuse_kernels != "none"):
        raise ValueError(f"precision:={precision} and fuse_kernels:={fuse_kernels} need inference:=graph")
    sim = {
        "max_episode_s": float(max_episode_s),
        "image_reliability": image_reliability,
        "real_time_factor": float(real_time_factor),
    }
    if image_size is not None:
        sim |= {"width": int(image_size[0]), "height": int(image_size[1])}
    sim |= _scene_layout(scene_layout, robot, use_sim)
    namespace = check_namespace(namespace)
    simulated = robot == "sim" or use_sim
    observation = (checkpoint_observation(checkpoint) if checkpoint else "") or "keypoints"
    extraction: dict = {}
    if observation == "s2":
        if simulated:
            mask_categories = mask_categories or sim_mask_categories(task)
        elif not mask_categories:
            raise ValueError(
                f"checkpoint {checkpoint} is S2: it needs instance masks on camera/instance_mask and their "
                "values' categories (mask_categories:='1:mug,2:tray', as the segmentation node publishes them)"
            )
    elif observation == "keypoints" and keypoints == "perception":
        given = {"method": method, "backend": backend, "feature_scale": feature_scale}
        extraction = keypoint_settings(
            checkpoint, {k: v for k, v in given.items() if v not in (None, "")}, simulated, task
        )
    if simulated and (observation == "s2" or extraction.get("instance_source") == "masks"):
        sim["publish_instance_mask"] = True
    camera, nodes = _robot_side(robot, camera, task, calibration, namespace, sim, use_sim)
    if observation == "keypoints" and keypoints == "oracle" and not simulated:
        raise ValueError("keypoints:=oracle needs the simulator (robot:=sim or use_sim:=true): only it knows them")
    if observation == "keypoints" and keypoints == "perception" and not spec:
        raise ValueError(
            "keypoint_node needs a spec (spec:=...); in the simulator keypoints:=oracle feeds ground truth"
        )
    robot_cfg = _ROBOT[robot]
    if extraction:
        nodes.append(
            NodeSpec(
                "keypoint_node",
                "kil_perception",
                "keypoint_node",
                {
                    "spec": spec,
                    **extraction,
                    "feature_scale": float(extraction["feature_scale"]),
                    **({"layout_check": float(extraction["layout_check"])} if "layout_check" in extraction else {}),
                    "device": device,
                    "target_frame": prefixed(namespace, robot_cfg["base_frame"]),
                    "image_reliability": image_reliability,
                    "autostart": bool(autostart),
                    **threads,
                },
                camera_remappings(camera, namespace),
            )
        )
    policy = {"checkpoint": checkpoint, "device": device, "max_input_age_s": max_input_age_s, "inference": inference}
    policy["autostart"] = bool(autostart)
    policy |= threads
    if inference == "graph":
        policy |= {"precision": precision, "fuse_kernels": fuse_kernels}
    remappings = {}
    if observation == "keypoints":
        policy |= {"spec": spec} if keypoints == "perception" else {}
        remappings = {"kil/keypoints": "kil/keypoints/oracle"} if keypoints == "oracle" else {}
    else:  # the baselines see the camera
        policy["image_reliability"] = image_reliability
        policy |= {"mask_categories": mask_categories} if observation == "s2" else {}
        remappings = camera_remappings(camera, namespace)
    nodes += [
        NodeSpec("policy_node", "kil_policy", "policy_node", policy, remappings),
        _interpolator(robot_cfg, namespace),
    ]
    return _finish(nodes, simulated, namespace)


def _finish(nodes: list[NodeSpec], sim: bool, namespace: str) -> list[NodeSpec]:
    """Every node into ``namespace``; in a sim graph every node but the simulator (the clock's
    source) on the simulated clock, and under a namespace ``/clock`` itself moved into it (so two
    simulators in one domain keep their own time)."""
    out = []
    for node in nodes:
        parameters, remappings = dict(node.parameters), dict(node.remappings)
        if sim and node.name != "sim_node":
            parameters["use_sim_time"] = True
        if sim and namespace:
            remappings["/clock"] = "clock"
        out.append(replace(node, parameters=parameters, remappings=remappings, namespace=namespace))
    return out
