"""Plain dataclasses mirroring the kil messages, with numpy arrays (no ROS needed).

Conventions: times are integer nanoseconds (``stamp_ns``); positions in metres, in ``frame_id``
(the robot base frame, REP-103: x forward, y left, z up); orientations are unit quaternions in
(x, y, z, w) order, as in ``geometry_msgs/Quaternion`` and SciPy; gripper opening 0 (closed)
.. 1 (open).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Extraction methods a ``KeypointArray.method`` may name.
KEYPOINT_METHODS = ("image", "instance", "track", "oracle")

_UNIT_TOLERANCE = 1e-3


def as_checked_array(value, dtype, shape: tuple[int | None, ...], owner: str, name: str) -> np.ndarray:
    """Convert ``value`` to a C-contiguous array of ``dtype`` and check its shape.

    ``None`` in ``shape`` accepts any size on that axis.
    """
    array = np.ascontiguousarray(value, dtype=dtype)
    if array.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape, shape, strict=True)
    ):
        expected = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{owner}.{name} must have shape {expected}, got {array.shape}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"{owner}.{name} contains NaN or infinite values")
    return array


def check_unit_quaternions(quaternions: np.ndarray, owner: str, name: str) -> None:
    norms = np.linalg.norm(quaternions.reshape(-1, 4), axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > _UNIT_TOLERANCE)
    if bad.size:
        raise ValueError(
            f"{owner}.{name} must hold unit quaternions (x, y, z, w); row {int(bad[0])} has norm {norms[bad[0]]:.6f}"
        )


def _check_stamp(stamp_ns: int, owner: str) -> int:
    stamp_ns = int(stamp_ns)
    if stamp_ns < 0:
        raise ValueError(f"{owner}.stamp_ns must be >= 0, got {stamp_ns}")
    return stamp_ns


@dataclass
class RobotStateData:
    """Proprioceptive state: ``kil_interfaces/msg/RobotState`` without ROS.

    Attributes:
        stamp_ns: measurement time (ns).
        frame_id: robot base frame of the pose.
        position: (3,) float64 TCP position (m).
        quaternion: (4,) float64 TCP orientation (x, y, z, w).
        gripper: opening 0 (closed) .. 1 (open).
        joint_names: joint names, same order as ``joint_positions``.
        joint_positions: (J,) float64 joint positions (rad or m); J may be 0.
    """

    stamp_ns: int
    frame_id: str
    position: np.ndarray
    quaternion: np.ndarray
    gripper: float
    joint_names: tuple[str, ...] = ()
    joint_positions: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        owner = type(self).__name__
        self.stamp_ns = _check_stamp(self.stamp_ns, owner)
        self.position = as_checked_array(self.position, np.float64, (3,), owner, "position")
        self.quaternion = as_checked_array(self.quaternion, np.float64, (4,), owner, "quaternion")
        check_unit_quaternions(self.quaternion, owner, "quaternion")
        self.gripper = float(self.gripper)
        if not 0.0 <= self.gripper <= 1.0:
            raise ValueError(f"{owner}.gripper must be in [0, 1], got {self.gripper}")
        self.joint_names = tuple(self.joint_names)
        self.joint_positions = as_checked_array(
            self.joint_positions, np.float64, (len(self.joint_names),), owner, "joint_positions"
        )


@dataclass
class ActionChunkData:
    """End-effector targets on a fixed time grid: ``kil_interfaces/msg/ActionChunk`` without ROS.

    Attributes:
        stamp_ns: time at which target 0 is due (ns); target i is due at
            ``stamp_ns + i * step_ns``.
        frame_id: robot base frame of the poses.
        step_ns: spacing between targets (ns), > 0 (100 ms at 10 Hz).
        positions: (T, 3) float64 TCP target positions (m).
        quaternions: (T, 4) float64 TCP target orientations (x, y, z, w).
        gripper: (T,) float32 gripper opening commands, 0 (closed) .. 1 (open).
        execute_steps: leading targets to execute before the next chunk; 0 = all.
        inference_latency: newest observation to publication (s).
    """

    stamp_ns: int
    frame_id: str
    step_ns: int
    positions: np.ndarray
    quaternions: np.ndarray
    gripper: np.ndarray
    execute_steps: int = 0
    inference_latency: float = 0.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        self.stamp_ns = _check_stamp(self.stamp_ns, owner)
        self.step_ns = int(self.step_ns)
        if self.step_ns <= 0:
            raise ValueError(f"{owner}.step_ns must be > 0, got {self.step_ns}")
        self.positions = as_checked_array(self.positions, np.float64, (None, 3), owner, "positions")
        steps = self.positions.shape[0]
        if steps == 0:
            raise ValueError(f"{owner} must hold at least one target")
        self.quaternions = as_checked_array(self.quaternions, np.float64, (steps, 4), owner, "quaternions")
        check_unit_quaternions(self.quaternions, owner, "quaternions")
        self.gripper = as_checked_array(self.gripper, np.float32, (steps,), owner, "gripper")
        if np.any((self.gripper < 0.0) | (self.gripper > 1.0)):
            raise ValueError(f"{owner}.gripper values must be in [0, 1]")
        self.execute_steps = int(self.execute_steps)
        if not 0 <= self.execute_steps <= steps:
            raise ValueError(f"{owner}.execute_steps must be in [0, {steps}], got {self.execute_steps}")
        self.inference_latency = float(self.inference_latency)
        if self.inference_latency < 0.0:
            raise ValueError(f"{owner}.inference_latency must be >= 0, got {self.inference_latency}")

    @property
    def num_steps(self) -> int:
        """Number of targets T."""
        return int(self.positions.shape[0])

    def times_ns(self) -> np.ndarray:
        """(T,) int64 due time of each target (ns)."""
        return self.stamp_ns + self.step_ns * np.arange(self.num_steps, dtype=np.int64)


@dataclass
class KeypointArrayData:
    """The keypoints of one frame: ``kil_interfaces/msg/KeypointArray`` without ROS.

    Attributes:
        stamp_ns: capture time of the colour image (ns).
        frame_id: frame of ``points`` (robot base).
        method: extraction method, one of ``KEYPOINT_METHODS``.
        backend: feature backend name ("" when not applicable).
        names: K keypoint names.
        categories: K object categories.
        instances: (K,) uint8 instance index within the category.
        uv: (K, 2) float32 pixel coordinates (u right, v down; px).
        points: (K, 3) float64 3-D positions in ``frame_id`` (m); meaningless where not valid.
        scores: (K,) float32 match confidence.
        valid: (K,) bool, True where found and lifted to 3-D.
        similarities: (K, K) float32 cosine similarities of each keypoint to every reference
            descriptor, or None.
        processing_time: extraction wall time (s).
    """

    stamp_ns: int
    frame_id: str
    method: str
    backend: str
    names: tuple[str, ...]
    categories: tuple[str, ...]
    instances: np.ndarray
    uv: np.ndarray
    points: np.ndarray
    scores: np.ndarray
    valid: np.ndarray
    similarities: np.ndarray | None = None
    processing_time: float = 0.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        self.stamp_ns = _check_stamp(self.stamp_ns, owner)
        if self.method not in KEYPOINT_METHODS:
            raise ValueError(f"{owner}.method must be one of {KEYPOINT_METHODS}, got {self.method!r}")
        self.names = tuple(self.names)
        k = len(self.names)
        self.categories = tuple(self.categories)
        if len(self.categories) != k:
            raise ValueError(f"{owner}.categories has {len(self.categories)} entries, names has {k}")
        instances = np.asarray(self.instances)
        if instances.size and (instances.min() < 0 or instances.max() > 255):
            raise ValueError(f"{owner}.instances must be in [0, 255]")
        self.instances = as_checked_array(instances, np.uint8, (k,), owner, "instances")
        self.uv = as_checked_array(self.uv, np.float32, (k, 2), owner, "uv")
        self.points = as_checked_array(self.points, np.float64, (k, 3), owner, "points")
        self.scores = as_checked_array(self.scores, np.float32, (k,), owner, "scores")
        self.valid = as_checked_array(self.valid, np.bool_, (k,), owner, "valid")
        if self.similarities is not None:
            self.similarities = as_checked_array(self.similarities, np.float32, (k, k), owner, "similarities")
        self.processing_time = float(self.processing_time)

    @property
    def num_keypoints(self) -> int:
        """Number of keypoints K (valid or not)."""
        return len(self.names)


@dataclass
class CameraIntrinsics:
    """Pinhole intrinsics of one camera stream: ``sensor_msgs/CameraInfo`` without ROS.

    Pixel coordinates follow ROS/OpenCV: the top-left pixel's centre is (0, 0), u right, v down.

    Attributes:
        width, height: image size (px).
        fx, fy: focal lengths (px); cx, cy: principal point (px).
        distortion_model: "plumb_bob" (5 coefficients) or "rational_polynomial" (8); "" for none.
        distortion: (N,) float64 distortion coefficients; all zero (or empty) for a rectified image.
        frame_id: the optical frame (z forward, x right, y down).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = "plumb_bob"
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(5))
    frame_id: str = ""

    def __post_init__(self) -> None:
        owner = type(self).__name__
        self.width, self.height = int(self.width), int(self.height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"{owner} size must be positive, got {self.width}x{self.height}")
        for name in ("fx", "fy", "cx", "cy"):
            setattr(self, name, float(getattr(self, name)))
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"{owner}.fx and fy must be > 0, got {self.fx}, {self.fy}")
        self.distortion = as_checked_array(self.distortion, np.float64, (None,), owner, "distortion")

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(self.distortion != 0.0))

    def project(self, points: np.ndarray) -> np.ndarray:
        """Project (N, 3) points in the optical frame (m) to (N, 2) pixels (u, v), ignoring distortion."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        return np.stack(
            [
                self.fx * points[:, 0] / points[:, 2] + self.cx,
                self.fy * points[:, 1] / points[:, 2] + self.cy,
            ],
            axis=1,
        )
