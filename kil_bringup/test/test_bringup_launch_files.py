"""The launch files, loaded against a recording stand-in of the launch / launch_ros API
(``launch_standin``: those packages are not installable here). For every robot x camera pair they
yield the vendor driver includes, the graph's nodes with their namespaces, parameters and
remappings; ``drivers:=false`` drops the includes; ``namespace:=`` moves everything."""

from __future__ import annotations

import itertools
from pathlib import Path

import launch_standin
import pytest
import yaml

from kil_bringup.graph import RVIZ_TOPICS, rollout_graph, teleop_graph

LAUNCH = Path(__file__).parents[1] / "launch"
ROLLOUT = {"spec": "/s/spec.yaml", "checkpoint": "/runs/ckpt", "calibration": "/c/calibration.yaml"}
EXPECTED_INCLUDES = {
    "lite6": ("xarm_api", "lite6_driver.launch.py"),
    "ur5e": ("ur_robot_driver", "ur_control.launch.py"),
    "femto_bolt": ("orbbec_camera", "femto_bolt.launch.py"),
    "zed2i": ("zed_wrapper", "zed_camera.launch.py"),
}


@pytest.fixture(autouse=True)
def standin(monkeypatch):
    launch_standin.install(monkeypatch)
    launch_standin.LaunchConfiguration.used = set()


def _as_launched(nodes) -> list[tuple]:
    return [(n.package, n.executable, n.name, n.namespace, n.parameters, sorted(n.remappings.items())) for n in nodes]


def _launched(result) -> list[tuple]:
    return [
        (n["package"], n["executable"], n["name"], n["namespace"], n["parameters"][0], sorted(n["remappings"]))
        for n in result.nodes
        if n["package"] != "rviz2"
    ]


@pytest.mark.parametrize(("robot", "camera"), list(itertools.product(["lite6", "ur5e"], ["femto_bolt", "zed2i"])))
@pytest.mark.parametrize("launch_file", ["rollout.launch.py", "teleop.launch.py"])
def test_real_robot_launch_includes_the_vendor_drivers(launch_file: str, robot: str, camera: str) -> None:
    extra = ROLLOUT if launch_file == "rollout.launch.py" else {"calibration": "/c/calibration.yaml"}
    result = launch_standin.run(LAUNCH / launch_file, robot=robot, camera=camera, robot_ip="10.0.0.7", **extra)
    assert [(p, f) for p, f, _ in result.includes] == [EXPECTED_INCLUDES[robot], EXPECTED_INCLUDES[camera]]
    driver_args = result.includes[0][2]
    assert driver_args["robot_ip"] == "10.0.0.7"
    if robot == "ur5e":
        assert (
            driver_args["ur_type"] == "ur5e"
            and driver_args["initial_joint_controller"] == "forward_position_controller"
        )
    else:
        assert driver_args["report_type"] == "dev" and driver_args["hw_ns"] == "ufactory"
    camera_args = result.includes[1][2]
    if camera == "femto_bolt":
        assert camera_args == {"camera_name": "camera", "depth_registration": "true", "enable_point_cloud": "false"}
    else:
        assert camera_args == {"camera_model": "zed2i", "camera_name": "zed"}
    graph = rollout_graph if launch_file == "rollout.launch.py" else teleop_graph
    assert _launched(result) == _as_launched(graph(robot, camera, **extra))
    names = [n["name"] for n in result.nodes]
    assert f"{robot}_node" in names and "calibration_node" in names and "interpolator_node" in names
    # Every LaunchConfiguration the file reads is declared (so --show-args lists it).
    assert launch_standin.LaunchConfiguration.used <= set(result.declared)


