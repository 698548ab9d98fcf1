"""Turning a graph description (``kil_bringup.graph``) into ``ros2 launch`` actions: what every
launch file of this package does. Needs the ``launch`` / ``launch_ros`` packages of a ROS 2
install (not on PyPI), so it is imported only by the launch files."""

from __future__ import annotations

from collections.abc import Callable

from kil_bringup.graph import NodeSpec


def launch_description(arguments: dict[str, tuple[str, str]], make_graph: Callable[[dict[str, str]], list[NodeSpec]]):
    """A LaunchDescription declaring ``arguments`` (name -> (default, description)) whose nodes are
    ``make_graph(values)`` for the given argument values."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def nodes(context):
        values = {name: LaunchConfiguration(name).perform(context) for name in arguments}
        return [
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
