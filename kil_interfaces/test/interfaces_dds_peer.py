"""A stand-alone process for the cross-process DDS test (started by test_interfaces_dds.py).

publish: publishes the sample KeypointArray, ActionChunk and RobotState (TRANSIENT_LOCAL, so
    a late subscriber still gets them) until STOP_FILE exists or the time limit passes.
echo: subscribes to the three topics, converts each first message back to a dataclass and
    pickles the three of them to OUT_FILE, then exits (exit code 1 on time-out).

Usage: python interfaces_dds_peer.py publish STOP_FILE
       python interfaces_dds_peer.py echo OUT_FILE
"""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import rclpy
from interfaces_samples import sample_action_chunk, sample_keypoints, sample_robot_state
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from kil_interfaces import conversion as cv
from kil_interfaces.msg import ActionChunk, KeypointArray, RobotState

TIME_LIMIT_S = 30.0
QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
TOPICS = {
    "/test/keypoints": (KeypointArray, sample_keypoints, cv.keypoints_to_msg, cv.keypoints_from_msg),
    "/test/action_chunk": (
        ActionChunk,
        sample_action_chunk,
        cv.action_chunk_to_msg,
        cv.action_chunk_from_msg,
    ),
    "/test/robot_state": (RobotState, sample_robot_state, cv.robot_state_to_msg, cv.robot_state_from_msg),
}


def publish(stop_file: Path) -> int:
    node = rclpy.create_node("kil_test_publisher")
    for topic, (msg_type, sample, to_msg, _) in TOPICS.items():
        node.create_publisher(msg_type, topic, QOS).publish(to_msg(sample()))
    deadline = time.monotonic() + TIME_LIMIT_S
    while not stop_file.exists() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    return 0


def echo(out_file: Path) -> int:
    node = rclpy.create_node("kil_test_echo")
    received: dict[str, object] = {}
    for topic, (msg_type, _, _, from_msg) in TOPICS.items():
        node.create_subscription(
            msg_type, topic, lambda msg, t=topic, f=from_msg: received.setdefault(t, f(msg, what=t)), QOS
        )
    deadline = time.monotonic() + TIME_LIMIT_S
    while len(received) < len(TOPICS) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    out_file.write_bytes(pickle.dumps(received))
    return 0 if len(received) == len(TOPICS) else 1


if __name__ == "__main__":
    role, path = sys.argv[1], Path(sys.argv[2])
    rclpy.init()
    try:
        code = publish(path) if role == "publish" else echo(path)
    finally:
        rclpy.try_shutdown()
    sys.exit(code)
