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

ROBOTS = ("sim", "lite6", "ur5e")
CAMERAS = ("sim", "femto_bolt", "zed2i")
#: keypoint_node methods and policy_node inference modes (kept equal to kil_perception.pipeline.METHODS
#: and kil_policy.runner.INFERENCE_MODES by a test; not imported, so a launch file stays light).
METHODS = ("image", "instance", "track")
INFERENCE_MODES = ("module", "packed", "compiled")
#: QoS reliability of the image topics (keypoint_node, sim_node and recorder_node take it).
RELIABILITY = ("reliable", "best_effort")
#: Where policy_node's keypoints come from: keypoint_node, or the simulator's ground truth.
KEYPOINTS = ("perception", "oracle")

#: Camera driver topics remapped onto the graph's names (colour, aligned depth, camera info).
_CAMERA_TOPICS = {
    "sim": {},
    "femto_bolt": {
        "/camera/color/image_raw": "/camera/color/image_raw",
        "/camera/depth/image_raw": "/camera/depth_registered/image_raw",
        "/camera/color/camera_info": "/camera/color/camera_info",
    },
    "zed2i": {
        "/camera/color/image_raw": "/zed/zed_node/rgb/image_rect_color",
        "/camera/depth/image_raw": "/zed/zed_node/depth/depth_registered",
        "/camera/color/camera_info": "/zed/zed_node/rgb/camera_info",
    },
}
#: Each robot's base frame and the interpolator rate its servo interface wants.
_ROBOT = {
    "sim": {"base_frame": "link_base", "rate_hz": 100.0},
    "lite6": {"base_frame": "link_base", "rate_hz": 200.0},
    "ur5e": {"base_frame": "base", "rate_hz": 125.0},
}


def base_frame(robot: str) -> str:
    """The robot's base frame (REP-105 ``base_link``-like frame the kil topics use)."""
    _check_choices(("robot", robot, ROBOTS))
    return _ROBOT[robot]["base_frame"]


