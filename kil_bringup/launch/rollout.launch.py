"""Rollout of a trained policy.

    ros2 launch kil_bringup rollout.launch.py robot:=sim task:=place_mug spec:=spec.yaml \
        checkpoint:=runs/x/checkpoint_last
    ros2 launch kil_bringup rollout.launch.py robot:=lite6 robot_ip:=192.168.1.185 camera:=femto_bolt \
        calibration:=calibration.yaml spec:=spec.yaml checkpoint:=runs/x/checkpoint_last

On a real robot the vendor drivers are included (drivers:=false attaches to drivers started
elsewhere): xarm_ros2's ``xarm_api/launch/lite6_driver.launch.py`` (github.com/xArm-Developer/
xarm_ros2) or ur_robot_driver's ``ur_robot_driver/launch/ur_control.launch.py`` with
``forward_position_controller`` (github.com/UniversalRobots/Universal_Robots_ROS2_Driver), and
orbbec_camera's ``orbbec_camera/launch/femto_bolt.launch.py`` (github.com/orbbec/OrbbecSDK_ROS2)
or zed_wrapper's ``zed_wrapper/launch/zed_camera.launch.py`` (github.com/stereolabs/
zed-ros2-wrapper); ``kil_bringup.graph.driver_includes`` holds their arguments.

Every decision (nodes, parameters, remappings) comes from ``kil_bringup.graph.rollout_graph``,
which is tested without ROS; this file only turns that list into launch actions.
"""

from kil_bringup.graph import driver_includes, rollout_graph
from kil_bringup.launching import is_true, launch_description

ARGUMENTS = {
    "robot": ("sim", "sim, lite6 or ur5e"),
    "camera": ("", "sim, femto_bolt or zed2i (default: sim for robot:=sim, else femto_bolt)"),
    "task": ("place_mug", "task name (the sim loads its configuration)"),
    "spec": ("", "keypoint spec YAML"),
    "checkpoint": ("", "policy checkpoint directory"),
    "calibration": ("", "camera calibration YAML published on /tf_static (real robots; '' = TF from a hand-eye tool)"),
    "backend": ("", "feature backend of keypoint_node ('' = the checkpoint's, else effnet_lite0)"),
    "device": ("cpu", "torch device for perception and policy"),
    "method": ("", "keypoint extraction: image, instance (SAM3) or track ('' = the checkpoint's, else image)"),
    "feature_scale": ("", "keypoint_node's frames resized by this before the backend ('' = the checkpoint's, else 1)"),
    "mask_categories": ("", "S2 on a real robot: instance-mask values to categories, e.g. '1:mug,2:tray'"),
    "inference": ("packed", "policy execution: packed, compiled, graph (CUDA: one graph per chunk) or module"),
    "precision": ("fp32", "inference graph only: fp32, tf32 or bf16 (kept within policy_node's precision_tolerance)"),
    "fuse_kernels": ("none", "inference graph only: none, inductor (compiled at start) or triton (fused UNet blocks)"),
    "keypoints": ("perception", "keypoint_node (perception) or the simulator's ground truth (oracle, sim only)"),
    "width": ("", "simulated camera width in px (sim only; the spec's reference image size)"),
    "height": ("", "simulated camera height in px (sim only)"),
    "max_episode_s": ("40.0", "simulated episode time limit (s)"),
    "image_reliability": (
        "reliable",
        "QoS reliability of the image topics: reliable (the drivers' default) or best_effort",
    ),
    "real_time_factor": ("1.0", "simulated seconds per wall second (sim only; below 1 on slow machines)"),
    "max_input_age_s": ("0.5", "policy_node stops new chunks when its inputs are older than this (s; raise it on CPU)"),
    "cpu_threads": ("", "keypoint_node's and policy_node's torch CPU threads ('' = the nodes' 1; 0 = one per core)"),
    "autostart": ("true", "keypoint_node and policy_node bring themselves up (false: left to a lifecycle manager)"),
}


def _graph(values: dict[str, str]):
    return rollout_graph(
        values["robot"],
        values["camera"] or None,
        values["task"],
        values["spec"],
        values["checkpoint"],
        values["calibration"],
        values["backend"] or None,
        values["device"],
        float(values["max_input_age_s"]),
        method=values["method"] or None,
        feature_scale=float(values["feature_scale"]) if values["feature_scale"] else None,
        inference=values["inference"],
        precision=values["precision"],
        fuse_kernels=values["fuse_kernels"],
        keypoints=values["keypoints"],
        image_size=(int(values["width"]), int(values["height"])) if values["width"] else None,
        max_episode_s=float(values["max_episode_s"]),
        image_reliability=values["image_reliability"],
        real_time_factor=float(values["real_time_factor"]),
        namespace=values["namespace"],
        use_sim=is_true(values["use_sim"]),
        autostart=is_true(values["autostart"]),
        mask_categories=values["mask_categories"],
        cpu_threads=int(values["cpu_threads"]) if values["cpu_threads"] else None,
    )


def _drivers(values: dict[str, str]):
    return driver_includes(values["robot"], values["camera"] or None, values["robot_ip"], values["namespace"])


def generate_launch_description():
    return launch_description(ARGUMENTS, _graph, _drivers)
