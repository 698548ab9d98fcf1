"""TF and namespaces, as processes over Fast DDS: keypoint_node takes the camera's pose from the
simulator's /tf_static (no calibration file), whichever starts first; two complete simulated
rollout graphs under namespaces ``a`` and ``b`` share one domain without crosstalk."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from test_bringup_graph import _checkpoint

from kil_bringup.graph import rollout_graph
from kil_bringup.run_graph import start, stop
from kil_interfaces import conversion as cv
from kil_interfaces.msg import ActionChunk, KeypointArray
from kil_interfaces.testing import claim_ros_domain
from kil_sim.camera import CameraConfig
from kil_sim.scene import SceneConfig
from kil_sim.tasks import sample_configuration

SIZE = (320, 240)


def _visible_spec(directory: Path, size: tuple[int, int]) -> tuple[Path, tuple[str, ...]]:
    """A spec annotated on the simulator's first frame of place_mug #0 with three mug keypoints the
    camera sees (depth at the pixel = the point's depth), and their names."""
    scene = SceneConfig(camera=CameraConfig(width=size[0], height=size[1]))
    world = sample_configuration("place_mug", "in_distribution", 0, scene=scene).make_world()
    world.step(0.3)  # as sim_node does before its first frame
    frame = world.render()
    to_cam = world.camera_extrinsics.inverse()
    chosen = []
    for name, point in world.keypoints("mug").items():
        depth = to_cam.apply(point)[2]
        (u, v) = world.camera_intrinsics.project(to_cam.apply(point[None]))[0]
        seen = frame.depth_mm[round(v), round(u)] / 1000.0
        if abs(seen - depth) < 0.005:
            chosen.append((name, u, v))
    world.close()
    assert len(chosen) >= 3, chosen
    chosen = chosen[:3]
    directory.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(directory / "reference.png"), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    points = "\n".join(f"          {n}: [{u:.1f}, {v:.1f}]" for n, u, v in chosen)
    (directory / "spec.yaml").write_text(
        "categories:\n  - name: mug\n    references:\n      - image: reference.png\n        keypoints:\n"
        + points
        + "\n"
    )
    return directory / "spec.yaml", tuple(n for n, _, _ in chosen)


def _wait_for_node(node, name: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while name not in node.get_node_names() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.2)
    assert name in node.get_node_names(), f"{name} did not come up"


@pytest.mark.parametrize("first", ["keypoint_node", "sim_node"])
def test_keypoint_node_takes_the_camera_pose_from_the_simulators_tf(tmp_path: Path, first: str) -> None:
    """No calibration file anywhere: the 3-D keypoints equal the simulator's ground truth within
    1.5 cm, whichever node starts first (the other starts once the first is up)."""
    spec, names = _visible_spec(tmp_path, SIZE)
    graph = rollout_graph("sim", spec=str(spec), checkpoint="/unused", backend="classic", image_size=SIZE)
    nodes = {n.name: n for n in graph}
    assert not any("calibration" in key or "extrinsics" in key for n in graph for key in n.parameters)
    order = [nodes[first], nodes["sim_node" if first == "keypoint_node" else "keypoint_node"]]
    rclpy.init()
    node = rclpy.create_node("tf_test")
    found: list = []
    truth: list = []
    node.create_subscription(KeypointArray, "/kil/keypoints", lambda m: found.append(cv.keypoints_from_msg(m)), 10)
    node.create_subscription(
        KeypointArray, "/kil/keypoints/oracle", lambda m: truth.append(cv.keypoints_from_msg(m)), 10
    )
    processes = start(order[:1])
    try:
        _wait_for_node(node, order[0].name)
        for _ in range(20):  # the first node runs alone for 2 s
            rclpy.spin_once(node, timeout_sec=0.1)
        processes += start(order[1:])

        def checkable() -> list:
            """Results from the third on whose frame's ground truth has arrived too."""
            stamps = {s.stamp_ns for s in truth}
            return [r for r in found[2:] if r.stamp_ns in stamps]

        deadline = time.monotonic() + 180
        while not checkable() and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
            assert all(p.poll() is None for p in processes), "a node exited"
        assert len(found) >= 3, "keypoint_node published no keypoints"
        assert checkable(), "no keypoints whose frame's ground truth arrived"
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)
    result = checkable()[-1]
    oracle = {s.stamp_ns: s for s in truth}[result.stamp_ns]  # the ground truth of the same frame
    assert result.frame_id == "link_base" and result.names == names and result.valid.all()
    expected = np.array([oracle.points[oracle.names.index(n)] for n in names])
    errors = np.linalg.norm(result.points - expected, axis=1)
    assert errors.max() < 0.015, errors


