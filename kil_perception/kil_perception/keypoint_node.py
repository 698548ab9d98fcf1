"""``keypoint_node``: colour + aligned depth + CameraInfo in, 3-D semantic keypoints out.

Subscribes /camera/color/image_raw, /camera/depth/image_raw (16UC1 mm or 32FC1 m, aligned to
colour), /camera/color/camera_info; pairs colour and depth by stamp (``slop_s``) and always
processes the newest pair. Publishes /kil/keypoints (KeypointArray in ``target_frame``, or in the
camera's optical frame when ``target_frame`` is ''), /kil/keypoints/markers
(MarkerArray: spheres + labels, one colour per object), /kil/keypoints/image (annotated rgb8) and,
where foxglove_msgs is installed, /kil/keypoints/annotations (foxglove_msgs/ImageAnnotations: the
same circles and labels, drawn by Foxglove's Image panel over /camera/color/image_raw).
Methods (``method``): image matching, instance matching (SAM3 text prompts from the spec, or
instance masks from /camera/instance_mask, 16UC1 object value per pixel, with
``mask_categories`` "1:mug,2:tray" naming the values) and tracking (Lucas-Kanade or CoTracker3,
started by image or instance matching; ~/reset restarts it from the next frame stamped after the
reset: frames of the scene before it, queued or in flight, are skipped). A bad frame (unsupported encoding,
colour/depth size mismatch, no CameraInfo yet, no instance mask for its stamp) is dropped with a
throttled warning; the node keeps running.
TF: the camera's pose in ``target_frame`` comes from /tf_static and /tf (the simulator, the
calibration_node of a real setup or any hand-eye calibration tool publishes it; tf2_ros is used
where installed). Until it is available, frames are dropped with a log line naming both frames.
Lifecycle (rclpy managed node): configure loads the spec and the feature model and subscribes;
activate starts extraction and publishing; deactivate pauses it; cleanup frees the model. A failing
configure goes to the error state, logs the reason, reports it on /diagnostics and returns to
unconfigured. ``autostart`` (default) configures and activates at start-up; a failing configure then
ends the process with the reason.
/diagnostics (1 Hz, ``diagnostics_period_s``): ``extraction`` (latency p50/p95 per frame, frames
published and dropped; WARN before the first keypoints, ERROR when none were published for
``max_output_gap_s`` — the last drop's reason is the message) and ``keypoints`` (valid keypoints per
object of the newest frame, matches ``min_score`` rejected; WARN when an object has fewer than half
valid, ERROR when none is).
"""

from __future__ import annotations

import sys
import time
from collections import deque
from functools import partial

from builtin_interfaces.msg import Duration
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from kil_interfaces import conversion
from kil_interfaces.diagnostics import ERROR, OK, WARN, Check, Diagnostics, RollingStats, keypoint_validity
from kil_interfaces.managed_node import ManagedNode
from kil_interfaces.msg import KeypointArray
from kil_interfaces.node_runtime import ThrottledWarning, declare, qos_event_callbacks, spin_node
from kil_interfaces.tf import TF_STATIC_TOPIC, TF_TOPIC, TransformListener
from kil_perception import foxglove_annotations
from kil_perception.cpu_threads import CPU_THREADS_DESCRIPTION, DEFAULT_CPU_THREADS, set_cpu_threads
from kil_perception.extraction import TrackingExtractor, keypoints_message
from kil_perception.instances import SimulatorMasks, parse_mask_categories
from kil_perception.lifting import LiftingConfig, depth_in_metres
from kil_perception.overlay import category_colours, draw_keypoints
from kil_perception.pipeline import ExtractorConfig, build_extractor
from kil_perception.spec import load_spec
from kil_perception.synchronization import LatestPairSynchronizer, reset_stamp

WARN_PERIOD_S = 5.0


