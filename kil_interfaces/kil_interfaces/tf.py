"""TF for the kil nodes: transforms published the way ``tf2_ros`` publishes them, and a listener
that answers "the pose of frame ``source`` in frame ``target``".

- :class:`StaticTransformBroadcaster`: every static transform of a node in one
  ``tf2_msgs/TFMessage`` on ``/tf_static``, reliable + transient local (depth 1), so a listener
  started later still receives it (``tf2_ros``' static broadcaster QoS).
- :class:`TransformBroadcaster`: dynamic transforms on ``/tf``.
- :class:`TransformListener`: through ``tf2_ros.Buffer`` where ``tf2_ros`` is installed; otherwise
  a small listener of ``/tf_static`` and ``/tf`` over :class:`TransformTree` (static transforms and
  the latest dynamic ones: enough for a fixed or slowly re-calibrated camera; no interpolation in
  time). A malformed transform (NaN, bad quaternion, empty frame) is dropped with a throttled
  warning naming the topic.

``tf2_msgs`` is not on PyPI: ``tools/generate_interfaces.sh`` generates it into the environment where
it is missing. ``/tf`` and ``/tf_static`` stay absolute under a node namespace (the ROS habit);
robots sharing one TF tree prefix their frame names instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from kil_interfaces import conversion
from kil_interfaces.calibration import RigidTransform

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
_WARN_PERIOD_S = 5.0


def prefixed(prefix: str, frame: str) -> str:
    """``frame`` under a TF prefix (``"a"`` + ``"link_base"`` -> ``"a/link_base"``; ``""`` keeps it)."""
    prefix = prefix.strip("/")
    return f"{prefix}/{frame}" if prefix and frame else frame


class TransformTree:
    """Transforms between frames as TF holds them: each child frame has one parent; a lookup walks
    from both frames up to their common root.
    """

    def __init__(self) -> None:
        self._parent_of: dict[str, RigidTransform] = {}  # child frame -> parent_T_child

    def set(self, transform: RigidTransform) -> None:
        """Add or replace the transform of ``transform.child_frame`` (its parent may change)."""
        if transform.parent_frame == transform.child_frame:
            raise ValueError(
                f"transform {transform.parent_frame} <- {transform.child_frame}: a frame cannot be its own parent"
            )
        self._parent_of[transform.child_frame] = transform

    def frames(self) -> set[str]:
        """Every frame named by a transform."""
        return set(self._parent_of) | {t.parent_frame for t in self._parent_of.values()}

    def _to_root(self, frame: str) -> tuple[str, np.ndarray]:
        """(root frame, (4, 4) root_T_frame); a loop in the tree raises ValueError."""
        matrix, seen = np.eye(4), {frame}
        while frame in self._parent_of:
            edge = self._parent_of[frame]
            matrix = edge.matrix @ matrix
            frame = edge.parent_frame
            if frame in seen:
                raise ValueError(f"the transforms form a loop through {frame!r}")
            seen.add(frame)
        return frame, matrix

    def lookup(self, target: str, source: str) -> RigidTransform | None:
        """target_T_source (``apply`` maps points in ``source`` to ``target``), or None when the
        two frames are not connected (yet)."""
        if target == source:
            return RigidTransform(target, source, np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))
        root_s, root_from_source = self._to_root(source)
        root_t, root_from_target = self._to_root(target)
        if root_s != root_t:
            return None
        return RigidTransform.from_matrix(np.linalg.inv(root_from_target) @ root_from_source, target, source)


def static_qos(depth: int = 1):
    """``/tf_static``'s QoS (tf2_ros): reliable, transient local; depth 1 for a broadcaster (one
    latched message each), 100 for a listener (tf2_ros' static listener QoS), so that the latched
    messages of many broadcasters, arriving together, are all kept."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


def _message(transforms: Iterable, stamp_ns: int):
    from tf2_msgs.msg import TFMessage

    return TFMessage(transforms=[conversion.transform_to_msg(t, stamp_ns) for t in transforms])


class StaticTransformBroadcaster:
    """Publishes a node's static transforms on ``/tf_static``; each :meth:`send` republishes all of
    them (one latched message per publisher, as tf2_ros does), replacing those of the same child."""

    def __init__(self, node) -> None:
        from tf2_msgs.msg import TFMessage

        self._publisher = node.create_publisher(TFMessage, TF_STATIC_TOPIC, static_qos())
        self._transforms: dict[str, RigidTransform] = {}

    def send(self, transforms: Iterable[RigidTransform], stamp_ns: int) -> None:
        for transform in transforms:
            self._transforms[transform.child_frame] = transform
        self._publisher.publish(_message(self._transforms.values(), stamp_ns))


class TransformBroadcaster:
    """Publishes dynamic transforms on ``/tf``."""

    def __init__(self, node) -> None:
        from tf2_msgs.msg import TFMessage

        self._publisher = node.create_publisher(TFMessage, TF_TOPIC, 100)

    def send(self, transforms: Iterable[RigidTransform], stamp_ns: int) -> None:
        self._publisher.publish(_message(transforms, stamp_ns))


class TransformListener:
    """Answers :meth:`lookup` from ``/tf_static`` and ``/tf``.

    Args:
        node: the rclpy node that subscribes.
        use_tf2_ros: None: ``tf2_ros`` where importable, else the small listener; True/False force it.
    """

    def __init__(self, node, use_tf2_ros: bool | None = None) -> None:
        self.node = node
        if use_tf2_ros is None:
            try:
                import tf2_ros
            except ImportError:
                use_tf2_ros = False
            else:
                use_tf2_ros = True
        self.backend = "tf2_ros" if use_tf2_ros else "kil"
        if use_tf2_ros:
            import tf2_ros

            self._buffer = tf2_ros.Buffer()
            self._listener = tf2_ros.TransformListener(self._buffer, node)
            return
        from tf2_msgs.msg import TFMessage

        from kil_interfaces.node_runtime import ThrottledWarning

        self.tree = TransformTree()
        self._warn = ThrottledWarning(node.get_logger(), _WARN_PERIOD_S, "transform dropped: ")
        node.create_subscription(
            TFMessage, TF_STATIC_TOPIC, lambda m: self._on_message(m, TF_STATIC_TOPIC), static_qos(100)
        )
        node.create_subscription(TFMessage, TF_TOPIC, lambda m: self._on_message(m, TF_TOPIC), 100)

    def _on_message(self, msg, topic: str) -> None:
        for item in msg.transforms:
            try:
                self.tree.set(conversion.transform_from_msg(item, what=topic))
            except ValueError as error:  # ConversionError included
                self._warn(topic, str(error))

    def lookup(self, target: str, source: str) -> RigidTransform | None:
        """target_T_source from the newest transforms, or None when not (yet) available."""
        if self.backend == "kil":
            try:
                return self.tree.lookup(target, source)
            except ValueError as error:
                self._warn("loop", str(error))
                return None
        import rclpy.time
        import tf2_ros

        try:
            msg = self._buffer.lookup_transform(target, source, rclpy.time.Time())
        except (tf2_ros.LookupException, tf2_ros.ConnectivityException, tf2_ros.ExtrapolationException):
            return None
        return conversion.transform_from_msg(msg, what=f"TF {target} <- {source}")
