"""ROS-free conversions: ``sensor_msgs/Image`` <-> numpy, kil messages <-> dataclasses.

Reading works on any object with the message's fields: rclpy messages from a subscription and
the messages ``rosbags`` deserialises from a bag alike. Writing builds messages of one backend,
chosen by a :class:`MessageTypes` (rclpy's generated classes by default, or a ``rosbags``
typestore's classes for writing bags without ROS).

Every malformed input raises :class:`ConversionError` naming the message (``what``, e.g. the
topic) and the offending field.
"""

from __future__ import annotations

import array
import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kil_interfaces.calibration import RigidTransform
from kil_interfaces.data import ActionChunkData, CameraIntrinsics, KeypointArrayData, RobotStateData


class ConversionError(ValueError):
    """A message or array cannot be converted; the text names the message and field."""


@dataclass(frozen=True)
class ImageEncoding:
    """How one ``sensor_msgs/Image`` encoding maps to numpy.

    Attributes:
        dtype: element type (little-endian).
        channels: channels per pixel; 1 gives (H, W) arrays, more give (H, W, C).
    """

    dtype: np.dtype
    channels: int

    @property
    def pixel_bytes(self) -> int:
        return self.dtype.itemsize * self.channels


#: Supported encodings. 16UC1 is depth in millimetres (0 = no return), 32FC1 depth in metres
#: (NaN or 0 = no return).
IMAGE_ENCODINGS: dict[str, ImageEncoding] = {
    "rgb8": ImageEncoding(np.dtype(np.uint8), 3),
    "bgr8": ImageEncoding(np.dtype(np.uint8), 3),
    "rgba8": ImageEncoding(np.dtype(np.uint8), 4),
    "bgra8": ImageEncoding(np.dtype(np.uint8), 4),
    "mono8": ImageEncoding(np.dtype(np.uint8), 1),
    "16UC1": ImageEncoding(np.dtype("<u2"), 1),
    "32FC1": ImageEncoding(np.dtype("<f4"), 1),
}


def image_encoding(encoding: str, what: str = "Image") -> ImageEncoding:
    """Look up a supported encoding, or raise naming ``what``.encoding."""
    try:
        return IMAGE_ENCODINGS[encoding]
    except KeyError:
        raise ConversionError(
            f"{what}.encoding {encoding!r} is not supported; supported: {', '.join(IMAGE_ENCODINGS)}"
        ) from None


# ---------------------------------------------------------------------------------------------
# Message backends


class MessageTypes:
    """Resolves ROS type names such as ``"sensor_msgs/msg/Image"`` to classes of one backend.

    Args:
        resolve: maps a full type name to its message class.
        numpy_sequences: True when the backend stores primitive sequences as numpy arrays
            (rosbags); False for ``array.array`` (rclpy).
    """

    def __init__(self, resolve: Callable[[str], type], numpy_sequences: bool) -> None:
        self._resolve = resolve
        self.numpy_sequences = numpy_sequences
        self._cache: dict[str, type] = {}

    @classmethod
    def rclpy(cls) -> MessageTypes:
        """rclpy's generated message classes (needs a sourced ROS 2 workspace)."""

        def resolve(name: str) -> type:
            package, kind, message = name.split("/")
            return getattr(importlib.import_module(f"{package}.{kind}"), message)

        return cls(resolve, numpy_sequences=False)

    @classmethod
    def rosbags(cls, typestore) -> MessageTypes:
        """The message classes of a ``rosbags`` typestore (kil types registered in it)."""
        return cls(lambda name: typestore.types[name], numpy_sequences=True)

    def get(self, name: str) -> type:
        if name not in self._cache:
            self._cache[name] = self._resolve(name)
        return self._cache[name]

    def make(self, type_name: str, /, **fields):
        """Build a message of type ``type_name`` from keyword fields."""
        return self.get(type_name)(**fields)

    def sequence(self, values: np.ndarray, typecode: str):
        """A primitive sequence field value of this backend.

        Args:
            values: 1-D array already of the field's element type.
            typecode: ``array.array`` type code of the field ('B', 'f', 'd').
        """
        if self.numpy_sequences:
            return np.ascontiguousarray(values)
        out = array.array(typecode)
        out.frombytes(np.ascontiguousarray(values).tobytes())
        return out


