"""teleop_node + recorder_node over real DDS: the grip clutches 10 Hz one-pose chunks that follow
the controller from the robot's pose, stale controller input stops them, and the A button
records an episode that holds the chunks. Buttons come as sensor_msgs/Joy (input_type:=joy):
the Quest and its quest2ros messages cannot exist here."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, QoSProfile
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import Joy
from std_msgs.msg import Bool

from kil_interfaces import conversion as cv
from kil_interfaces.data import RobotStateData
from kil_interfaces.diagnostics import ERROR, OK
from kil_interfaces.msg import ActionChunk, RobotState
from kil_interfaces.testing import DiagnosticsListener
from kil_teleop.recording import list_episodes

ROBOT = np.array([0.3, 0.0, 0.2])
DOWN = [1.0, 0.0, 0.0, 0.0]  # x, y, z, w: tool pointing down


def chunk(msg: ActionChunk):
    return cv.action_chunk_from_msg(msg)


def _process(module: str, *params: str) -> subprocess.Popen:
    command = [sys.executable, "-m", module, "--ros-args"]
    for param in params:
        command += ["-p", param]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class Operator:
    """Publishes the controller pose, its buttons and the robot state like Quest2ROS + a robot."""

    def __init__(self, node) -> None:
        self.node = node
        self.pose_pub = node.create_publisher(PoseStamped, "/q2r_right_hand_pose", 10)
        self.joy_pub = node.create_publisher(Joy, "/q2r_right_hand_inputs", 10)
        self.state_pub = node.create_publisher(RobotState, "/kil/robot_state", 10)
        self.hand = np.array([0.5, 0.5, 1.0])
        self.grip, self.record, self.discard = 0.0, False, False
        self.chunks = []
        node.create_subscription(
            ActionChunk, "/kil/action_chunk", lambda m: self.chunks.append(cv.action_chunk_from_msg(m)), 50
        )
        self.recording: list[bool] = []
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(Bool, "/recorder_node/recording", lambda m: self.recording.append(m.data), latched)

    def run(self, seconds: float, pose: bool = True) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            now = self.node.get_clock().now()
            if pose:
                msg = PoseStamped()
                msg.header.stamp = now.to_msg()
                msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in self.hand)
                msg.pose.orientation.w = 1.0
                self.pose_pub.publish(msg)
            joy = Joy()
            joy.header.stamp = now.to_msg()
            joy.axes = [0.0, 0.0, 0.0, float(self.grip)]
            joy.buttons = [int(self.discard), int(self.record)]
            self.joy_pub.publish(joy)
            state = RobotStateData(now.nanoseconds, "link_base", ROBOT, DOWN, 1.0)
            self.state_pub.publish(cv.robot_state_to_msg(state))
            rclpy.spin_once(self.node, timeout_sec=0.02)

    def press_record(self) -> None:
        """Press and release A, then wait (up to 10 s) for the recorder to report the new state."""
        self._press("record")

    def press_discard(self) -> None:
        """Press and release B (discard the episode), then wait for the recorder to stop."""
        self._press("discard")

    def _press(self, button: str) -> None:
        before = self.recording[-1] if self.recording else None
        setattr(self, button, True)
        self.run(0.3)
        setattr(self, button, False)
        self.run(0.2)  # the release is seen too, so that the next press is a new rising edge
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not self.recording or self.recording[-1] == before):
            self.run(0.1)


def test_teleop_drives_chunks_and_records(tmp_path: Path) -> None:
    recorder = _process("kil_teleop.recorder_node", f"output_dir:={tmp_path}", "task:=teleop_test")
    teleop = _process("kil_teleop.teleop_node", "input_type:=joy", "max_input_age_s:=0.3")
    rclpy.init()
    node = rclpy.create_node("operator")
    try:
        operator = Operator(node)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # both nodes up
            operator.run(0.2)
            if operator.recording and node.count_subscribers("/q2r_right_hand_pose") > 0:
                break
        operator.run(1.0)
        assert operator.chunks == []  # grip released: the arm is left alone
        listener = DiagnosticsListener(node)
        listener.wait(operator.run, "teleop_node: teleop", (OK,), message="released")

        operator.grip = 1.0
        deadline = time.monotonic() + 30
        while len(operator.chunks) < 5 and time.monotonic() < deadline:  # (10 Hz nominal; no rate asserted)
            operator.run(0.1)
        assert len(operator.chunks) >= 5, "teleop_node sent no chunks while the grip was held"
        first = operator.chunks[0]
        assert first.positions.shape == (1, 3) and first.execute_steps == 1
        np.testing.assert_allclose(first.positions[0], ROBOT, atol=1e-9)  # starts at the robot, no jump
        operator.hand = operator.hand + [0.02, 0.0, 0.0]
        operator.run(0.5)
        np.testing.assert_allclose(operator.chunks[-1].positions[0], ROBOT + [0.02, 0.0, 0.0], atol=1e-9)

        operator.press_record()
        assert operator.recording[-1] is True
        operator.run(1.0)
        operator.press_record()
        assert operator.recording[-1] is False
        (bag,) = list_episodes(tmp_path)
        with Reader(bag) as reader:
            counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts["/kil/action_chunk"] >= 1 and counts["/kil/robot_state"] >= 1

        operator.press_record()  # a second episode, thrown away with B
        assert operator.recording[-1] is True
        operator.run(0.5)
        operator.press_discard()
        assert operator.recording[-1] is False
        assert list_episodes(tmp_path) == [bag] and not list((tmp_path / ".partial").glob("*"))

        listener.wait(operator.run, "teleop_node: teleop", (OK,), message="engaged")
        count = len(operator.chunks)
        operator.run(1.0, pose=False)  # the headset stops tracking
        assert len(operator.chunks) <= count + 3  # at most the ticks before the pose went stale
        stale = listener.wait(lambda t: operator.run(t, pose=False), "teleop_node: teleop", (ERROR,))
        assert stale.message.startswith("/q2r_right_hand_pose older than max_input_age_s")
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        for process in (teleop, recorder):
            process.terminate()
        outputs = [p.communicate(timeout=20)[0] for p in (teleop, recorder)]
    assert "older than max_input_age_s" in outputs[0]
    assert all("Traceback" not in out for out in outputs), outputs
