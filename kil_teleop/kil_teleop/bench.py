"""Recorder throughput: camera-rate images and robot states over DDS into ``recorder_node``.

    python -m kil_teleop.bench --json                 # 640x480 RGB + depth at 30 Hz, states at 200 Hz, 60 s
    python -m kil_teleop.bench --duration 10 --json   # shorter

Publishes from this process (wall-clock paced) to a ``recorder_node`` subprocess recording one
episode, then reads the bag back. Prints: messages sent and recorded per topic (dropped = the
difference), MB/s written to disk, the recorder's CPU seconds per recorded second (from
/proc), and, in the same run, the bag writer alone (``EpisodeWriter`` fed the same serialised
messages in a loop, no DDS): its MB/s and the headroom ratio (writer alone / required rate).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOPICS = ("/camera/color/image_raw", "/camera/depth/image_raw", "/kil/robot_state")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _frames(width: int, height: int, count: int = 8):
    """Camera-like frames (smooth shading + sensor noise: compresses as real images roughly do)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    out = []
    for k in range(count):
        base = (127 + 100 * np.sin(x / 37.0 + k) * np.cos(y / 29.0)).astype(np.int16)
        rgb = np.clip(base[..., None] + rng.integers(-6, 7, (height, width, 3)), 0, 255).astype(np.uint8)
        depth = (800 + 200 * np.cos(x / 50.0) + rng.integers(-3, 4, (height, width))).astype(np.uint16)
        out.append((rgb, depth))
    return out


def _call(node, client, timeout_s: float = 60.0):
    import rclpy
    from std_srvs.srv import Trigger

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if client.wait_for_service(timeout_sec=1.0):
            future = client.call_async(Trigger.Request())
            rclpy.spin_until_future_complete(node, future, timeout_sec=10.0)
            if future.result() is not None:
                return future.result()
    raise RuntimeError(f"{client.srv_name} did not answer")


