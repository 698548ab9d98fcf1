"""Recording teleoperated demonstrations.

    ros2 launch kil_bringup teleop.launch.py robot:=sim task:=place_mug output_dir:=demos/place_mug
    ros2 launch kil_bringup teleop.launch.py robot:=ur5e robot_ip:=192.168.1.102 camera:=zed2i \
        calibration:=calibration.yaml output_dir:=demos/place_mug

The vendor drivers of the robot and camera are included as in rollout.launch.py (see there;
drivers:=false attaches to drivers started elsewhere).

Every decision (nodes, parameters, remappings) comes from ``kil_bringup.graph.teleop_graph``,
which is tested without ROS; this file only turns that list into launch actions.
"""

from kil_bringup.graph import driver_includes, teleop_graph
from kil_bringup.launching import is_true, launch_description

ARGUMENTS = {
    "robot": ("sim", "sim, lite6 or ur5e"),
    "camera": ("", "sim, femto_bolt or zed2i (default: sim for robot:=sim, else femto_bolt)"),
    "task": ("place_mug", "task name (stored in each bag; the sim loads its configuration)"),
    "output_dir": ("demos", "directory of the episode bags"),
    "calibration": ("", "camera calibration YAML published on /tf_static (real robots; '' = TF from a hand-eye tool)"),
    "input_type": ("quest2ros", "Quest buttons as quest2ros/OVR2ROSInputs or sensor_msgs/Joy (joy)"),
    "controller_yaw": ("0.0", "yaw (rad) of the Quest's tracking frame in the robot base frame"),
    "scale": ("1.0", "robot translation per controller translation"),
    "image_reliability": (
        "reliable",
        "QoS reliability of the image topics: reliable (the drivers' default) or best_effort",
    ),
}


def _graph(values: dict[str, str]):
    return teleop_graph(
        values["robot"],
        values["camera"] or None,
        values["task"],
        values["output_dir"],
        values["calibration"],
        values["input_type"],
        (0.0, 0.0, float(values["controller_yaw"])),
        float(values["scale"]),
        image_reliability=values["image_reliability"],
        namespace=values["namespace"],
        use_sim=is_true(values["use_sim"]),
    )


def _drivers(values: dict[str, str]):
    return driver_includes(values["robot"], values["camera"] or None, values["robot_ip"], values["namespace"])


def generate_launch_description():
    return launch_description(ARGUMENTS, _graph, _drivers)
