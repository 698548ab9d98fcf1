"""keypoint_node over real DDS: colour/depth/camera_info in, KeypointArray + markers out; bad
frames dropped without the node dying. Plus the colour/depth synchroniser."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import rclpy
from eval_perception_fixtures import rendered_scene, write_spec
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import MarkerArray

from kil_interfaces import conversion as cv
from kil_interfaces.diagnostics import ERROR, OK, WARN
from kil_interfaces.msg import KeypointArray
from kil_interfaces.testing import (
    DiagnosticsListener,
    call_trigger,
    change_lifecycle_state,
    in_process,
    lifecycle_state,
    spin_executor,
)
from kil_interfaces.tf import StaticTransformBroadcaster
from kil_perception.synchronization import SAME_CLOCK_NS, LatestPairSynchronizer, reset_stamp


@contextmanager
def keypoint_node(params: list[str], world):
    """A keypoint_node process with ``params`` and a test node; at exit both stop and the world
    closes, and ``log["output"]`` holds the process's output."""
    command = [sys.executable, "-m", "kil_perception.keypoint_node", "--ros-args"]
    for param in params:
        command += ["-p", param]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rclpy.init()
    node = rclpy.create_node("keypoint_node_test")
    log: dict[str, str] = {}
    try:
        yield node, process, log
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        world.close()
        process.terminate()
        log["output"], _ = process.communicate(timeout=20)