def test_drivers_false_attaches_to_running_drivers_and_robot_ip_is_required() -> None:
    attached = launch_standin.run(LAUNCH / "rollout.launch.py", robot="ur5e", drivers="false", **ROLLOUT)
    assert attached.includes == [] and attached.node("ur5e_node")["remappings"] == [
        ("joint_states", "/joint_states"),
        ("forward_position_controller/commands", "/forward_position_controller/commands"),
    ]
    with pytest.raises(ValueError, match=r"robot_ip:= is required to start the lite6 driver .*drivers:=false"):
        launch_standin.run(LAUNCH / "rollout.launch.py", robot="lite6", **ROLLOUT)
    sim = launch_standin.run(LAUNCH / "rollout.launch.py", spec="/s.yaml", checkpoint="/c")
    assert sim.includes == [] and sim.nodes[0]["name"] == "sim_node"
    with pytest.raises(KeyError, match="not declared"):
        launch_standin.run(LAUNCH / "rollout.launch.py", robot_address="10.0.0.7")
    graphed = launch_standin.run(
        LAUNCH / "rollout.launch.py", spec="/s.yaml", checkpoint="/c", inference="graph", precision="tf32",
        fuse_kernels="triton", max_input_age_s="1.5", cpu_threads="2",
    )  # fmt: skip
    policy = graphed.node("policy_node")["parameters"][0]
    assert (policy["inference"], policy["precision"], policy["fuse_kernels"]) == ("graph", "tf32", "triton")
    assert (policy["max_input_age_s"], policy["cpu_threads"]) == (1.5, 2)
    assert "cpu_threads" not in sim.node("policy_node")["parameters"][0]  # '' = the node's default
    with pytest.raises(ValueError, match="fuse_kernels must be one of none, inductor, triton, got 'yes'"):
        launch_standin.run(LAUNCH / "rollout.launch.py", spec="/s.yaml", inference="graph", fuse_kernels="yes")


@pytest.mark.parametrize("launch_file", ["rollout.launch.py", "teleop.launch.py"])
def test_namespace_moves_nodes_topics_frames_and_drivers(launch_file: str) -> None:
    extra = ROLLOUT if launch_file == "rollout.launch.py" else {}
    sim = launch_standin.run(LAUNCH / launch_file, namespace="left", rviz="true", **extra)
    assert {n["namespace"] for n in sim.nodes} == {"left"}
    assert sim.node("sim_node")["parameters"][0]["base_frame"] == "left/link_base"
    assert all(("/clock", "clock") in n["remappings"] for n in sim.nodes if n["package"] != "rviz2")
    (rviz,) = [n for n in sim.nodes if n["package"] == "rviz2"]
    assert rviz["arguments"][-2:] == ["-f", "left/link_base"]
    assert sorted(rviz["remappings"]) == sorted((t, t.lstrip("/")) for t in RVIZ_TOPICS)
    real = launch_standin.run(
        LAUNCH / launch_file,
        robot="lite6",
        robot_ip="10.0.0.7",
        namespace="left",
        calibration="/c.yaml",
        **{k: v for k, v in extra.items() if k != "calibration"},
    )
    xarm, orbbec = (args for _, _, args in real.includes)
    assert xarm["prefix"] == "left/" and orbbec["camera_name"] == "left/camera"
    assert real.node("lite6_node")["parameters"][0] == {"base_frame": "left/link_base", "namespace": "/leftufactory"}
    assert real.node("calibration_node")["parameters"][0]["frame_prefix"] == "left"
    camera_user = "keypoint_node" if launch_file == "rollout.launch.py" else "recorder_node"
    assert ("camera/color/image_raw", "/left/camera/color/image_raw") in real.node(camera_user)["remappings"]
    with pytest.raises(ValueError, match="namespace must be ROS name tokens"):
        launch_standin.run(LAUNCH / launch_file, namespace="left arm", **extra)


def test_rviz_configuration_topics_are_the_ones_remapped() -> None:
    config = yaml.safe_load((Path(__file__).parents[1] / "rviz" / "kil.rviz").read_text())
    topics = {d["Topic"]["Value"] for d in config["Visualization Manager"]["Displays"] if "Topic" in d}
    assert topics == set(RVIZ_TOPICS)
