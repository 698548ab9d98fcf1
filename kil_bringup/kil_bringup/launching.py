"""Turning a graph description (``kil_bringup.graph``) into ``ros2 launch`` actions: what every
launch file of this package does. Needs the ``launch`` / ``launch_ros`` packages of a ROS 2
install (not on PyPI), so it is imported only by the launch files.

Every argument is declared up front (``ros2 launch kil_bringup rollout.launch.py --show-args``
lists them); the actions are chosen from their values by plain functions of ``kil_bringup.graph``:
the vendor drivers' launch files (``drivers:=true``, the default, with ``robot_ip:=``), the kil
nodes in ``namespace:=``, and RViz with ``rviz:=true``.
"""

from __future__ import annotations

from collections.abc import Callable

from kil_bringup.graph import DriverInclude, NodeSpec, base_frame, rviz_remappings

#: Arguments every launch file of this package declares besides its own.
COMMON_ARGUMENTS = {
    "robot_ip": ("", "the robot's IP address (real robots: the vendor driver connects to it)"),
    "drivers": ("true", "include the robot's and the camera's vendor launch files (false: attach to running drivers)"),
    "namespace": ("", "namespace of every kil node (topics follow it; TF frames are prefixed by it)"),
    "use_sim": ("false", "lite6/ur5e without hardware: the simulator's arm behind a simulated vendor driver"),
    "rviz": ("false", "also start RViz with kil_bringup's configuration (keypoints, targets, images)"),
}


def is_true(value: str) -> bool:
    """A launch argument's boolean value (true/1/yes, any case)."""
    return value.strip().lower() in ("true", "1", "yes")


def launch_description(
    arguments: dict[str, tuple[str, str]],
    make_graph: Callable[[dict[str, str]], list[NodeSpec]],
    make_drivers: Callable[[dict[str, str]], list[DriverInclude]],
):
    """A LaunchDescription declaring ``arguments`` (name -> (default, description)) and
    :data:`COMMON_ARGUMENTS`; at launch it includes ``make_drivers(values)`` (with ``drivers:=true``),
    starts the nodes of ``make_graph(values)`` and, with ``rviz:=true``, RViz (fixed frame = the
    robot's base frame)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.actions import Node
    from launch_ros.substitutions import FindPackageShare

    arguments = {**arguments, **COMMON_ARGUMENTS}

    def actions(context):
        values = {name: LaunchConfiguration(name).perform(context) for name in arguments}
        out = []
        if values["drivers"].lower() == "true" and not is_true(values["use_sim"]):
            for include in make_drivers(values):
                path = PathJoinSubstitution([FindPackageShare(include.package), "launch", include.launch_file])
                out.append(
                    IncludeLaunchDescription(
                        PythonLaunchDescriptionSource(path), launch_arguments=list(include.arguments.items())
                    )
                )
        namespace = values["namespace"].strip("/")
        out += [
            Node(
                package=n.package,
                executable=n.executable,
                name=n.name,
                namespace=n.namespace,
                parameters=[n.parameters],
                remappings=list(n.remappings.items()),
                output="screen",
            )
            for n in make_graph(values)
        ]
        if values["rviz"].lower() == "true":
            config = PathJoinSubstitution([FindPackageShare("kil_bringup"), "rviz", "kil.rviz"])
            frame = base_frame(values.get("robot", "sim"), namespace)
            out.append(
                Node(
                    package="rviz2",
                    executable="rviz2",
                    namespace=namespace,
                    arguments=["-d", config, "-f", frame],
                    remappings=list(rviz_remappings(namespace).items()),
                )
            )
        return out

    declared = [DeclareLaunchArgument(n, default_value=d, description=t) for n, (d, t) in arguments.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=actions)])