_default_types: MessageTypes | None = None


def _types(types: MessageTypes | None) -> MessageTypes:
    global _default_types
    if types is not None:
        return types
    if _default_types is None:
        _default_types = MessageTypes.rclpy()
    return _default_types


# ---------------------------------------------------------------------------------------------
# Time and header

_NS_PER_S = 1_000_000_000


def time_to_ns(stamp) -> int:
    """``builtin_interfaces/Time`` or ``Duration`` (sec, nanosec) to integer nanoseconds."""
    return int(stamp.sec) * _NS_PER_S + int(stamp.nanosec)


def ns_to_time(ns: int, types: MessageTypes | None = None):
    """Integer nanoseconds (>= 0) to ``builtin_interfaces/Time``."""
    sec, nanosec = divmod(int(ns), _NS_PER_S)
    return _types(types).make("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def ns_to_duration(ns: int, types: MessageTypes | None = None):
    """Integer nanoseconds to ``builtin_interfaces/Duration``."""
    sec, nanosec = divmod(int(ns), _NS_PER_S)
    return _types(types).make("builtin_interfaces/msg/Duration", sec=sec, nanosec=nanosec)


def make_header(stamp_ns: int, frame_id: str, types: MessageTypes | None = None):
    """``std_msgs/Header`` with the given stamp (ns) and frame."""
    types = _types(types)
    return types.make("std_msgs/msg/Header", stamp=ns_to_time(stamp_ns, types), frame_id=frame_id)


# ---------------------------------------------------------------------------------------------
# sensor_msgs/Image


def image_to_numpy(msg, what: str = "Image", copy: bool = False) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` to an array.

    Args:
        msg: the message (rclpy or rosbags).
        what: name used in errors, e.g. the topic.
        copy: return an owned array; otherwise the result may be a read-only view of the
            message buffer.

    Returns:
        (H, W, C) for colour encodings (channel order as in the encoding name), (H, W) for
        ``mono8``, ``16UC1`` (mm) and ``32FC1`` (m), in native byte order.

    Raises:
        ConversionError: unsupported encoding, step too small for the width, or a data size
            that is not step x height.
    """
    enc = image_encoding(msg.encoding, what)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * enc.pixel_bytes
    if step < row_bytes:
        raise ConversionError(
            f"{what}.step {step} is smaller than width {width} x {enc.pixel_bytes} bytes per "
            f"{msg.encoding} pixel = {row_bytes}"
        )
    if step % enc.dtype.itemsize:
        raise ConversionError(
            f"{what}.step {step} is not a multiple of the {msg.encoding} element size {enc.dtype.itemsize}"
        )
    buffer = memoryview(msg.data).cast("B")
    if buffer.nbytes != step * height:
        problem = "truncated buffer" if buffer.nbytes < step * height else "extra bytes"
        raise ConversionError(
            f"{what}.data has {buffer.nbytes} bytes, expected step {step} x height {height} = "
            f"{step * height} ({problem})"
        )
    dtype = enc.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.frombuffer(buffer, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype) if step != row_bytes else rows.view(dtype)
    shape = (height, width) if enc.channels == 1 else (height, width, enc.channels)
    out = pixels.reshape(shape)
    if not out.dtype.isnative:
        out = out.astype(out.dtype.newbyteorder("="))
    elif copy:
        out = out.copy()
    return out


def image_to_rgb(msg, what: str = "Image") -> np.ndarray:
    """A colour ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8) as an (H, W, 3) uint8 RGB array.

    Raises:
        ConversionError: as :func:`image_to_numpy`, or for a non-colour encoding.
    """
    image = image_to_numpy(msg, what)
    if msg.encoding not in ("rgb8", "bgr8", "rgba8", "bgra8"):
        raise ConversionError(f"{what}.encoding {msg.encoding}: a colour image (rgb8, bgr8, rgba8, bgra8) is needed")
    rgb = image[..., 2::-1] if msg.encoding.startswith("bgr") else image[..., :3]
    return np.ascontiguousarray(rgb)


def numpy_to_image(
    image: np.ndarray,
    encoding: str,
    stamp_ns: int = 0,
    frame_id: str = "",
    types: MessageTypes | None = None,
):
    """Convert an array to a ``sensor_msgs/Image`` (little-endian, unpadded rows).

    Args:
        image: (H, W, C) for colour encodings, (H, W) for mono8 / 16UC1 / 32FC1, with the
            encoding's dtype (uint8, uint16, float32).
        encoding: one of ``IMAGE_ENCODINGS``.
        stamp_ns: header stamp (ns); frame_id: the camera's optical frame.
        types: message backend (rclpy by default).
    """
    enc = image_encoding(encoding, "numpy_to_image")
    image = np.asarray(image)
    expected_ndim = 2 if enc.channels == 1 else 3
    if image.ndim != expected_ndim or (enc.channels > 1 and image.shape[2] != enc.channels):
        expected = "(H, W)" if enc.channels == 1 else f"(H, W, {enc.channels})"
        raise ConversionError(f"{encoding} image must have shape {expected}, got {image.shape}")
    if image.dtype.kind != enc.dtype.kind or image.dtype.itemsize != enc.dtype.itemsize:
        raise ConversionError(f"{encoding} image must have dtype {enc.dtype.name}, got {image.dtype}")
    height, width = image.shape[:2]
    data = np.ascontiguousarray(image, dtype=enc.dtype).reshape(-1).view(np.uint8)
    types = _types(types)
    return types.make(
        "sensor_msgs/msg/Image",
        header=make_header(stamp_ns, frame_id, types),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * enc.pixel_bytes,
        data=types.sequence(data, "B"),
    )


# ---------------------------------------------------------------------------------------------
# sensor_msgs/CameraInfo


def camera_info_from_msg(msg, what: str = "CameraInfo") -> CameraIntrinsics:
    """``sensor_msgs/CameraInfo`` to :class:`CameraIntrinsics` (from K, D and the image size)."""
    k = np.asarray(msg.k, dtype=np.float64)
    if k.shape != (9,) or k[8] != 1.0:
        raise ConversionError(f"{what}.k must hold a 3x3 camera matrix with k[8] = 1, got {k.tolist()}")
    return _checked(
        lambda: CameraIntrinsics(
            width=msg.width,
            height=msg.height,
            fx=k[0],
            fy=k[4],
            cx=k[2],
            cy=k[5],
            distortion_model=msg.distortion_model,
            distortion=np.asarray(msg.d, dtype=np.float64),
            frame_id=msg.header.frame_id,
        ),
        what,
    )


def camera_info_to_msg(intrinsics: CameraIntrinsics, stamp_ns: int = 0, types: MessageTypes | None = None):
    """:class:`CameraIntrinsics` to ``sensor_msgs/CameraInfo`` (R identity, P = [K | 0])."""
    types = _types(types)
    k = intrinsics.matrix
    p = np.hstack([k, np.zeros((3, 1))])
    return types.make(
        "sensor_msgs/msg/CameraInfo",
        header=make_header(stamp_ns, intrinsics.frame_id, types),
        height=intrinsics.height,
        width=intrinsics.width,
        distortion_model=intrinsics.distortion_model,
        d=types.sequence(intrinsics.distortion.astype(np.float64), "d"),
        k=np.ascontiguousarray(k.reshape(-1)),
        r=np.eye(3).reshape(-1),
        p=np.ascontiguousarray(p.reshape(-1)),
        binning_x=0,
        binning_y=0,
        roi=types.make("sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


# ---------------------------------------------------------------------------------------------
# geometry


def _pose_to_arrays(pose) -> tuple[np.ndarray, np.ndarray]:
    p, q = pose.position, pose.orientation
    return np.array([p.x, p.y, p.z], dtype=np.float64), np.array([q.x, q.y, q.z, q.w], dtype=np.float64)


def _make_pose(position: np.ndarray, quaternion: np.ndarray, types: MessageTypes):
    return types.make(
        "geometry_msgs/msg/Pose",
        position=_make_point(position, types),
        orientation=types.make(
            "geometry_msgs/msg/Quaternion",
            x=float(quaternion[0]),
            y=float(quaternion[1]),
            z=float(quaternion[2]),
            w=float(quaternion[3]),
        ),
    )


def _make_point(point: np.ndarray, types: MessageTypes):
    return types.make("geometry_msgs/msg/Point", x=float(point[0]), y=float(point[1]), z=float(point[2]))


def _checked(build: Callable, what: str):
    """Run a dataclass constructor, re-raising its validation error as a ConversionError."""
    try:
        return build()
    except ValueError as error:
        raise ConversionError(f"{what}: {error}") from error


# ---------------------------------------------------------------------------------------------
# kil_interfaces/RobotState


def robot_state_from_msg(msg, what: str = "RobotState") -> RobotStateData:
    """``kil_interfaces/RobotState`` to :class:`RobotStateData`."""
    position, quaternion = _pose_to_arrays(msg.eef_pose)
    names = tuple(msg.joint_names)
    joints = np.asarray(msg.joint_positions, dtype=np.float64)
    if joints.shape != (len(names),):
        raise ConversionError(f"{what}.joint_positions has {joints.size} values but joint_names has {len(names)}")
    return _checked(
        lambda: RobotStateData(
            stamp_ns=time_to_ns(msg.header.stamp),
            frame_id=msg.header.frame_id,
            position=position,
            quaternion=quaternion,
            gripper=msg.gripper,
            joint_names=names,
            joint_positions=joints,
        ),
        what,
    )


def robot_state_to_msg(state: RobotStateData, types: MessageTypes | None = None):
    """:class:`RobotStateData` to ``kil_interfaces/RobotState``."""
    types = _types(types)
    return types.make(
        "kil_interfaces/msg/RobotState",
        header=make_header(state.stamp_ns, state.frame_id, types),
        eef_pose=_make_pose(state.position, state.quaternion, types),
        gripper=float(state.gripper),
        joint_names=list(state.joint_names),
        joint_positions=types.sequence(state.joint_positions.astype(np.float64), "d"),
    )


# ---------------------------------------------------------------------------------------------
# kil_interfaces/ActionChunk


def action_chunk_from_msg(msg, what: str = "ActionChunk") -> ActionChunkData:
    """``kil_interfaces/ActionChunk`` to :class:`ActionChunkData`."""
    poses = list(msg.poses)
    gripper = np.asarray(msg.gripper, dtype=np.float32)
    if gripper.shape != (len(poses),):
        raise ConversionError(f"{what}.gripper has {gripper.size} values but poses has {len(poses)}")
    if not poses:
        raise ConversionError(f"{what}.poses is empty")
    arrays = [_pose_to_arrays(pose) for pose in poses]
    return _checked(
        lambda: ActionChunkData(
            stamp_ns=time_to_ns(msg.header.stamp),
            frame_id=msg.header.frame_id,
            step_ns=time_to_ns(msg.step),
            positions=np.stack([a[0] for a in arrays]),
            quaternions=np.stack([a[1] for a in arrays]),
            gripper=gripper,
            execute_steps=msg.execute_steps,
            inference_latency=msg.inference_latency,
        ),
        what,
    )


def action_chunk_to_msg(chunk: ActionChunkData, types: MessageTypes | None = None):
    """:class:`ActionChunkData` to ``kil_interfaces/ActionChunk``."""
    types = _types(types)
    return types.make(
        "kil_interfaces/msg/ActionChunk",
        header=make_header(chunk.stamp_ns, chunk.frame_id, types),
        step=ns_to_duration(chunk.step_ns, types),
        poses=[_make_pose(p, q, types) for p, q in zip(chunk.positions, chunk.quaternions, strict=True)],
        gripper=types.sequence(chunk.gripper.astype(np.float32), "f"),
        execute_steps=chunk.execute_steps,
        inference_latency=float(chunk.inference_latency),
    )


# ---------------------------------------------------------------------------------------------
# kil_interfaces/KeypointArray


def keypoints_from_msg(msg, what: str = "KeypointArray") -> KeypointArrayData:
    """``kil_interfaces/KeypointArray`` to :class:`KeypointArrayData`."""
    kps = list(msg.keypoints)
    k = len(kps)
    similarities = np.asarray(msg.similarities, dtype=np.float32)
    if similarities.size not in (0, k * k):
        raise ConversionError(
            f"{what}.similarities has {similarities.size} values; expected 0 or K x K = {k * k} for K = {k} keypoints"
        )
    return _checked(
        lambda: KeypointArrayData(
            stamp_ns=time_to_ns(msg.header.stamp),
            frame_id=msg.header.frame_id,
            method=msg.method,
            backend=msg.backend,
            names=tuple(kp.name for kp in kps),
            categories=tuple(kp.category for kp in kps),
            instances=np.array([kp.instance for kp in kps], dtype=np.uint8),
            uv=np.array([(kp.u, kp.v) for kp in kps], dtype=np.float32).reshape(k, 2),
            points=np.array([(kp.point.x, kp.point.y, kp.point.z) for kp in kps]).reshape(k, 3),
            scores=np.array([kp.score for kp in kps], dtype=np.float32),
            valid=np.array([kp.valid for kp in kps], dtype=np.bool_),
            similarities=similarities.reshape(k, k) if similarities.size else None,
            processing_time=msg.processing_time,
        ),
        what,
    )


def keypoints_to_msg(keypoints: KeypointArrayData, types: MessageTypes | None = None):
    """:class:`KeypointArrayData` to ``kil_interfaces/KeypointArray``."""
    types = _types(types)
    kp = keypoints
    items = [
        types.make(
            "kil_interfaces/msg/Keypoint",
            name=kp.names[i],
            category=kp.categories[i],
            instance=int(kp.instances[i]),
            u=float(kp.uv[i, 0]),
            v=float(kp.uv[i, 1]),
            point=_make_point(kp.points[i], types),
            score=float(kp.scores[i]),
            valid=bool(kp.valid[i]),
        )
        for i in range(kp.num_keypoints)
    ]
    similarities = np.zeros(0, np.float32) if kp.similarities is None else kp.similarities.reshape(-1)
    return types.make(
        "kil_interfaces/msg/KeypointArray",
        header=make_header(kp.stamp_ns, kp.frame_id, types),
        method=kp.method,
        backend=kp.backend,
        keypoints=items,
        similarities=types.sequence(similarities.astype(np.float32), "f"),
        processing_time=float(kp.processing_time),
    )


# ---------------------------------------------------------------------------------------------
# geometry_msgs/TransformStamped (TF)


def transform_to_msg(transform: RigidTransform, stamp_ns: int = 0, types: MessageTypes | None = None):
    """:class:`RigidTransform` (pose of child in parent) to ``geometry_msgs/TransformStamped``
    (``header.frame_id`` = parent, ``child_frame_id`` = child), as TF publishes it."""
    types = _types(types)
    t, q = transform.translation, transform.rotation
    return types.make(
        "geometry_msgs/msg/TransformStamped",
        header=make_header(stamp_ns, transform.parent_frame, types),
        child_frame_id=transform.child_frame,
        transform=types.make(
            "geometry_msgs/msg/Transform",
            translation=types.make("geometry_msgs/msg/Vector3", x=float(t[0]), y=float(t[1]), z=float(t[2])),
            rotation=types.make(
                "geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])
            ),
        ),
    )


def transform_from_msg(msg, what: str = "TransformStamped") -> RigidTransform:
    """``geometry_msgs/TransformStamped`` to :class:`RigidTransform`; a non-finite value, an
    unnormalised or zero quaternion or an empty frame name raise :class:`ConversionError`."""
    t, q = msg.transform.translation, msg.transform.rotation
    if not msg.header.frame_id or not msg.child_frame_id:
        raise ConversionError(f"{what}: header.frame_id and child_frame_id must both be set")
    return _checked(
        lambda: RigidTransform(
            msg.header.frame_id,
            msg.child_frame_id,
            np.array([t.x, t.y, t.z], dtype=np.float64),
            np.array([q.x, q.y, q.z, q.w], dtype=np.float64),
        ),
        f"{what} {msg.header.frame_id} <- {msg.child_frame_id}",
    )
