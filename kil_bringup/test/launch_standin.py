"""A recording stand-in of the ``launch`` / ``launch_ros`` API, for tests only.

``launch`` and ``launch_ros`` are not installable here (no ROS 2 apt repository; not on PyPI), so
the launch files are loaded against these small classes, which only record what they are given:
the declared arguments, the includes (package, file, arguments), the nodes (package, executable,
name, namespace, parameters, remappings). Nothing is started. A real ROS 2 install runs the same
launch files with the real packages. Only the names the launch files use are provided; any other
name raises AttributeError, so a launch file using more of the API fails the tests here.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar


class _Recorded:
    """Keeps its constructor's positional and keyword arguments."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class LaunchDescription(_Recorded):
    @property
    def entities(self) -> list:
        return list(self.args[0])


class DeclareLaunchArgument(_Recorded):
    @property
    def name(self) -> str:
        return self.args[0]


class OpaqueFunction(_Recorded):
    pass


class IncludeLaunchDescription(_Recorded):
    pass


class PythonLaunchDescriptionSource(_Recorded):
    pass


class PathJoinSubstitution(_Recorded):
    pass


class FindPackageShare(_Recorded):
    pass


class Node(_Recorded):
    pass


class LaunchConfiguration(_Recorded):
    #: Every LaunchConfiguration name a launch file asked for (must all be declared).
    used: ClassVar[set[str]] = set()

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(name, **kwargs)
        LaunchConfiguration.used.add(name)

    def perform(self, context) -> str:
        return context.launch_configurations[self.args[0]]


def install(monkeypatch) -> None:
    """Put the stand-in modules into ``sys.modules`` for one test (monkeypatch restores them)."""
    modules = {
        "launch": {"LaunchDescription": LaunchDescription},
        "launch.actions": {
            "DeclareLaunchArgument": DeclareLaunchArgument,
            "IncludeLaunchDescription": IncludeLaunchDescription,
            "OpaqueFunction": OpaqueFunction,
        },
        "launch.substitutions": {
            "LaunchConfiguration": LaunchConfiguration,
            "PathJoinSubstitution": PathJoinSubstitution,
        },
        "launch.launch_description_sources": {"PythonLaunchDescriptionSource": PythonLaunchDescriptionSource},
        "launch_ros": {},
        "launch_ros.actions": {"Node": Node},
        "launch_ros.substitutions": {"FindPackageShare": FindPackageShare},
    }
    for name, members in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(members)
        module.__doc__ = "test stand-in (see kil_bringup/test/launch_standin.py)"
        monkeypatch.setitem(sys.modules, name, module)


@dataclass
class Launched:
    """What a launch file yields for some argument values."""

    declared: dict[str, str]  # argument -> default
    includes: list[tuple[str, str, dict]] = field(default_factory=list)  # (package, launch file, arguments)
    nodes: list[dict] = field(default_factory=list)  # Node keyword arguments

    def node(self, name: str) -> dict:
        (found,) = [n for n in self.nodes if n.get("name") == name]
        return found


def run(launch_file: Path, **values: str) -> Launched:
    """Load ``launch_file`` (stand-ins installed), declare its arguments, and evaluate its actions
    for ``values`` over the declared defaults (what ``ros2 launch file name:=value`` would do)."""
    spec = importlib.util.spec_from_file_location(f"launch_file_{launch_file.stem.replace('.', '_')}", launch_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {
        e.name: e.kwargs.get("default_value") for e in description.entities if isinstance(e, DeclareLaunchArgument)
    }
    unknown = set(values) - set(declared)
    if unknown:
        raise KeyError(f"not declared by {launch_file.name}: {sorted(unknown)}")
    context = types.SimpleNamespace(launch_configurations={**declared, **values})
    result = Launched(declared)
    for entity in description.entities:
        if isinstance(entity, OpaqueFunction):
            for action in entity.kwargs["function"](context):
                if isinstance(action, IncludeLaunchDescription):
                    path = action.args[0].args[0]
                    package, directory, file = path.args[0]
                    assert directory == "launch"
                    result.includes.append((package.args[0], file, dict(action.kwargs["launch_arguments"])))
                else:
                    result.nodes.append(action.kwargs)
    return result