def test_two_simulated_rollouts_under_namespaces_do_not_cross_talk(tmp_path: Path, monkeypatch) -> None:
    """Namespaces a and b, each a full rollout graph (sim_node, keypoint_node, policy_node,
    interpolator_node) in one DDS domain: every endpoint of a topic belongs to its namespace's
    nodes, each simulator's /clock is its own, the TF frames are prefixed, and both loops run."""
    from tf2_msgs.msg import TFMessage

    # A domain of its own: a root graph of an earlier test that had to be killed stays in DDS
    # discovery until its lease runs out, and its root topics are not this test's business.
    monkeypatch.setenv("ROS_DOMAIN_ID", str(claim_ros_domain()))

    from kil_interfaces.tf import static_qos

    size = (160, 120)
    spec, names = _visible_spec(tmp_path / "spec", size)
    checkpoint = _checkpoint(tmp_path / "checkpoint", len(names))
    graphs = {
        ns: rollout_graph(
            "sim",
            spec=str(spec),
            checkpoint=str(checkpoint),
            backend="classic",
            image_size=size,
            max_input_age_s=5.0,  # eight processes on a loaded 2-core machine
            real_time_factor=0.5,
            namespace=ns,
        )
        for ns in ("a", "b")
    }
    rclpy.init()
    node = rclpy.create_node("namespace_test")
    chunks: dict[str, list] = {"a": [], "b": []}
    keypoints: dict[str, list] = {"a": [], "b": []}
    static: list = []
    for ns in chunks:
        node.create_subscription(ActionChunk, f"/{ns}/kil/action_chunk", chunks[ns].append, 10)
        node.create_subscription(
            KeypointArray, f"/{ns}/kil/keypoints", lambda m, ns=ns: keypoints[ns].append(cv.keypoints_from_msg(m)), 10
        )
    node.create_subscription(TFMessage, "/tf_static", static.append, static_qos(100))
    processes = start(graphs["a"] + graphs["b"])
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(len(c) >= 3 for c in chunks.values()):
            rclpy.spin_once(node, timeout_sec=0.1)
            assert all(p.poll() is None for p in processes), "a node of the graphs exited"
        assert all(len(c) >= 3 for c in chunks.values()), {ns: len(c) for ns, c in chunks.items()}
        topics = {name for name, _ in node.get_topic_names_and_types()}
        root_endpoints = {
            (t, i.node_namespace, i.node_name)
            for t in topics
            if t.startswith(("/kil/", "/camera/", "/clock"))
            for i in node.get_publishers_info_by_topic(t) + node.get_subscriptions_info_by_topic(t)
        }
        endpoints = {}
        for ns in ("a", "b"):
            for topic in (
                "kil/action_chunk",
                "kil/keypoints",
                "kil/robot_state",
                "kil/servo_target",
                "camera/color/image_raw",
                "clock",
            ):
                full = f"/{ns}/{topic}"
                infos = node.get_publishers_info_by_topic(full) + node.get_subscriptions_info_by_topic(full)
                endpoints[full] = {(i.node_namespace, i.node_name) for i in infos} - {("/", "namespace_test")}
                assert endpoints[full] and all(n == f"/{ns}" for n, _ in endpoints[full]), (full, endpoints[full])
        clock_publishers = node.get_publishers_info_by_topic("/a/clock")
        assert [(p.node_namespace, p.node_name) for p in clock_publishers] == [("/a", "sim_node")]
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)
    # Nothing of the graphs lives at the root: no node of a or b on a /kil, /camera or /clock topic.
    assert not {e for e in root_endpoints if e[1] in ("/a", "/b")}, sorted(root_endpoints)
    assert "/a/clock" in topics and "/b/clock" in topics
    frames = {(t.header.frame_id, t.child_frame_id) for m in static for t in m.transforms}
    assert {("a/link_base", "a/camera_color_optical_frame"), ("b/link_base", "b/camera_color_optical_frame")} <= frames
    for ns in ("a", "b"):
        assert keypoints[ns] and keypoints[ns][-1].frame_id == f"{ns}/link_base"
        assert {c.header.frame_id for c in chunks[ns]} == {f"{ns}/link_base"}