def run(
    duration_s: float,
    width: int,
    height: int,
    camera_hz: float,
    state_hz: float,
    out: Path,
    publisher_depth: int = 10,
    recorder_params: tuple[str, ...] = (),
) -> dict:
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import Image
    from std_srvs.srv import Trigger

    from kil_interfaces import conversion as cv
    from kil_interfaces.data import RobotStateData
    from kil_interfaces.msg import RobotState
    from kil_interfaces.typestore import kil_typestore
    from kil_teleop.recording import DEMONSTRATION_TOPICS, EpisodeWriter, list_episodes

    command = [sys.executable, "-m", "kil_teleop.recorder_node", "--ros-args", "-p", f"output_dir:={out / 'dds'}"]
    command += ["-p", f"topics:=[{','.join(repr(t) for t in TOPICS)}]", "-p", "task:=bench"]
    for param in recorder_params:
        command += ["-p", param]
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    rclpy.init(args=[])  # (not sys.argv: this command's own flags are not ROS arguments)
    node = rclpy.create_node("recorder_bench")
    # As the camera drivers publish by default (the ROS 2 default profile: reliable, keep last 10).
    qos = QoSProfile(depth=publisher_depth, reliability=ReliabilityPolicy.RELIABLE)
    color_pub = node.create_publisher(Image, TOPICS[0], qos)
    depth_pub = node.create_publisher(Image, TOPICS[1], qos)
    state_pub = node.create_publisher(RobotState, TOPICS[2], 50)
    start_client = node.create_client(Trigger, "/recorder_node/start")
    stop_client = node.create_client(Trigger, "/recorder_node/stop")
    frames = _frames(width, height)
    sent = dict.fromkeys(TOPICS, 0)
    payload = []  # serialised messages of the first second, for the writer-alone run
    try:
        deadline = time.monotonic() + 60
        while node.count_subscribers(TOPICS[0]) == 0 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        assert _call(node, start_client).success
        cpu0, t0 = _cpu_seconds(recorder.pid), time.monotonic()
        next_camera = next_state = t0
        k = 0
        while (now := time.monotonic()) < t0 + duration_s:
            stamp = node.get_clock().now().nanoseconds
            if now >= next_state:
                next_state += 1.0 / state_hz
                state = cv.robot_state_to_msg(RobotStateData(stamp, "link_base", [0.3, 0.0, 0.2], [1, 0, 0, 0], 1.0))
                state_pub.publish(state)
                sent[TOPICS[2]] += 1
                if now - t0 < 1.0:
                    payload.append((TOPICS[2], serialize_message(state)))
            if now >= next_camera:
                next_camera += 1.0 / camera_hz
                rgb, depth = frames[k % len(frames)]
                k += 1
                color = cv.numpy_to_image(rgb, "rgb8", stamp, "camera_color_optical_frame")
                depth_msg = cv.numpy_to_image(depth, "16UC1", stamp, "camera_color_optical_frame")
                color_pub.publish(color)
                depth_pub.publish(depth_msg)
                sent[TOPICS[0]] += 1
                sent[TOPICS[1]] += 1
                if now - t0 < 1.0:
                    payload += [(TOPICS[0], serialize_message(color)), (TOPICS[1], serialize_message(depth_msg))]
            time.sleep(max(0.0, min(next_camera, next_state) - time.monotonic()))
        time.sleep(0.5)  # let the last messages arrive
        assert _call(node, stop_client).success
        elapsed = time.monotonic() - t0
        cpu = _cpu_seconds(recorder.pid) - cpu0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        recorder.terminate()
        recorder.wait(timeout=20)
    (bag,) = list_episodes(out / "dds")
    with Reader(bag) as reader:
        recorded = {c.topic: c.msgcount for c in reader.connections}
    written = sum(f.stat().st_size for f in bag.iterdir() if f.is_file())
    raw_rate = sum(len(data) for _, data in payload) / 1.0 / 1e6  # MB per second of the stream

    # The bag writer alone, the same messages, as fast as it goes.
    typestore = kil_typestore()
    topics = {t: DEMONSTRATION_TOPICS[t] for t in TOPICS}
    alone_start, stamp, repeats = time.perf_counter(), 0, 0
    with EpisodeWriter(out / "alone" / "episode_0000", topics, typestore, segment_s=0.5) as writer:
        while time.perf_counter() - alone_start < min(10.0, duration_s) or repeats == 0:
            for topic, data in payload:
                stamp += 1_000_000
                writer.write_serialized(topic, stamp, data)
            repeats += 1
    alone_s = time.perf_counter() - alone_start
    alone_rate = repeats * sum(len(d) for _, d in payload) / alone_s / 1e6
    return {
        "duration_s": round(elapsed, 2),
        "image": f"{width}x{height} rgb8 + 16UC1 at {camera_hz} Hz; robot state at {state_hz} Hz",
        "sent": sent,
        "recorded": {t: recorded.get(t, 0) for t in TOPICS},
        "dropped": {t: sent[t] - recorded.get(t, 0) for t in TOPICS},
        "stream_mb_per_s": round(raw_rate, 2),
        "written_mb_per_s": round(written / elapsed / 1e6, 2),
        "recorder_cpu_s_per_s": round(cpu / elapsed, 3),
        "writer_alone_mb_per_s": round(alone_rate, 1),
        "headroom_writer_alone": round(alone_rate / raw_rate, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_teleop.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="recording length (s)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--camera-hz", type=float, default=30.0)
    parser.add_argument("--state-hz", type=float, default=200.0)
    parser.add_argument("--publisher-depth", type=int, default=10, help="image publishers' history depth (drivers: 10)")
    parser.add_argument(
        "--recorder-param", action="append", default=[], help="extra recorder_node parameter NAME:=VALUE (repeatable)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kil_recorder_bench_") as tmp:
        result = run(
            args.duration,
            args.width,
            args.height,
            args.camera_hz,
            args.state_hz,
            Path(tmp),
            args.publisher_depth,
            tuple(args.recorder_param),
        )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