class KeypointNode(ManagedNode):
    def __init__(self) -> None:
        super().__init__("keypoint_node")
        p = partial(declare, self)
        p("spec", "", "keypoint spec YAML (reference images + keypoints)")
        p("method", "image", "extraction method: image, instance (matching inside masks) or track")
        p("backend", "effnet_lite0", "feature backend: effnet_lite0, classic, radio, dinov3, dift, dift2")
        p("model", "", "feature model hub id or local path ('' = the backend's default)")
        p("device", "cpu", "torch device")
        p("cpu_threads", DEFAULT_CPU_THREADS, CPU_THREADS_DESCRIPTION)
        p("instance_source", "sam3", "instance masks from sam3 or masks (/camera/instance_mask)")
        p("instance_model", "", "SAM3 hub id or local path ('' = facebook/sam3)")
        p("instance_threshold", 0.3, "minimum instance confidence")
        p("tracker", "lk", "tracker for method track: lk (Lucas-Kanade) or cotracker3")
        p("tracker_repo", "facebookresearch/co-tracker", "CoTracker torch.hub repo or local clone")
        p("track_init", "image", "how tracks start after a reset: image or instance matching")
        p(
            "redetect_every",
            0,
            "method track: 0 = a lost track stays with the tracker (the paper); N = every N-th tracked frame with a "
            "lost track, matching restarts the lost keypoints it finds",
        )
        p(
            "mask_guard",
            False,
            "method track with track_init instance: a track that leaves its object's instance mask is matched again "
            "there or moves with its object, and depth is read on the object (the instance source runs on every "
            "frame); false = the paper's tracking",
        )
        p("min_score", 0.0, "matches with a lower cosine similarity are published invalid (0 = off)")
        p("colour", "rgb", "what the feature backend sees: rgb, or luminance (match by shape, not hue)")
        p("feature_scale", 1.0, "frames resized by this before the feature backend (2: twice finer features)")
        p(
            "layout_check",
            0.0,
            "image matching: each object's keypoints matched together, keeping their reference layout, with this "
            "weight (0 = each keypoint's own argmax, the paper's)",
        )
        p("mask_categories", "", "instance mask values to categories, e.g. '1:mug,2:tray'")
        self.target_frame = p(
            "target_frame", "link_base", "frame of the 3-D keypoints, looked up in TF ('' = camera frame)"
        )
        p("slop_s", 0.02, "largest colour/depth stamp difference of a pair (s)")
        p("depth_window", 5, "depth median window (px, odd)")
        p("image_reliability", "reliable", "image QoS reliability: reliable or best_effort")
        self.publish_image = p("publish_image", True, "publish the annotated image")
        self.publish_annotations = p(
            "publish_annotations",
            True,
            "publish kil/keypoints/annotations (foxglove_msgs/ImageAnnotations, drawn over the camera image by "
            "Foxglove) where foxglove_msgs is installed",
        )
        self.max_gap_ns = round(
            p("max_output_gap_s", 1.0, "diagnostics: ERROR when no keypoints were published for this long (s)") * 1e9
        )
        autostart = p(
            "autostart",
            True,
            "configure and activate at start-up (a failing configure ends the process with the reason); false: "
            "stay unconfigured until the lifecycle transitions (a lifecycle manager) bring it up",
        )
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.tf = TransformListener(self) if self.target_frame else None
        self._camera_pose_known = False
        self._warn = ThrottledWarning(self.get_logger(), WARN_PERIOD_S, "frame dropped: ")
        self._waiting = ThrottledWarning(self.get_logger(), WARN_PERIOD_S)
        self.matcher = None
        self.active = False
        self.latency = RollingStats(50)
        self.dropped = 0
        self.last_drop = ""
        self.last_result = None
        self.last_published_ns: int | None = None
        self.started_ns = self.get_clock().now().nanoseconds
        self.diagnostics = Diagnostics(self, hardware_id="keypoint_node")
        self.diagnostics.add("extraction", self._check_extraction)
        self.diagnostics.add("keypoints", self._check_keypoints)
        self.bring_up(autostart)

    # --- lifecycle --------------------------------------------------------------------------------

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.active = True
        self.started_ns = self.get_clock().now().nanoseconds
        self.last_published_ns = None
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.active = False
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        """Drop the feature model, subscriptions, timer and publishers of a configured node."""
        super()._release()
        self.matcher = None
        self.active = False
        self.last_result = None

    def _configure(self) -> None:
        def param(name: str):
            return self.get_parameter(name).value

        spec_path = param("spec")
        config = ExtractorConfig(
            **{
                name: param(name)
                for name in ("method", "backend", "model", "device", "instance_source", "instance_model",
                             "instance_threshold", "tracker", "tracker_repo", "track_init", "redetect_every",
                             "mask_guard", "min_score", "colour", "feature_scale", "layout_check")
            }
        )  # fmt: skip
        reliability = param("image_reliability")
        threads = set_cpu_threads(param("cpu_threads"))
        if not spec_path:
            raise ValueError("parameter 'spec' is required")
        self.spec = load_spec(spec_path)
        self.backend_name = config.backend
        self.method = config.method
        self.use_masks = config.uses_given_masks
        self.mask_categories = parse_mask_categories(param("mask_categories")) if self.use_masks else {}
        self._frame_masks = None
        self.matcher = build_extractor(self.spec, config, SimulatorMasks(lambda: self._frame_masks))
        self.lifting = LiftingConfig(window=param("depth_window"))
        self.sync: LatestPairSynchronizer[Image, Image] = LatestPairSynchronizer(round(param("slop_s") * 1e9))
        self.info = None
        qos = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        )
        subscriptions = [
            (Image, "camera/color/image_raw", self._on_color),
            (Image, "camera/depth/image_raw", self._on_depth),
            (CameraInfo, "camera/color/camera_info", self._on_info),
        ]
        if self.use_masks:
            subscriptions.append((Image, "camera/instance_mask", self._on_mask))
        self.masks: deque[tuple[int, Image]] = deque(maxlen=5)
        for kind, topic, callback in subscriptions:
            events = qos_event_callbacks(self, topic, qos, "subscription")
            self.track(self.create_subscription(kind, topic, callback, qos, event_callbacks=events))
        self.keypoint_pub = self.lifecycle_publisher(KeypointArray, "kil/keypoints", 10)
        self.marker_pub = self.lifecycle_publisher(MarkerArray, "kil/keypoints/markers", 10)
        self.image_pub = self.lifecycle_publisher(Image, "kil/keypoints/image", qos)
        self.annotation_pub = None
        if self.publish_annotations and foxglove_annotations.available():
            from foxglove_msgs.msg import ImageAnnotations

            self.annotation_pub = self.lifecycle_publisher(ImageAnnotations, "kil/keypoints/annotations", 10)
        elif self.publish_annotations:
            self.get_logger().info("foxglove_msgs is not installed: no kil/keypoints/annotations (markers, image are)")
        self.track(self.create_timer(0.005, self._process))
        self.colours = category_colours(c for c, _, _ in self.spec.layout())
        self.min_score = config.min_score
        self.diagnostics.hardware_id = spec_path
        self.get_logger().info(
            f"{self.spec.num_keypoints} keypoints from {spec_path}; method {config.method} with {config.backend}; "
            f"{threads} CPU thread(s)"
        )

    def _on_color(self, msg: Image) -> None:
        self.sync.add_color(conversion.time_to_ns(msg.header.stamp), msg)

    def _on_depth(self, msg: Image) -> None:
        self.sync.add_depth(conversion.time_to_ns(msg.header.stamp), msg)

    def _on_mask(self, msg: Image) -> None:
        self.masks.append((conversion.time_to_ns(msg.header.stamp), msg))

    def _select_masks(self, stamp_ns: int, size: tuple[int, int]) -> None:
        """The instance mask message nearest to the colour frame (within the slop), as the source's masks."""
        best = min(self.masks, key=lambda item: abs(item[0] - stamp_ns), default=None)
        if best is None or abs(best[0] - stamp_ns) > self.sync.slop_ns:
            raise conversion.ConversionError("no /camera/instance_mask message within slop_s of the colour frame")
        index_map = conversion.image_to_numpy(best[1], what="/camera/instance_mask")
        if index_map.ndim != 2 or index_map.shape != size:
            raise conversion.ConversionError(
                f"/camera/instance_mask is {best[1].width}x{best[1].height} {best[1].encoding}; "
                f"expected a single-channel {size[1]}x{size[0]} mask"
            )
        self._frame_masks = (index_map, self.mask_categories)

    def _on_info(self, msg: CameraInfo) -> None:
        try:
            self.info = conversion.camera_info_from_msg(msg, what="/camera/color/camera_info")
        except conversion.ConversionError as error:
            self._warn("info", str(error))

    def _process(self) -> None:
        if not self.active:
            return
        pair = self.sync.pop_newest()
        if pair is None:
            return
        started = time.perf_counter()
        if self.info is None:
            self._drop("no_info", "no CameraInfo received yet on /camera/color/camera_info")
            return
        extrinsics = self._camera_pose(pair.color.header.frame_id)
        if self.target_frame and extrinsics is None:
            self._drop("", f"no transform {self.target_frame} <- {pair.color.header.frame_id or '(empty frame_id)'}")
            return
        try:
            rgb = conversion.image_to_rgb(pair.color, what="/camera/color/image_raw")
            depth = conversion.image_to_numpy(pair.depth, what="/camera/depth/image_raw")
            depth_m = depth_in_metres(depth, pair.depth.encoding)
            if depth_m.shape != rgb.shape[:2] or rgb.shape[:2] != (self.info.height, self.info.width):
                raise conversion.ConversionError(
                    f"sizes differ: colour {rgb.shape[1]}x{rgb.shape[0]}, depth {depth_m.shape[1]}x{depth_m.shape[0]}, "
                    f"CameraInfo {self.info.width}x{self.info.height}"
                )
            if self.use_masks:
                self._select_masks(pair.stamp_ns, rgb.shape[:2])
            found = self.matcher.extract(rgb)
            result = keypoints_message(
                self.spec,
                found,
                depth_m,
                self.info,
                extrinsics,
                pair.stamp_ns,
                self.method,
                self.backend_name,
                started,
                self.lifting,
            )
        except (conversion.ConversionError, ValueError) as error:
            self._drop("frame", str(error))
            return
        except Exception as error:  # (a model or OpenCV failing on one frame must not end the node)
            self._drop("extraction", f"extraction failed ({type(error).__name__}: {error})")
            return
        self.keypoint_pub.publish(conversion.keypoints_to_msg(result))
        self.latency.add(time.perf_counter() - started)
        self.last_result, self.last_published_ns = result, self.get_clock().now().nanoseconds
        self.marker_pub.publish(self._markers(result))
        if self.annotation_pub is not None:
            self.annotation_pub.publish(foxglove_annotations.image_annotations(result, self.colours))
        if self.publish_image:
            annotated = draw_keypoints(rgb, result.uv, result.names, result.categories, result.valid)
            self.image_pub.publish(
                conversion.numpy_to_image(annotated, "rgb8", pair.stamp_ns, pair.color.header.frame_id)
            )

    def _drop(self, key: str, reason: str) -> None:
        """A frame dropped: counted, its reason kept for /diagnostics, a throttled warning (none
        for ``key`` '': the caller has logged it)."""
        self.dropped += 1
        self.last_drop = reason
        if key:
            self._warn(key, reason)

    def _check_lifecycle(self) -> Check | None:
        """The check while not active (None when active)."""
        if self.config_error:
            return Check(ERROR, f"configure failed: {self.config_error}", {})
        if self.matcher is None:
            return Check(WARN, "unconfigured (the configure transition loads the spec and the model)", {})
        if not self.active:
            return Check(OK, "inactive (the activate transition starts extraction)", {})
        return None

    def _check_extraction(self) -> Check:
        idle = self._check_lifecycle()
        if idle is not None:
            return idle
        p50, p95 = self.latency.percentile(50), self.latency.percentile(95)
        values = {
            "published": self.latency.count,
            "dropped": self.dropped,
            "p50_ms": None if p50 is None else p50 * 1e3,
            "p95_ms": None if p95 is None else p95 * 1e3,
        }
        if self.last_drop:
            values["last_drop"] = self.last_drop
        now = self.get_clock().now().nanoseconds
        if self.last_published_ns is None:
            if now - self.started_ns > self.max_gap_ns and self.dropped:
                return Check(ERROR, f"no keypoints published; frames dropped: {self.last_drop}", values)
            return Check(WARN, "waiting for colour, depth and CameraInfo", values)
        gap = (now - self.last_published_ns) / 1e9
        values["since_last_s"] = gap
        if gap * 1e9 > self.max_gap_ns:
            why = f": {self.last_drop}" if self.last_drop else " (no frames arrive)"
            return Check(ERROR, f"no keypoints published for {gap:.1f} s{why}", values)
        return Check(OK, f"extracting ({self.method}, {self.backend_name})", values)

    def _check_keypoints(self) -> Check:
        idle = self._check_lifecycle()
        if idle is not None:
            return idle
        if self.last_result is None:
            return Check(WARN, "no keypoints yet", {})
        return keypoint_validity(self.last_result, 1, self.min_score)

    def _camera_pose(self, camera_frame: str):
        """target_frame <- camera_frame from TF (None, with a throttled log line, while unknown)."""
        if not self.target_frame:
            return None
        if not camera_frame:
            self._warn("frame_id", "/camera/color/image_raw has an empty header.frame_id; its pose cannot be looked up")
            return None
        pose = self.tf.lookup(self.target_frame, camera_frame)
        if pose is None:
            self._waiting(
                "tf",
                f"waiting for the transform {self.target_frame} <- {camera_frame} on {TF_STATIC_TOPIC} or "
                f"{TF_TOPIC} (published by sim_node, calibration_node or a hand-eye calibration tool); "
                "frames are dropped until then",
            )
            self._camera_pose_known = False
        elif not self._camera_pose_known:
            self._camera_pose_known = True
            t = pose.translation
            self.get_logger().info(
                f"camera pose {self.target_frame} <- {camera_frame} from TF ({self.tf.backend}): "
                f"translation [{t[0]:.3f}, {t[1]:.3f}, {t[2]:.3f}] m"
            )
        return pose

    def _on_reset(self, request, response):
        if self.matcher is None:
            response.success, response.message = False, "not configured (no extractor to reset)"
            return response
        if isinstance(self.matcher, TrackingExtractor):
            self.matcher.reset()
        # Frames of the scene before the reset (queued, or in flight) would start the tracks on objects
        # that have since moved: only frames stamped after it are used.
        through = reset_stamp(self.sync.newest_color_ns, self.get_clock().now().nanoseconds)
        if through is not None:
            self.sync.skip_through(through)
        response.success, response.message = True, "keypoints re-initialised on the next frame"
        return response

    def _markers(self, result) -> MarkerArray:
        markers = MarkerArray()
        stamp = conversion.ns_to_time(result.stamp_ns)
        for i in range(result.num_keypoints):
            for kind in ("sphere", "label"):
                marker = Marker()
                marker.header.stamp, marker.header.frame_id = stamp, result.frame_id
                marker.ns, marker.id = f"keypoints_{kind}", i
                if not result.valid[i]:
                    marker.action = Marker.DELETE
                    markers.markers.append(marker)
                    continue
                r, g, b = self.colours[result.categories[i]]
                marker.action = Marker.ADD
                marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = (
                    float(v) for v in result.points[i]
                )
                marker.pose.orientation.w = 1.0
                marker.color.r, marker.color.g, marker.color.b, marker.color.a = r / 255, g / 255, b / 255, 1.0
                marker.lifetime = Duration(sec=1)
                if kind == "sphere":
                    marker.type = Marker.SPHERE
                    marker.scale.x = marker.scale.y = marker.scale.z = 0.015
                else:
                    marker.type = Marker.TEXT_VIEW_FACING
                    marker.pose.position.z += 0.025
                    marker.scale.z = 0.02
                    marker.text = f"{result.categories[i]}.{result.names[i]}"
                markers.markers.append(marker)
        return markers


def main(args: list[str] | None = None) -> int:
    return spin_node(KeypointNode, args)


if __name__ == "__main__":
    sys.exit(main())