@dataclass(frozen=True)
class NodeSpec:
    """One node: ``python -m module`` (``ros2 run package executable``) with parameters/remappings."""

    name: str
    package: str
    executable: str
    parameters: dict = field(default_factory=dict)
    remappings: dict = field(default_factory=dict)

    @property
    def module(self) -> str:
        return f"{self.package}.{self.executable}"

    def ros_args(self) -> list[str]:
        """``--ros-args`` arguments: node name, parameters, remappings."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        for key, value in self.parameters.items():
            if isinstance(value, bool):
                value = str(value).lower()
            elif isinstance(value, list | tuple):
                value = "[" + ", ".join(str(v) for v in value) + "]"
            args += ["-p", f"{key}:={value}"]
        for source, target in self.remappings.items():
            args += ["-r", f"{source}:={target}"]
        return args


def _check_choices(*checks: tuple[str, str, tuple[str, ...]]) -> None:
    for name, value, allowed in checks:
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _robot_side(
    robot: str, camera: str | None, task: str, calibration: str, sim: dict | None = None
) -> tuple[str, str, list[NodeSpec]]:
    """Validated (camera, calibration) and the robot's own nodes: the simulator for ``sim``, the
    adapter to xarm_ros2 for ``lite6`` or to ur_robot_driver for ``ur5e`` (the vendor driver and
    the camera driver are launched by their own packages). ``sim``: extra sim_node parameters."""
    _check_choices(("robot", robot, ROBOTS))
    camera = camera or ("sim" if robot == "sim" else "femto_bolt")
    if camera not in CAMERAS:
        raise ValueError(f"camera must be one of {', '.join(CAMERAS)}, got {camera!r}")
    if robot == "sim" and camera != "sim":
        raise ValueError("robot:=sim renders its own camera; use camera:=sim")
    if robot in ("lite6", "ur5e"):
        if not calibration:
            raise ValueError("a calibration YAML (camera -> robot base) is required on a real robot")
        name = f"{robot}_node"
        adapter = NodeSpec(name, "kil_control", name, {"base_frame": _ROBOT[robot]["base_frame"]})
        return camera, calibration, [adapter]
    calibration = calibration or "/tmp/kil_sim_calibration.yaml"
    parameters = {"task": task, "calibration_file": calibration, "base_frame": "link_base", **(sim or {})}
    return camera, calibration, [NodeSpec("sim_node", "kil_sim", "sim_node", parameters)]


def _interpolator(robot_cfg: dict) -> NodeSpec:
    return NodeSpec(
        "interpolator_node",
        "kil_control",
        "interpolator_node",
        {"rate_hz": robot_cfg["rate_hz"], "base_frame": robot_cfg["base_frame"]},
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
) -> list[NodeSpec]:
    """The nodes for recording demonstrations: robot (or sim), teleop_node, recorder_node,
    interpolator_node. The recorder takes the camera topics through the camera's remappings.

    Args:
        output_dir: where recorder_node writes the episode bags.
        input_type: teleop_node's button messages (quest2ros or joy).
        controller_to_base_rpy, scale: teleop_node's mapping (see ``kil_teleop.quest_mapping``).
        image_reliability: QoS reliability of the image topics (``reliable``, the drivers'
            default, or ``best_effort``), for every node that publishes or subscribes them.
    """
    _check_choices(
        ("input_type", input_type, ("quest2ros", "joy")), ("image_reliability", image_reliability, RELIABILITY)
    )
    camera, _, nodes = _robot_side(robot, camera, task, calibration, {"image_reliability": image_reliability})
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
            dict(_CAMERA_TOPICS[camera]),
        ),
        _interpolator(robot_cfg),
    ]
    return _on_sim_time(nodes) if robot == "sim" else nodes


def rollout_graph(
    robot: str = "sim",
    camera: str | None = None,
    task: str = "place_mug",
    spec: str = "",
    checkpoint: str = "",
    calibration: str = "",
    backend: str = "effnet_lite0",
    device: str = "cpu",
    max_input_age_s: float = 0.5,
    method: str = "image",
    inference: str = "packed",
    keypoints: str = "perception",
    image_size: tuple[int, int] | None = None,
    max_episode_s: float = 40.0,
    image_reliability: str = "reliable",
    real_time_factor: float = 1.0,
) -> list[NodeSpec]:
    """The nodes of a policy rollout.

    Args:
        robot: ``sim``, ``lite6`` or ``ur5e``. camera: defaults to ``sim`` for the sim robot and
            ``femto_bolt`` otherwise.
        spec: keypoint spec YAML; checkpoint: policy checkpoint directory; calibration: camera
            extrinsics YAML (the sim writes its own when empty).
        max_input_age_s: policy_node stops producing chunks when its inputs are older than this;
            raise it where perception is slow (CPU-only machines).
        method: keypoint_node's extraction method (image, instance with SAM3, track).
        inference: policy_node's UNet execution (packed, compiled, module).
        keypoints: ``perception`` (keypoint_node on the camera, needs ``spec``) or ``oracle`` (the
            simulator's ground-truth keypoints routed to policy_node; sim only).
        image_size: (width, height) of the simulated camera (the spec's reference image size).
        max_episode_s: the simulated episode's time limit (s).
        image_reliability: QoS reliability of the image topics (``reliable``, the drivers'
            default, or ``best_effort``), for every node that publishes or subscribes them.
        real_time_factor: simulated seconds per wall second (sim only; every other node of a sim
            graph runs on the simulator's ``/clock``).
    """
    _check_choices(
        ("method", method, METHODS),
        ("inference", inference, INFERENCE_MODES),
        ("keypoints", keypoints, KEYPOINTS),
        ("image_reliability", image_reliability, RELIABILITY),
    )
    if real_time_factor <= 0:
        raise ValueError(f"real_time_factor must be > 0, got {real_time_factor}")
    sim = {
        "max_episode_s": float(max_episode_s),
        "image_reliability": image_reliability,
        "real_time_factor": float(real_time_factor),
    }
    if image_size is not None:
        sim |= {"width": int(image_size[0]), "height": int(image_size[1])}
    camera, calibration, nodes = _robot_side(robot, camera, task, calibration, sim)
    if keypoints == "oracle" and robot != "sim":
        raise ValueError("keypoints:=oracle needs robot:=sim (only the simulator knows the true keypoints)")
    if keypoints == "perception" and not spec:
        raise ValueError(
            "keypoint_node needs a spec (spec:=...); in the simulator keypoints:=oracle feeds ground truth"
        )
    robot_cfg = _ROBOT[robot]
    if keypoints == "perception":
        nodes.append(
            NodeSpec(
                "keypoint_node",
                "kil_perception",
                "keypoint_node",
                {
                    "spec": spec,
                    "method": method,
                    "backend": backend,
                    "device": device,
                    "extrinsics_file": calibration,
                    "image_reliability": image_reliability,
                },
                dict(_CAMERA_TOPICS[camera]),
            )
        )
    policy = {"checkpoint": checkpoint, "device": device, "max_input_age_s": max_input_age_s, "inference": inference}
    nodes += [
        NodeSpec(
            "policy_node",
            "kil_policy",
            "policy_node",
            policy | ({"spec": spec} if keypoints == "perception" else {}),
            {"/kil/keypoints": "/kil/keypoints/oracle"} if keypoints == "oracle" else {},
        ),
        _interpolator(robot_cfg),
    ]
    return _on_sim_time(nodes) if robot == "sim" else nodes


def _on_sim_time(nodes: list[NodeSpec]) -> list[NodeSpec]:
    """Every node but the simulator (the clock's source) on the simulated ``/clock``."""
    return [n if n.name == "sim_node" else replace(n, parameters={**n.parameters, "use_sim_time": True}) for n in nodes]
