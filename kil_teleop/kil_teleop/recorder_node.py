"""``recorder_node``: one rosbag2 (MCAP) bag per demonstration episode.

Subscribes to the configured topics (default: colour, depth, camera_info, /kil/robot_state,
/kil/action_chunk and /kil/keypoints) as serialised messages and, between ``~/start`` and
``~/stop`` (std_srvs/Trigger), writes them to ``<output_dir>/episode_NNNN`` stamped with their
receive time, as ``ros2 bag record`` would. ``~/discard`` drops the current episode. The bag is
written under ``.partial/`` and only appears under its name once complete; on shutdown an
unfinished episode is closed and moved to ``<output_dir>/interrupted/`` (readable, kept out of
training until moved back). ``~/recording`` (std_msgs/Bool, transient local) says whether an
episode is being recorded; ``max_duration_s`` stops runaway episodes.
Crashes: the bag is split every ``segment_s`` (0.5 s) and its metadata rewritten each time, so a
SIGKILL leaves under ``.partial/`` a bag readable up to half a second before the kill; at start-up
the node recovers such leftovers into ``interrupted/`` (as ``python -m kil_teleop.recover``
does). A failed write (a full disk) ends the episode with an error naming the bag, keeps what
was written, and the node keeps running; nothing is deleted unless ``~/discard`` asks.
/diagnostics (1 Hz, ``diagnostics_period_s``), check ``recording``: OK when idle or recording (values:
the episode, its duration, messages per topic, the write queue in MB, drops); WARN when the write
queue holds more than ``queue_warn_mb`` (the disk is falling behind) or a demonstration topic has
received nothing for 2 s into an episode; ERROR when messages were dropped in this episode or the last
write failed.
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from kil_interfaces.conversion import MessageTypes
from kil_interfaces.diagnostics import ERROR, OK, WARN, Check, Diagnostics
from kil_interfaces.node_runtime import declare, qos_event_callbacks, spin_node
from kil_interfaces.typestore import kil_typestore
from kil_teleop.recording import (
    DEMONSTRATION_TOPICS,
    INTERRUPTED_DIR,
    OPTIONAL_TOPICS,
    PARTIAL_DIR,
    EpisodeWriter,
    QueuedWriter,
    RecordingError,
    episode_name,
    next_episode_index,
    parse_topics,
    recover_partial_episodes,
)

_IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


#: Distinct latched (/tf_static) messages kept to begin each episode with.
MAX_LATCHED = 32

#: How long a stop may take: closing an episode writes what is still queued (up to 1 GB).
RECORDER_SHUTDOWN_TIMEOUT_S = 120.0


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("recorder_node")
        p = partial(declare, self)
        output = p("output_dir", "", "directory of the episode bags (created if missing)")
        topics = p(
            "topics",
            [*DEMONSTRATION_TOPICS, *OPTIONAL_TOPICS],
            "topics to record: /name (known kil, camera, view and TF topics) or /name:package/msg/Type; each is "
            "subscribed relative to the node's namespace and stored under /name",
        )
        self.task = p("task", "", "task name stored in each bag's metadata")
        self.storage = p("storage", "mcap", "bag storage: mcap, or sqlite3 for Humble tools")
        self.compress = p("compress", True, "zstd-compress MCAP chunks")
        self.max_duration_s = p("max_duration_s", 0.0, "stop an episode after this long (s; 0 = no limit)")
        self.segment_s = p("segment_s", 0.5, "split the bag every this many seconds (what a crash can lose)")
        reliability = p("image_reliability", "reliable", "image QoS reliability: reliable or best_effort")
        queue_depth = p("image_queue_depth", 30, "image subscription history depth (frames a stall may queue)")
        if not output:
            raise ValueError("parameter 'output_dir' is required")
        if reliability not in ("reliable", "best_effort"):
            raise ValueError(f"parameter image_reliability must be reliable or best_effort, got {reliability!r}")
        self.output = Path(output)
        self.output.mkdir(parents=True, exist_ok=True)
        self.topics = parse_topics(list(topics))
        self.typestore = kil_typestore()
        for path, salvaged in recover_partial_episodes(self.output, self.typestore):
            self.get_logger().warning(
                f"recovered an interrupted recording into {path} ({salvaged} messages salvaged from its open file)"
            )
        unknown = [f"{t} ({m})" for t, m in self.topics.items() if m not in self.typestore.types]
        if unknown:
            raise ValueError(f"message types unknown to the bag writer: {', '.join(unknown)}")
        types = MessageTypes.rclpy()
        image_qos = QoSProfile(
            depth=queue_depth,
            reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        )
        for topic, msgtype in self.topics.items():
            qos = image_qos if msgtype in _IMAGE_TYPES else QoSProfile(depth=200)  # 1 s of 200 Hz states
            if topic.endswith("tf_static"):  # latched: the transforms published before the recorder started
                qos = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL)
            # Subscribed relative to the node's namespace; stored under the bag's (root) name.
            events = qos_event_callbacks(self, topic.lstrip("/"), qos, "subscription")
            self.create_subscription(
                types.get(msgtype),
                topic.lstrip("/"),
                partial(self._on_message, topic),
                qos,
                raw=True,
                event_callbacks=events,
            )
        self.writer: QueuedWriter | None = None
        self.latched: dict[str, list[bytes]] = {}  # the latest static transforms, per topic
        self.started_wall = 0.0
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.status = self.create_publisher(Bool, "~/recording", latched)
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(Trigger, "~/stop", self._on_stop)
        self.create_service(Trigger, "~/discard", self._on_discard)
        self.create_timer(0.1, self._on_timer)
        self._publish_status()
        self.queue_warn_bytes = (
            p("queue_warn_mb", 200.0, "diagnostics: WARN when the write queue holds more (MB)") * 1e6
        )
        self.last_failure = ""
        self.diagnostics = Diagnostics(self, hardware_id=str(self.output))
        self.diagnostics.add("recording", self._check_recording)
        self.get_logger().info(f"recording {len(self.topics)} topics into {self.output} on ~/start")

    def _check_recording(self) -> Check:
        writer = self.writer
        if writer is None:
            if self.last_failure:
                return Check(ERROR, self.last_failure, {})
            return Check(OK, "idle (~/start records an episode)", {})
        elapsed = time.monotonic() - self.started_wall
        values: dict[str, object] = {"episode": writer.path.name, "duration_s": elapsed}
        values |= {f"{topic} messages": n for topic, n in writer.counts.items()}
        values |= {"queued_mb": writer.queued_bytes / 1e6, "dropped": writer.dropped}
        if writer.dropped:
            return Check(ERROR, f"{writer.dropped} messages dropped: the disk falls behind", values)
        if writer.queued_bytes > self.queue_warn_bytes:
            return Check(WARN, f"write queue at {writer.queued_bytes / 1e6:.0f} MB: the disk falls behind", values)
        silent = [t for t, n in writer.counts.items() if n == 0 and t in DEMONSTRATION_TOPICS]
        if silent and elapsed > 2.0:
            return Check(WARN, f"recording {writer.path.name}; nothing received on {', '.join(silent)}", values)
        return Check(OK, f"recording {writer.path.name}", values)

    def _publish_status(self) -> None:
        self.status.publish(Bool(data=self.writer is not None))

    def _on_message(self, topic: str, data: bytes) -> None:
        if topic.endswith("tf_static"):  # every episode starts with the static transforms
            kept = self.latched.setdefault(topic, [])
            if data not in kept:
                kept[:] = [*kept, data][-MAX_LATCHED:]
        if self.writer is not None:  # (queued: the writer's thread compresses and writes)
            self.writer.write_serialized(topic, self.get_clock().now().nanoseconds, data)

    def _fail(self, error: OSError) -> None:
        """A write failed (a full disk): end the episode, keep what was written, stay alive."""
        writer, self.writer = self.writer, None
        kept = writer.abandon()
        self._publish_status()
        self.last_failure = (
            f"recording stopped: writing {writer.path.name} failed ({error.strerror or error}); what was written "
            f"is kept readable in {kept}: free space, then run python -m kil_teleop.recover {self.output}"
        )
        self.get_logger().error(self.last_failure)

    # --- episodes ---------------------------------------------------------------------------------

    def start_episode(self) -> Path:
        if self.writer is not None:
            raise RecordingError(f"already recording {self.writer.path.name}")
        self.last_failure = ""
        path = self.output / episode_name(next_episode_index(self.output))
        metadata = {"task": self.task, "recorded_by": "kil_teleop.recorder_node"}
        self.writer = QueuedWriter(
            EpisodeWriter(
                path, self.topics, self.typestore, self.compress, metadata, self.storage, self.segment_s or None
            )
        )
        self.started_wall = time.monotonic()
        now = self.get_clock().now().nanoseconds
        for topic, messages in self.latched.items():
            for data in messages:
                self.writer.write_serialized(topic, now, data)
        self._publish_status()
        return path

    def stop_episode(self, reason: str = "stopped", publish: bool = True) -> Path:
        if self.writer is None:
            raise RecordingError("not recording")
        writer, self.writer = self.writer, None
        writer.set_metadata("ended_by", reason)
        writer.set_metadata("duration_s", f"{time.monotonic() - self.started_wall:.2f}")
        writer.drain()
        if writer.dropped:
            writer.set_metadata("dropped_messages", str(writer.dropped))
            self.get_logger().warning(f"{writer.path.name}: the disk fell behind; {writer.dropped} messages dropped")
        try:
            path = writer.close()
        except OSError as error:
            writer.abandon()
            raise RecordingError(
                f"closing {writer.path.name} failed ({error.strerror or error}); what was written is kept in "
                f"{self.output / PARTIAL_DIR / writer.path.name}"
            ) from error
        if publish:
            self._publish_status()
        empty = [t for t, n in writer.counts.items() if n == 0 and t in DEMONSTRATION_TOPICS]
        if empty:
            self.get_logger().warning(f"{path.name}: nothing received on {', '.join(empty)}")
        return path

    def _on_start(self, request, response):
        try:
            path = self.start_episode()
            response.success, response.message = True, f"recording {path}"
        except RecordingError as error:
            response.success, response.message = False, str(error)
        return response

    def _on_stop(self, request, response):
        try:
            counts = dict(self.writer.counts) if self.writer is not None else {}
            path = self.stop_episode()
            summary = ", ".join(f"{t}: {n}" for t, n in counts.items())
            response.success, response.message = True, f"wrote {path} ({summary})"
            self.get_logger().info(response.message)
        except RecordingError as error:
            response.success, response.message = False, str(error)
        return response

    def _on_discard(self, request, response):
        if self.writer is None:
            response.success, response.message = False, "not recording"
            return response
        writer, self.writer = self.writer, None
        writer.abort()
        self._publish_status()
        response.success, response.message = True, f"discarded {writer.path.name}"
        return response

    def _on_timer(self) -> None:
        if self.writer is not None and self.writer.error is not None:
            self._fail(self.writer.error)
        if self.writer is not None:
            self.writer.rotate_if_due(self.get_clock().now().nanoseconds)
        if self.writer is not None and self.max_duration_s > 0:
            if time.monotonic() - self.started_wall > self.max_duration_s:
                path = self.stop_episode("max_duration_s")
                self.get_logger().warning(f"{path.name}: stopped after max_duration_s {self.max_duration_s} s")

    def close(self) -> None:
        """At shutdown: keep an unfinished episode, readable, under ``interrupted/``."""
        if self.writer is None:
            return
        try:
            path = self.stop_episode("shutdown", publish=False)  # (the ROS context may be gone already)
        except RecordingError as error:
            print(f"recorder_node: {error}", file=sys.stderr)
            return
        target = self.output / INTERRUPTED_DIR / path.name
        target.parent.mkdir(exist_ok=True)
        path.rename(target)
        print(f"recorder_node: unfinished episode kept as {target}", file=sys.stderr)


def main(args: list[str] | None = None) -> int:
    return spin_node(RecorderNode, args, shutdown_timeout_s=RECORDER_SHUTDOWN_TIMEOUT_S)


if __name__ == "__main__":
    sys.exit(main())
