"""Turning a graph description (``kil_bringup.graph``) into ``ros2 launch`` actions: what every
launch file of this package does. Needs the ``launch`` / ``launch_ros`` packages of a ROS 2
install (not on PyPI), so it is imported only by the launch files."""

from __future__ import annotations

from collections.abc import Callable

from kil_bringup.graph import NodeSpec, base_frame

RVIZ_ARGUMENT = {"rviz": ("false", "also start RViz with kil_bringup's configuration (keypoints, targets, images)")}


def launch_description(arguments: dict[str, tuple[str, str]], make_graph: Callable[[dict[str, str]], list[NodeSpec]]):
    """A LaunchDescription declaring ``arguments`` (name -> (default, description)) and ``rviz``,
    whose nodes are ``make_graph(values)`` for the given argument values (plus RViz, fixed frame =
    the robot's base frame, with ``rviz:=true``)."""
    from ament_index_python.packages import get_package_share_directory
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    arguments = {**arguments, **RVIZ_ARGUMENT}

    def nodes(context):
        values = {name: LaunchConfiguration(name).perform(context) for name in arguments}
        extra = []
        if values["rviz"].lower() == "true":
            config = f"{get_package_share_directory('kil_bringup')}/rviz/kil.rviz"
            frame = base_frame(values.get("robot", "sim"))
            extra.append(Node(package="rviz2", executable="rviz2", arguments=["-d", config, "-f", frame]))
        return extra + [
            Node(
                package=n.package,
                executable=n.executable,
                name=n.name,
                parameters=[n.parameters],
                remappings=list(n.remappings.items()),
                output="screen",
            )
            for n in make_graph(values)
        ]

    declared = [DeclareLaunchArgument(n, default_value=d, description=t) for n, (d, t) in arguments.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=nodes)])
