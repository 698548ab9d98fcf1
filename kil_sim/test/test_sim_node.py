"""sim_node as a real process over Fast DDS: topics, camera model, servo tracking, reset, and the
episode outcome. Waits are event-based with generous deadlines (rates are benchmark material:
``python -m kil_sim.bench``)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float32
from tf2_msgs.msg import TFMessage

from kil_interfaces import conversion as cv
from kil_interfaces.msg import KeypointArray, RobotState
from kil_interfaces.srv import ResetEpisode
from kil_interfaces.tf import static_qos
from kil_sim.camera import CameraConfig

WIDTH, HEIGHT = 160, 120


def _start_sim(tmp_path, *params: str) -> subprocess.Popen:
    params = (
        f"width:={WIDTH}",
        f"height:={HEIGHT}",
        "task:=place_mug",
        "publish_instance_mask:=true",
        *params,
    )
    return subprocess.Popen(
        [sys.executable, "-m", "kil_sim.sim_node", "--ros-args", *[a for p in params for a in ("-p", p)]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture()
def sim_process(tmp_path):
    process = _start_sim(tmp_path)
    rclpy.init()
    node = rclpy.create_node("sim_node_test")
    yield process, node, tmp_path
    node.destroy_node()
    rclpy.try_shutdown()
    process.terminate()
    output, _ = process.communicate(timeout=20)
    print(output)


def _spin_until(node, condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.02)
        if condition():
            return True
    return False


def test_sim_node_topics_servo_and_reset(sim_process) -> None:
    process, node, _ = sim_process
    stamps: dict[str, list[float]] = defaultdict(list)
    last: dict[str, object] = {}

    def keep(topic):
        def callback(msg):
            stamps[topic].append(time.monotonic())
            last[topic] = msg

        return callback

    image_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    for topic, kind, qos in [
        ("/camera/color/image_raw", Image, image_qos),
        ("/camera/depth/image_raw", Image, image_qos),
        ("/camera/color/camera_info", CameraInfo, image_qos),
        ("/camera/instance_mask", Image, image_qos),
        ("/kil/robot_state", RobotState, 10),
        ("/kil/keypoints/oracle", KeypointArray, 10),
    ]:
        node.create_subscription(kind, topic, keep(topic), qos)
    node.create_subscription(TFMessage, "/tf_static", keep("/tf_static"), static_qos(100))
    node.create_subscription(TFMessage, "/tf", keep("/tf"), 100)
    assert _spin_until(node, lambda: len(stamps["/camera/color/image_raw"]) > 0, 30.0), "no image from sim_node"
    stamps.clear()
    # Every stream keeps coming, the state faster than the camera (100 Hz vs 15 Hz nominal).
    assert _spin_until(node, lambda: len(stamps["/camera/color/image_raw"]) >= 10, 60.0)
    assert len(stamps["/kil/robot_state"]) > 2 * len(stamps["/camera/color/image_raw"])
    for topic in ("/camera/depth/image_raw", "/camera/color/camera_info", "/kil/keypoints/oracle"):
        assert _spin_until(node, lambda topic=topic: len(stamps[topic]) >= 8, 30.0), topic
    assert _spin_until(node, lambda: len(stamps["/camera/instance_mask"]) >= 8, 30.0)

    rgb = cv.image_to_numpy(last["/camera/color/image_raw"])
    depth = cv.image_to_numpy(last["/camera/depth/image_raw"])
    mask = cv.image_to_numpy(last["/camera/instance_mask"])
    assert rgb.shape == (HEIGHT, WIDTH, 3) and depth.shape == (HEIGHT, WIDTH) and mask.max() >= 2  # mug + tray
    info = cv.camera_info_from_msg(last["/camera/color/camera_info"])
    expected = CameraConfig(width=WIDTH, height=HEIGHT).intrinsics()
    assert (info.fx, info.cy) == pytest.approx((expected.fx, expected.cy))
    oracle = cv.keypoints_from_msg(last["/kil/keypoints/oracle"])
    assert oracle.method == "oracle" and "rim" in oracle.names and oracle.valid.all()
    # TF: the camera's pose on /tf_static (latched), the gripper's on /tf, as the state reports it.
    assert _spin_until(node, lambda: "/tf_static" in last and "/tf" in last, 30.0)
    (camera,) = [cv.transform_from_msg(t) for t in last["/tf_static"].transforms]
    truth = CameraConfig(width=WIDTH, height=HEIGHT).extrinsics("link_base")
    assert (camera.parent_frame, camera.child_frame) == ("link_base", "camera_color_optical_frame")
    assert np.allclose(camera.matrix, truth.matrix, atol=1e-9)
    (tcp,) = [cv.transform_from_msg(t) for t in last["/tf"].transforms]
    state = cv.robot_state_from_msg(last["/kil/robot_state"])
    assert (tcp.parent_frame, tcp.child_frame) == ("link_base", "link_tcp")
    assert np.linalg.norm(tcp.translation - state.position) < 0.02  # (the state may be a step newer)

    # Servo targets move the TCP; the gripper command closes the fingers.
    start = cv.robot_state_from_msg(last["/kil/robot_state"])
    target_pub = node.create_publisher(PoseStamped, "/kil/servo_target", 10)
    gripper_pub = node.create_publisher(Float32, "/kil/gripper_command", 10)
    goal = start.position + np.array([0.05, -0.04, -0.03])
    msg = PoseStamped()
    msg.header.frame_id = "link_base"
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = goal.tolist()
    x, y, z, w = start.quaternion.tolist()
    msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = x, y, z, w

    def arrived() -> bool:
        target_pub.publish(msg)
        gripper_pub.publish(Float32(data=0.0))
        state = cv.robot_state_from_msg(last["/kil/robot_state"])
        return np.linalg.norm(state.position - goal) < 2e-3 and state.gripper < 0.05

    assert _spin_until(node, arrived, 10.0), cv.robot_state_from_msg(last["/kil/robot_state"])

    # Reset to another configuration brings the arm home and reports the objects.
    client = node.create_client(ResetEpisode, "/sim_node/reset")
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(ResetEpisode.Request(task="pick_pen", setting="unseen_object", index=2))
    rclpy.spin_until_future_complete(node, future, timeout_sec=10.0)
    assert future.result().success and "pen=" in future.result().message
    assert _spin_until(
        node,
        lambda: np.linalg.norm(cv.robot_state_from_msg(last["/kil/robot_state"]).position - start.position) < 2e-3,
        5.0,
    )
    bad = client.call_async(ResetEpisode.Request(task="fold_laundry", index=0))
    rclpy.spin_until_future_complete(node, bad, timeout_sec=10.0)
    assert not bad.result().success and "unknown task" in bad.result().message
    assert process.poll() is None, "sim_node died"


def test_sim_node_reports_each_episode_outcome(tmp_path) -> None:
    """Nothing does the task: the time limit ends the episode as a failure, latched on
    /kil/episode_outcome with where the mug is; a reset starts the next episode."""
    from rclpy.qos import DurabilityPolicy

    from kil_interfaces.diagnostics import OK, WARN
    from kil_interfaces.msg import EpisodeOutcome
    from kil_interfaces.testing import DiagnosticsListener

    process = _start_sim(tmp_path, "max_episode_s:=1.0")
    rclpy.init()
    node = rclpy.create_node("sim_outcome_test")
    outcomes: list = []
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    try:
        node.create_subscription(EpisodeOutcome, "/kil/episode_outcome", outcomes.append, latched)
        assert _spin_until(node, lambda: bool(outcomes), 60.0), "no episode outcome"
        first = outcomes[0]
        assert (first.task, first.setting, first.index, first.success) == ("place_mug", "in_distribution", 0, False)
        assert first.duration >= 1.0 and first.completion == 0.0
        assert first.reason.startswith("time limit of 1 s reached; mug ") and "cm from the tray centre" in first.reason
        listener = DiagnosticsListener(node)
        status = listener.wait(lambda t: _spin_until(node, lambda: False, t), "sim_node: simulation", (OK, WARN),
                               message="place_mug in_distribution #0: failure after")  # fmt: skip
        values = DiagnosticsListener.values(status)
        assert values["task"] == "place_mug" and float(values["real_time_factor"]) > 0
        client = node.create_client(ResetEpisode, "/sim_node/reset")
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(ResetEpisode.Request(index=3))
        rclpy.spin_until_future_complete(node, future, timeout_sec=10.0)
        assert future.result().success
        assert _spin_until(node, lambda: any(o.index == 3 for o in outcomes), 60.0), "no outcome after the reset"
        assert len(outcomes) == 2  # one per episode, not one per check
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert "episode place_mug in_distribution #0: failure after" in output


def test_the_floating_gripper_reports_contact_an_arm_would_have_stopped(tmp_path) -> None:
    """Nothing stops the floating gripper, but driven 2 cm into the table its contact goes over the
    arms' collision rule: counted on /diagnostics and logged with the pose and what it touched; the
    episode goes on."""
    from kil_interfaces.diagnostics import OK, WARN
    from kil_interfaces.testing import DiagnosticsListener

    process = _start_sim(tmp_path, "max_episode_s:=60.0")
    rclpy.init()
    node = rclpy.create_node("sim_contact_test")
    last: dict = {}
    try:
        node.create_subscription(RobotState, "/kil/robot_state", lambda m: last.__setitem__("state", m), 10)
        listener = DiagnosticsListener(node)
        spin = lambda t: _spin_until(node, lambda: False, t)  # noqa: E731
        listener.wait(spin, "sim_node: simulation", (OK, WARN), until=lambda v: v["contacts_over_arm_limit"] == "0")
        assert _spin_until(node, lambda: "state" in last, 30.0), "no robot state"
        start = cv.robot_state_from_msg(last["state"])
        target_pub = node.create_publisher(PoseStamped, "/kil/servo_target", 10)
        msg = PoseStamped()
        msg.header.frame_id = "link_base"
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (
            float(start.position[0]),
            float(start.position[1]),
            -0.02,
        )
        x, y, z, w = start.quaternion.tolist()
        msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z, msg.pose.orientation.w = x, y, z, w

        def pressed(seconds: float) -> None:
            target_pub.publish(msg)
            _spin_until(node, lambda: False, seconds)

        status = listener.wait(pressed, "sim_node: simulation", (OK, WARN),
                               until=lambda v: int(v["contacts_over_arm_limit"]) >= 1)  # fmt: skip
        assert "failure" not in status.message  # the episode goes on: nothing stops the floating gripper
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        process.terminate()
        output, _ = process.communicate(timeout=20)
    line = next((x for x in output.splitlines() if "which an arm's controller would have stopped" in x), "")
    assert "of contact with" in line and "(limit 50 N)" in line and "TCP at (" in line and "contacts: " in line, output
