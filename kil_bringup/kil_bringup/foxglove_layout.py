"""The shipped Foxglove layout (``share/kil_bringup/foxglove/kil_rollout.json``): the camera with the
keypoints drawn over it (``/kil/keypoints/annotations``), keypoint_node's overlay image, a 3-D panel
(TF, keypoint markers, the servo target), the action chunk against the end effector, the gripper
and the inference time, and the nodes' health (``/diagnostics``).

For another robot or a namespaced graph, write a copy whose topics and followed frame match:

    python -m kil_bringup.foxglove_layout --robot ur5e --camera zed2i --namespace left > kil_left.json

then Foxglove: Layouts -> Import from file. The layout reads live data through foxglove_bridge or
a recorded bag (the recorder's ``topics`` can include every topic it shows).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path

from kil_bringup.graph import CAMERAS, ROBOTS, base_frame, camera_remappings

#: The layout as installed (share/kil_bringup/foxglove) or in the source tree.
LAYOUT_NAME = "kil_rollout.json"
_PATH_TOPIC = re.compile(r"^(/[A-Za-z0-9_/]+?)(?:\.|$)")


def layout_path() -> Path:
    """The shipped layout file: the installed share directory, else the source tree."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            installed = Path(get_package_share_directory("kil_bringup")) / "foxglove" / LAYOUT_NAME
            if installed.is_file():
                return installed
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return Path(__file__).resolve().parents[1] / "foxglove" / LAYOUT_NAME


def load_layout(path: Path | None = None) -> dict:
    """The layout as a dict.

    Raises:
        ValueError: the file is not a Foxglove layout (no ``configById`` / ``layout``).
    """
    path = layout_path() if path is None else Path(path)
    layout = json.loads(path.read_text())
    if not isinstance(layout, dict) or "configById" not in layout or "layout" not in layout:
        raise ValueError(f"{path}: not a Foxglove layout (configById and layout are required)")
    return layout


def _topic_references(config) -> list[tuple[str, str]]:
    """(where, topic) of every topic a panel's config names: topic fields, message paths
    (``/topic.field[0]``) and the keys of ``topics`` / ``annotations`` maps."""
    found: list[tuple[str, str]] = []

    def walk(value, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("topics", "annotations") and isinstance(item, dict):
                    found.extend((f"{where}.{key}", topic) for topic in item)
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")
        elif isinstance(value, str) and value.startswith("/"):
            match = _PATH_TOPIC.match(value)
            if match:
                found.append((where, match.group(1)))

    walk(config, "")
    return found


def layout_topics(layout: dict) -> set[str]:
    """Every topic the layout's panels read."""
    return {topic for config in layout["configById"].values() for _, topic in _topic_references(config)}


def adapt_layout(layout: dict, robot: str = "sim", camera: str = "sim", namespace: str = "") -> dict:
    """A copy for ``robot`` (its base frame is followed) and ``camera`` (the vendor driver's topics,
    as ``rollout_graph`` remaps them) under ``namespace`` (every other topic and the frame prefixed,
    as ``rollout_graph(..., namespace=...)`` does)."""
    frame = base_frame(robot, namespace)
    prefix = f"/{namespace.strip('/')}" if namespace.strip("/") else ""
    driver = {f"/{topic}": target for topic, target in camera_remappings(camera, namespace).items()}

    def topic_of(name: str) -> str:
        return driver.get(name, prefix + name)

    def rename(value):
        if isinstance(value, dict):
            return {(topic_of(k) if k.startswith("/") else k): rename(v) for k, v in value.items()}
        if isinstance(value, list):
            return [rename(v) for v in value]
        if isinstance(value, str) and value.startswith("/"):
            match = _PATH_TOPIC.match(value)
            if match:
                return topic_of(match.group(1)) + value[match.end(1) :]
        return value

    adapted = copy.deepcopy(layout)
    adapted["configById"] = {key: rename(config) for key, config in layout["configById"].items()}
    for config in adapted["configById"].values():
        if "followTf" in config:
            config["followTf"] = frame
    return adapted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default="sim", choices=ROBOTS, help="whose base frame the 3-D panel follows")
    parser.add_argument("--camera", default="sim", choices=CAMERAS, help="whose driver topics the camera panels read")
    parser.add_argument("--namespace", default="", help="the graph's namespace (topics and frames prefixed)")
    parser.add_argument("--layout", type=Path, default=None, help="layout to adapt (default: the shipped one)")
    args = parser.parse_args(argv)
    try:
        layout = load_layout(args.layout)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    try:
        adapted = adapt_layout(layout, args.robot, args.camera, args.namespace)
    except ValueError as error:
        parser.error(str(error))
    json.dump(adapted, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