def spin_for(node, seconds: float, feed=None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if feed:
            feed()
        rclpy.spin_once(node, timeout_sec=0.05)


def test_synchronizer_pairs_newest_within_slop_and_never_repeats() -> None:
    sync: LatestPairSynchronizer[str, str] = LatestPairSynchronizer(slop_ns=10)
    sync.add_color(100, "c100")
    assert sync.pop_newest() is None  # no depth yet
    sync.add_depth(95, "d95")
    sync.add_color(200, "c200")
    sync.add_depth(250, "d250")
    pair = sync.pop_newest()
    assert (pair.stamp_ns, pair.color, pair.depth) == (100, "c100", "d95")  # c200 has no depth within 10 ns
    assert sync.pop_newest() is None  # the same pair is not returned twice
    sync.add_color(300, "c300")
    sync.add_depth(305, "d305")
    assert sync.pop_newest().color == "c300"  # the newest, skipping older frames
    sync.skip_through(400)  # a reset: frames up to 400 belong to the scene before it
    sync.add_color(350, "c350")  # (still in flight at the reset)
    sync.add_depth(350, "d350")
    assert sync.pop_newest() is None
    sync.add_color(450, "c450")
    sync.add_depth(450, "d450")
    assert sync.pop_newest().color == "c450" and sync.newest_color_ns == 450


def test_a_reset_skips_frames_through_the_clock_the_camera_stamps_on() -> None:
    now = 1_000 * SAME_CLOCK_NS
    assert reset_stamp(None, now) is None  # nothing received: nothing to skip
    assert reset_stamp(now - 60_000_000, now) == now  # simulator / host-stamped camera: up to the reset itself
    assert reset_stamp(now + 5_000_000, now) == now + 5_000_000
    assert reset_stamp(123_000, now) == 123_000  # a device clock: only the frames received so far


class CameraFeed:
    """Publishes colour, depth, camera info (and optionally instance masks) with rising stamps."""

    def __init__(
        self, node, intrinsics, reliability: ReliabilityPolicy = ReliabilityPolicy.RELIABLE, extrinsics=None
    ) -> None:
        """``extrinsics``: the camera's pose in link_base, sent on /tf_static for frame "cam" (None: no TF)."""
        qos = QoSProfile(depth=1, reliability=reliability)
        self.static_tf = StaticTransformBroadcaster(node)
        if extrinsics is not None:
            self.send_pose(extrinsics)
        topics = ("/camera/color/image_raw", "/camera/depth/image_raw", "/camera/instance_mask")
        self.pubs = {topic: node.create_publisher(Image, topic, qos) for topic in topics}
        self.info_pub = node.create_publisher(CameraInfo, "/camera/color/camera_info", qos)
        self.intrinsics = intrinsics
        self.stamp = 0
        self.wall_clock = False  # True: frames stamped with the wall clock (the node's), else 50 ms apart from 0

    def send_pose(self, extrinsics) -> None:
        self.static_tf.send([replace(extrinsics, child_frame="cam")], 0)

    def publish(
        self,
        color: np.ndarray,
        depth: np.ndarray,
        color_encoding="rgb8",
        mask: np.ndarray | None = None,
        depth_encoding="16UC1",
        stamp_ns: int | None = None,
    ):
        self.stamp = stamp_ns or (time.time_ns() if self.wall_clock else self.stamp + 50_000_000)
        self.info_pub.publish(cv.camera_info_to_msg(self.intrinsics, 0))
        if mask is not None:
            self.pubs["/camera/instance_mask"].publish(cv.numpy_to_image(mask, "16UC1", self.stamp, "cam"))
        self.pubs["/camera/color/image_raw"].publish(cv.numpy_to_image(color, color_encoding, self.stamp, "cam"))
        self.pubs["/camera/depth/image_raw"].publish(cv.numpy_to_image(depth, depth_encoding, self.stamp, "cam"))


def keypoints(msg: KeypointArray):
    return cv.keypoints_from_msg(msg)


def first_results(node, results: list, feed, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not results and time.monotonic() < deadline:
        spin_for(node, 0.2, feed)
    assert results, "keypoint_node published nothing (on this topic)"


def test_keypoint_node_publishes_and_survives_bad_frames(tmp_path: Path) -> None:
    rgb, depth, world = rendered_scene()
    intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
    names = [("mug", "rim"), ("mug", "handle"), ("block", "top"), ("block", "corner")]
    truth_points = np.array([world.keypoints(o)[k] for o, k in names])
    uv = intr.project(to_cam.apply(truth_points))
    spec = write_spec(tmp_path, rgb, {f"{o}_{k}": tuple(p) for (o, k), p in zip(names, uv, strict=True)})
    params = [f"spec:={spec}", "backend:=classic"]
    with keypoint_node(params, world) as (node, process, log):
        feed = CameraFeed(node, intr, extrinsics=world.camera_extrinsics)
        results, markers = [], []
        node.create_subscription(
            KeypointArray, "/kil/keypoints", lambda m: results.append(cv.keypoints_from_msg(m)), 10
        )
        node.create_subscription(MarkerArray, "/kil/keypoints/markers", markers.append, 10)

        def good() -> None:
            feed.publish(rgb, depth)

        def bad() -> None:
            # One at a time: the node keeps only the newest frame set, so back to back on a loaded
            # machine the first would be replaced before it is read.
            feed.publish(rgb, depth[::2, ::2].copy())  # size mismatch
            spin_for(node, 0.3)
            feed.publish(rgb[..., 0].copy(), depth, color_encoding="mono8")  # not a colour image
            spin_for(node, 0.3)
            feed.publish(rgb, (depth // 256).astype(np.uint8), depth_encoding="mono8")  # depth of the wrong encoding

        first_results(node, results, good)
        first_results(node, markers, None, timeout_s=5.0)  # (published right after the keypoints)
        first = results[-1]
        assert first.frame_id == "link_base" and first.method == "image" and first.backend == "classic"
        assert first.names == tuple(f"{o}_{k}" for o, k in names) and first.valid.all()
        assert np.linalg.norm(first.points - truth_points, axis=1).max() < 0.01  # reference frame: exact pixels
        assert markers and len(markers[-1].markers) == 8  # a sphere and a label per keypoint
        spin_for(node, 1.0)  # let frames in flight finish
        count = len(results)
        spin_for(node, 1.5, bad)
        assert process.poll() is None, "keypoint_node died on a bad frame"
        assert len(results) == count  # bad frames produced nothing
        deadline = time.monotonic() + 60  # a loaded machine may take a while to get the next one through
        while len(results) == count and time.monotonic() < deadline:
            spin_for(node, 0.2, good)
        assert len(results) > count  # and good ones still work
    assert "frame dropped" in log["output"] and "Traceback" not in log["output"]
    assert "depth encoding 'mono8' is not supported; use 16UC1 (mm) or 32FC1 (m)" in log["output"]
    assert "sizes differ: colour 640x480, depth 320x240, CameraInfo 640x480" in log["output"]
    assert "with classic; 1 CPU thread(s)" in log["output"]  # the default cpu_threads (torch's: one per core)


def test_keypoint_node_waits_for_the_camera_transform_then_publishes_in_the_base_frame(tmp_path: Path) -> None:
    """No calibration file: frames arriving before the camera's TF are dropped with a log line
    naming both frames; once /tf_static carries link_base <- cam, the 3-D keypoints are in
    link_base and at the true positions. A later re-calibration (new static transform) is used."""
    rgb, depth, world = rendered_scene()
    intr, pose = world.camera_intrinsics, world.camera_extrinsics
    names = ("rim", "handle", "body")  # visible points (the mug's "base" is hidden inside it)
    truth = np.array([world.keypoints("mug")[k] for k in names])
    uv = intr.project(pose.inverse().apply(truth))
    spec = write_spec(tmp_path, rgb, dict(zip(names, map(tuple, uv), strict=True)), name="mug")
    with keypoint_node([f"spec:={spec}", "backend:=classic"], world) as (node, process, log):
        feed = CameraFeed(node, intr)  # no transform yet
        results = []
        node.create_subscription(KeypointArray, "/kil/keypoints", lambda m: results.append(keypoints(m)), 10)
        deadline = time.monotonic() + 60
        while node.count_subscribers("/camera/color/image_raw") == 0 and time.monotonic() < deadline:
            spin_for(node, 0.2)
        spin_for(node, 3.0, lambda: feed.publish(rgb, depth))
        assert not results and process.poll() is None  # waiting, not publishing camera-frame points
        feed.send_pose(pose)
        first_results(node, results, lambda: feed.publish(rgb, depth))
        assert results[-1].frame_id == "link_base" and results[-1].valid.all()
        assert np.linalg.norm(results[-1].points - truth, axis=1).max() < 0.01
        moved = replace(pose, translation=pose.translation + np.array([0.0, 0.0, 0.1]))
        feed.send_pose(moved)  # re-calibrated: the camera is 10 cm higher
        count = len(results)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            len(results) > count and abs(results[-1].points[:, 2] - truth[:, 2] - 0.1).max() < 0.01
        ):
            spin_for(node, 0.2, lambda: feed.publish(rgb, depth))
        assert abs(results[-1].points[:, 2] - truth[:, 2] - 0.1).max() < 0.01
    assert "waiting for the transform link_base <- cam on /tf_static or /tf" in log["output"], log["output"][-2000:]
    assert "camera pose link_base <- cam from TF (kil)" in log["output"]


def test_keypoint_node_instance_matching_with_a_mask_topic(tmp_path: Path) -> None:
    """method instance, instance_source masks: keypoints matched inside the mask message paired by
    stamp; colour frames without a mask are dropped."""
    rgb, depth, world = rendered_scene()
    mask = world.render(instance_mask=True).instance_mask.astype(np.uint16)  # 1 = mug, 2 = block
    intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
    names = ("rim", "handle", "body")  # visible points (the mug's "base" is hidden inside it)
    truth = np.array([world.keypoints("mug")[k] for k in names])
    uv = intr.project(to_cam.apply(truth))
    spec = write_spec(tmp_path, rgb, dict(zip(names, map(tuple, uv), strict=True)), name="mug")
    params = [f"spec:={spec}", "backend:=classic", "method:=instance"]
    params += ["instance_source:=masks", "mask_categories:=1:mug,2:block"]
    with keypoint_node(params, world) as (node, process, log):
        feed = CameraFeed(node, intr, extrinsics=world.camera_extrinsics)
        results = []
        node.create_subscription(
            KeypointArray, "/kil/keypoints", lambda m: results.append(cv.keypoints_from_msg(m)), 10
        )
        first_results(node, results, lambda: feed.publish(rgb, depth, mask=mask))
        first = results[-1]
        assert first.method == "instance" and first.valid.all()
        # (the base is hidden inside the mug: depth gives the surface in front of it)
        assert np.linalg.norm(first.points[:2] - truth[:2], axis=1).max() < 0.01
        spin_for(node, 1.0)
        count = len(results)
        spin_for(node, 1.5, lambda: feed.publish(rgb, depth))  # no masks: dropped
        assert process.poll() is None and len(results) == count
    assert "no /camera/instance_mask message" in log["output"] and "Traceback" not in log["output"]


def test_incompatible_image_qos_is_reported_and_best_effort_then_receives(tmp_path: Path) -> None:
    """A best-effort camera driver and keypoint_node's reliable default match nothing: one warning
    names the topic and both policies; image_reliability:=best_effort then receives. (320x240: over
    best-effort DDS most fragments of 640x480 frames are lost here, see ROS2_ON_PYPI.md.)"""
    from types import SimpleNamespace

    rgb, depth, world = rendered_scene(size=(320, 240))
    intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
    uv = intr.project(to_cam.apply(np.array([world.keypoints("mug")[k] for k in ("rim", "handle", "base")])))
    spec = write_spec(tmp_path, rgb, dict(zip(("rim", "handle", "base"), map(tuple, uv), strict=True)), name="mug")
    params = [f"spec:={spec}", "backend:=classic"]
    with keypoint_node(params, SimpleNamespace(close=lambda: None)) as (node, _process, log):
        feed = CameraFeed(node, intr, ReliabilityPolicy.BEST_EFFORT, world.camera_extrinsics)
        results = []
        node.create_subscription(KeypointArray, "/kil/keypoints", results.append, 10)
        deadline = time.monotonic() + 60
        while node.count_subscribers("/camera/color/image_raw") == 0 and time.monotonic() < deadline:
            spin_for(node, 0.2, lambda: feed.publish(rgb, depth))
        spin_for(node, 3.0, lambda: feed.publish(rgb, depth))  # discovery reports the mismatch
        assert not results  # nothing flows
    assert (
        "incompatible QoS on /camera/color/image_raw: RELIABILITY is reliable on this subscription but "
        "best_effort on the publisher" in log["output"]
    ), log["output"][-2000:]
    assert log["output"].count("incompatible QoS on /camera/color/image_raw") == 1  # once, not per frame
    with keypoint_node([*params, "image_reliability:=best_effort"], world) as (node, _process, log):
        feed = CameraFeed(node, intr, ReliabilityPolicy.BEST_EFFORT, world.camera_extrinsics)
        results = []
        node.create_subscription(KeypointArray, "/kil/keypoints", results.append, 10)
        first_results(node, results, lambda: feed.publish(rgb, depth), timeout_s=120.0)
    assert "incompatible QoS" not in log["output"]


def test_keypoint_node_tracking_restarts_from_matching_on_reset(tmp_path: Path) -> None:
    """method:=track: the first frame is matched (cosine scores), later ones tracked (scores 1 or
    0 for visible / lost); ~/reset makes the next frame matched again."""

    rgb, depth, world = rendered_scene()
    intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
    uv = intr.project(to_cam.apply(np.array([world.keypoints("mug")[k] for k in ("rim", "handle", "base")])))
    spec = write_spec(tmp_path, rgb, dict(zip(("rim", "handle", "base"), map(tuple, uv), strict=True)), name="mug")
    params = [f"spec:={spec}", "backend:=classic", "method:=track"]
    with keypoint_node(params, world) as (node, process, log):
        feed = CameraFeed(node, intr, extrinsics=world.camera_extrinsics)
        results = []
        node.create_subscription(KeypointArray, "/kil/keypoints", lambda m: results.append(keypoints(m)), 10)

        def matched(frame) -> bool:  # tracking reports visibility (exactly 0 or 1), matching similarities
            return not np.isin(frame.scores, (0.0, 1.0)).all()

        first_results(node, results, lambda: feed.publish(rgb, depth))
        deadline = time.monotonic() + 60
        while len(results) < 3 and time.monotonic() < deadline:
            spin_for(node, 0.2, lambda: feed.publish(rgb, depth))
        assert results[0].method == "track" and matched(results[0]) and not matched(results[-1])
        assert call_trigger(node, "/keypoint_node/reset").success
        count = len(results)
        deadline = time.monotonic() + 60
        while len(results) <= count and time.monotonic() < deadline:
            spin_for(node, 0.2, lambda: feed.publish(rgb, depth))
        assert any(matched(frame) for frame in results[count:]), "no frame matched again after ~/reset"
        # A frame of the scene before a reset (stamped before it, arriving after it) does not start the
        # tracks. The camera stamps on the node's clock from here on, as the simulator's and host drivers do.
        feed.wall_clock = True
        count = len(results)
        deadline = time.monotonic() + 60
        while len(results) <= count + 1 and time.monotonic() < deadline:
            spin_for(node, 0.2, lambda: feed.publish(rgb, depth))
        stale = time.time_ns()  # after every frame published so far
        assert call_trigger(node, "/keypoint_node/reset").success
        count = len(results)
        feed.publish(rgb, depth, stamp_ns=stale)  # (in flight at the reset)
        spin_for(node, 3.0)  # time to process it, were it used
        deadline = time.monotonic() + 60
        while len(results) <= count and time.monotonic() < deadline:
            spin_for(node, 0.2, lambda: feed.publish(rgb, depth))
        after = results[count:]
        assert after and all(r.stamp_ns > stale for r in after), [r.stamp_ns - stale for r in after]
        assert matched(after[0]), "the first frame after the reset was not matched"
        assert process.poll() is None
    assert "Traceback" not in log["output"]


def test_an_extraction_failure_drops_the_frame_and_the_node_goes_on(tmp_path: Path) -> None:
    """keypoint_node in this process (real rclpy and DDS) with a fault injected into its
    extractor: the failing frame is dropped with one line naming the error, the node keeps
    running and the next frames are published."""
    from kil_perception.keypoint_node import KeypointNode

    rgb, depth, world = rendered_scene()
    intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
    uv = intr.project(to_cam.apply(np.array([world.keypoints("mug")[k] for k in ("rim", "handle", "base")])))
    spec = write_spec(tmp_path, rgb, dict(zip(("rim", "handle", "base"), map(tuple, uv), strict=True)), name="mug")
    world.close()
    parameters = {"spec": spec, "backend": "classic", "target_frame": "''"}
    with in_process(KeypointNode, parameters) as (node, test, executor):
        faults = []
        original = node.matcher.extract

        def failing_once(image):
            if not faults:
                faults.append(image.shape)
                raise RuntimeError("injected extractor fault")
            return original(image)

        node.matcher.extract = failing_once
        logged = []
        node._warn.logger = type("Log", (), {"warning": lambda self, text: logged.append(text)})()
        feed = CameraFeed(test, intr)
        results = []
        test.create_subscription(KeypointArray, "/kil/keypoints", results.append, 10)
        deadline = time.monotonic() + 60
        while len(results) < 2 and time.monotonic() < deadline:
            feed.publish(rgb, depth)
            spin_executor(executor, 0.3)  # (one executor for both nodes: let it serve every callback)
        assert faults and len(results) >= 2
        assert logged.count("frame dropped: extraction failed (RuntimeError: injected extractor fault)") == 1


def test_keypoint_node_diagnostics_name_why_no_keypoints_come(tmp_path: Path) -> None:
    """/diagnostics over DDS: WARN before any frame; OK with the latency and valid keypoints per object
    while good frames flow; ERROR naming the drop reason once only bad frames arrive for longer than
    max_output_gap_s; OK again when good frames return."""
    rgb, depth, world = rendered_scene()
    intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
    names = [("mug", "rim"), ("mug", "handle"), ("block", "top")]
    uv = intr.project(to_cam.apply(np.array([world.keypoints(o)[k] for o, k in names])))
    spec = write_spec(tmp_path, rgb, {f"{o}_{k}": tuple(p) for (o, k), p in zip(names, uv, strict=True)})
    params = [f"spec:={spec}", "backend:=classic", "diagnostics_period_s:=0.2", "max_output_gap_s:=0.6"]
    with keypoint_node(params, world) as (node, process, _log):
        feed = CameraFeed(node, intr, extrinsics=world.camera_extrinsics)
        listener = DiagnosticsListener(node)
        frames = {"kind": None}

        def publish() -> None:
            if frames["kind"] == "good":
                feed.publish(rgb, depth)
            elif frames["kind"] == "bad":
                feed.publish(rgb, depth[::2, ::2].copy())  # size mismatch

        def spin(seconds: float) -> None:
            spin_for(node, seconds, publish)

        listener.wait(spin, "keypoint_node: extraction", (WARN,), timeout_s=90, message="waiting for colour")
        frames["kind"] = "good"
        ok = listener.wait(spin, "keypoint_node: extraction", (OK,), message="extracting (image, classic)")
        assert (
            int(DiagnosticsListener.values(ok)["published"]) >= 1
            and float(DiagnosticsListener.values(ok)["p95_ms"]) > 0
        )
        valid = listener.wait(spin, "keypoint_node: keypoints", (OK,))
        assert DiagnosticsListener.values(valid)["thing[0]"] == "3/3" and valid.message == "3/3 keypoints valid"
        frames["kind"] = "bad"
        error = listener.wait(spin, "keypoint_node: extraction", (ERROR,), message="sizes differ")
        assert "no keypoints published for" in error.message and int(DiagnosticsListener.values(error)["dropped"]) > 0
        frames["kind"] = "good"
        listener.wait(spin, "keypoint_node: extraction", (OK,))
        assert process.poll() is None


def test_keypoint_node_lifecycle_transitions_and_a_failing_configure(tmp_path: Path) -> None:
    """autostart:=false over DDS: unconfigured (no keypoints, /diagnostics WARN) until configured;
    inactive publishes nothing; active does; deactivate stops publishing; cleanup returns to
    unconfigured. A configure with a missing spec fails with the path in the log and on /diagnostics
    and leaves the node unconfigured and alive; setting the spec and configuring again works."""
    from lifecycle_msgs.msg import Transition
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    rgb, depth, world = rendered_scene()
    intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
    names = ("rim", "handle", "body")
    uv = intr.project(to_cam.apply(np.array([world.keypoints("mug")[k] for k in names])))
    spec = write_spec(tmp_path, rgb, dict(zip(names, map(tuple, uv), strict=True)), name="mug")
    missing = tmp_path / "no_such_spec.yaml"
    params = [f"spec:={missing}", "backend:=classic", "autostart:=false", "diagnostics_period_s:=0.2"]
    with keypoint_node(params, world) as (node, process, log):
        feed = CameraFeed(node, intr, extrinsics=world.camera_extrinsics)
        results: list = []
        node.create_subscription(KeypointArray, "/kil/keypoints", results.append, 10)
        listener = DiagnosticsListener(node)

        def good() -> None:
            feed.publish(rgb, depth)

        def spin(seconds: float) -> None:
            spin_for(node, seconds, good)

        assert lifecycle_state(node, "/keypoint_node") == "unconfigured"
        listener.wait(spin, "keypoint_node: extraction", (WARN,), message="unconfigured")
        assert not change_lifecycle_state(node, "/keypoint_node", Transition.TRANSITION_CONFIGURE)
        assert lifecycle_state(node, "/keypoint_node") == "unconfigured"
        error = listener.wait(spin, "keypoint_node: extraction", (ERROR,), message="configure failed")
        assert str(missing) in error.message and process.poll() is None

        client = node.create_client(SetParameters, "/keypoint_node/set_parameters")
        assert client.wait_for_service(timeout_sec=60)
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(spec))
        future = client.call_async(SetParameters.Request(parameters=[Parameter(name="spec", value=value)]))
        rclpy.spin_until_future_complete(node, future, timeout_sec=60)
        assert future.result().results[0].successful

        assert change_lifecycle_state(node, "/keypoint_node", Transition.TRANSITION_CONFIGURE)
        assert lifecycle_state(node, "/keypoint_node") == "inactive"
        spin(2.0)
        assert results == []  # configured, not active: nothing published
        assert change_lifecycle_state(node, "/keypoint_node", Transition.TRANSITION_ACTIVATE)
        first_results(node, results, good)
        listener.wait(spin, "keypoint_node: extraction", (OK,), message="extracting (image, classic)")
        assert change_lifecycle_state(node, "/keypoint_node", Transition.TRANSITION_DEACTIVATE)
        spin(1.0)
        count = len(results)
        spin(2.0)
        assert len(results) == count, "keypoints kept coming after deactivate"
        listener.wait(spin, "keypoint_node: extraction", (OK,), message="inactive")
        assert change_lifecycle_state(node, "/keypoint_node", Transition.TRANSITION_CLEANUP)
        assert lifecycle_state(node, "/keypoint_node") == "unconfigured"
        assert process.poll() is None
    assert "configure failed:" in log["output"] and str(missing) in log["output"]
