"""Round trips and error cases of kil_interfaces.conversion, for rclpy and rosbags messages."""

from __future__ import annotations

import numpy as np
import pytest
from interfaces_samples import (
    assert_same,
    sample_action_chunk,
    sample_keypoints,
    sample_robot_state,
)
from rclpy.serialization import deserialize_message, serialize_message

from kil_interfaces import conversion as cv
from kil_interfaces.data import ActionChunkData, KeypointArrayData, RobotStateData
from kil_interfaces.typestore import kil_typestore

TYPESTORE = kil_typestore()
BACKENDS = {"rclpy": cv.MessageTypes.rclpy(), "rosbags": cv.MessageTypes.rosbags(TYPESTORE)}

RNG = np.random.default_rng(7)
IMAGES = {
    "rgb8": RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8),
    "bgr8": RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8),
    "rgba8": RNG.integers(0, 256, size=(4, 3, 4), dtype=np.uint8),
    "bgra8": RNG.integers(0, 256, size=(4, 3, 4), dtype=np.uint8),
    "mono8": RNG.integers(0, 256, size=(6, 5), dtype=np.uint8),
    "16UC1": RNG.integers(0, 65536, size=(6, 5), dtype=np.uint16),
    "32FC1": np.where(RNG.random((6, 5)) < 0.2, np.nan, RNG.uniform(0.2, 4.0, (6, 5))).astype(np.float32),
}


def _image(encoding: str, array: np.ndarray, **fields):
    """An rclpy Image with arbitrary (possibly inconsistent) fields."""
    from sensor_msgs.msg import Image

    msg = Image(height=array.shape[0], width=array.shape[1], encoding=encoding, is_bigendian=0)
    msg.step = array.shape[1] * array.itemsize * (array.shape[2] if array.ndim == 3 else 1)
    msg.data = array.tobytes()
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


# --- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("encoding", IMAGES)
def test_image_round_trip(encoding: str, backend: str) -> None:
    image = IMAGES[encoding]
    msg = cv.numpy_to_image(
        image,
        encoding,
        stamp_ns=12_345_678_901,
        frame_id="camera_color_optical_frame",
        types=BACKENDS[backend],
    )
    assert (msg.height, msg.width, msg.encoding) == (image.shape[0], image.shape[1], encoding)
    assert msg.step == image.shape[1] * image.itemsize * (image.shape[2] if image.ndim == 3 else 1)
    assert cv.time_to_ns(msg.header.stamp) == 12_345_678_901
    assert msg.header.frame_id == "camera_color_optical_frame"
    back = cv.image_to_numpy(msg)
    assert back.dtype == image.dtype and back.shape == image.shape
    np.testing.assert_array_equal(back, image)  # NaN (no depth) compares equal in place


def test_image_through_cdr_bytes_rclpy_to_rosbags() -> None:
    """An rclpy-serialised image (what a bag stores) deserialises with rosbags and converts back."""
    image = IMAGES["16UC1"]
    raw = serialize_message(cv.numpy_to_image(image, "16UC1", stamp_ns=5, frame_id="cam"))
    msg = TYPESTORE.deserialize_cdr(raw, "sensor_msgs/msg/Image")
    np.testing.assert_array_equal(cv.image_to_numpy(msg), image)


def test_image_padded_rows_are_cropped() -> None:
    image = IMAGES["rgb8"]
    padded = np.zeros((image.shape[0], image.shape[1] * 3 + 5), dtype=np.uint8)
    padded[:, : image.shape[1] * 3] = image.reshape(image.shape[0], -1)
    msg = _image("rgb8", image, step=padded.shape[1], data=padded.tobytes())
    np.testing.assert_array_equal(cv.image_to_numpy(msg), image)


def test_image_big_endian_depth() -> None:
    depth = IMAGES["16UC1"]
    msg = _image("16UC1", depth, is_bigendian=1, data=depth.astype(">u2").tobytes())
    out = cv.image_to_numpy(msg)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, depth)


def test_image_to_numpy_copy_is_independent() -> None:
    msg = _image("mono8", IMAGES["mono8"])
    out = cv.image_to_numpy(msg, copy=True)
    out[:] = 0
    np.testing.assert_array_equal(cv.image_to_numpy(msg), IMAGES["mono8"])


def test_unsupported_encoding_names_topic_and_field() -> None:
    msg = _image("yuv422", IMAGES["rgb8"])
    with pytest.raises(cv.ConversionError, match=r"/camera/color/image_raw\.encoding 'yuv422'.*supported: rgb8"):
        cv.image_to_numpy(msg, what="/camera/color/image_raw")


def test_step_smaller_than_row_is_rejected() -> None:
    msg = _image("rgb8", IMAGES["rgb8"], step=7 * 3 - 1)
    with pytest.raises(cv.ConversionError, match=r"Image\.step 20 is smaller than width 7 x 3"):
        cv.image_to_numpy(msg)


def test_step_not_multiple_of_element_size_is_rejected() -> None:
    depth = IMAGES["16UC1"]
    msg = _image("16UC1", depth, step=11, data=bytes(11 * depth.shape[0]))
    with pytest.raises(cv.ConversionError, match=r"step 11 is not a multiple"):
        cv.image_to_numpy(msg)


def test_truncated_buffer_is_rejected() -> None:
    image = IMAGES["32FC1"]
    msg = _image("32FC1", image, data=image.tobytes()[:-3])
    with pytest.raises(
        cv.ConversionError,
        match=r"depth\.data has 117 bytes, expected step 20 x height 6 = 120 \(truncated buffer\)",
    ):
        cv.image_to_numpy(msg, what="depth")


def test_oversized_buffer_is_rejected() -> None:
    image = IMAGES["mono8"]
    msg = _image("mono8", image, data=image.tobytes() + b"\0")
    with pytest.raises(cv.ConversionError, match=r"extra bytes"):
        cv.image_to_numpy(msg)


@pytest.mark.parametrize(
    ("array", "encoding", "message"),
    [
        (np.zeros((4, 4), np.uint8), "rgb8", r"rgb8 image must have shape \(H, W, 3\), got \(4, 4\)"),
        (np.zeros((4, 4, 4), np.uint8), "bgr8", r"bgr8 image must have shape \(H, W, 3\)"),
        (np.zeros((4, 4), np.float32), "16UC1", r"16UC1 image must have dtype uint16, got float32"),
        (np.zeros((4, 4), np.uint16), "32FC1", r"32FC1 image must have dtype float32"),
        (np.zeros((4, 4, 1), np.uint8), "mono8", r"mono8 image must have shape \(H, W\)"),
        (np.zeros((4, 4), np.uint8), "rgb16", r"encoding 'rgb16' is not supported"),
    ],
)
def test_numpy_to_image_rejects_wrong_arrays(array, encoding, message) -> None:
    with pytest.raises(cv.ConversionError, match=message):
        cv.numpy_to_image(array, encoding)


# --- kil messages ----------------------------------------------------------------------------

CASES = {
    "keypoints": (
        sample_keypoints,
        cv.keypoints_to_msg,
        cv.keypoints_from_msg,
        "kil_interfaces/msg/KeypointArray",
    ),
    "action_chunk": (
        sample_action_chunk,
        cv.action_chunk_to_msg,
        cv.action_chunk_from_msg,
        "kil_interfaces/msg/ActionChunk",
    ),
    "robot_state": (
        sample_robot_state,
        cv.robot_state_to_msg,
        cv.robot_state_from_msg,
        "kil_interfaces/msg/RobotState",
    ),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_kil_message_round_trip(case: str, backend: str) -> None:
    make, to_msg, from_msg, _ = CASES[case]
    original = make()
    assert_same(original, from_msg(to_msg(original, BACKENDS[backend])))


@pytest.mark.parametrize("case", CASES)
def test_kil_message_cdr_bytes_cross_between_rclpy_and_rosbags(case: str) -> None:
    """Bytes serialised by rclpy read back with rosbags and vice versa: bags stay interchangeable.

    (The bytes themselves may differ in CDR alignment padding, which Fast DDS leaves unset.)
    """
    make, to_msg, from_msg, type_name = CASES[case]
    original = make()
    rclpy_bytes = bytes(serialize_message(to_msg(original, BACKENDS["rclpy"])))
    rosbags_bytes = bytes(TYPESTORE.serialize_cdr(to_msg(original, BACKENDS["rosbags"]), type_name))
    assert len(rclpy_bytes) == len(rosbags_bytes)
    assert_same(original, from_msg(TYPESTORE.deserialize_cdr(rclpy_bytes, type_name)))
    msg_class = BACKENDS["rclpy"].get(type_name)
    assert_same(original, from_msg(deserialize_message(rosbags_bytes, msg_class)))


def test_robot_state_without_joints_crosses_to_rosbags() -> None:
    """Regression: an empty trailing float64[] made rclpy's bytes 4 bytes longer than rosbags allows."""
    state = sample_robot_state()
    state.joint_names, state.joint_positions = (), np.zeros(0)
    raw = bytes(serialize_message(cv.robot_state_to_msg(state)))
    assert_same(state, cv.robot_state_from_msg(TYPESTORE.deserialize_cdr(raw, "kil_interfaces/msg/RobotState")))


def test_keypoints_without_similarities() -> None:
    kp = sample_keypoints()
    kp.similarities = None
    back = cv.keypoints_from_msg(cv.keypoints_to_msg(kp))
    assert back.similarities is None


def test_keypoints_bad_similarity_count_names_field() -> None:
    msg = cv.keypoints_to_msg(sample_keypoints())
    msg.similarities = [0.5] * 7
    with pytest.raises(
        cv.ConversionError, match=r"/kil/keypoints\.similarities has 7 values; expected 0 or K x K = 25"
    ):
        cv.keypoints_from_msg(msg, what="/kil/keypoints")


def test_keypoints_unknown_method_is_rejected() -> None:
    msg = cv.keypoints_to_msg(sample_keypoints())
    msg.method = "magic"
    with pytest.raises(cv.ConversionError, match=r"KeypointArrayData\.method must be one of"):
        cv.keypoints_from_msg(msg)


def test_action_chunk_gripper_length_mismatch() -> None:
    msg = cv.action_chunk_to_msg(sample_action_chunk())
    msg.gripper = [0.5] * 3
    with pytest.raises(cv.ConversionError, match=r"ActionChunk\.gripper has 3 values but poses has 16"):
        cv.action_chunk_from_msg(msg)


def test_action_chunk_non_unit_quaternion_is_rejected() -> None:
    msg = cv.action_chunk_to_msg(sample_action_chunk())
    msg.poses[3].orientation.w = 5.0
    with pytest.raises(cv.ConversionError, match=r"quaternions must hold unit quaternions.*row 3"):
        cv.action_chunk_from_msg(msg)


def test_action_chunk_zero_step_is_rejected() -> None:
    msg = cv.action_chunk_to_msg(sample_action_chunk())
    msg.step.sec, msg.step.nanosec = 0, 0
    with pytest.raises(cv.ConversionError, match=r"step_ns must be > 0"):
        cv.action_chunk_from_msg(msg)


def test_robot_state_joint_count_mismatch() -> None:
    msg = cv.robot_state_to_msg(sample_robot_state())
    msg.joint_positions = [0.1, 0.2]
    with pytest.raises(cv.ConversionError, match=r"RobotState\.joint_positions has 2 values but joint_names has 6"):
        cv.robot_state_from_msg(msg)


def test_robot_state_gripper_out_of_range() -> None:
    msg = cv.robot_state_to_msg(sample_robot_state())
    msg.gripper = 1.5
    with pytest.raises(cv.ConversionError, match=r"gripper must be in \[0, 1\], got 1.5"):
        cv.robot_state_from_msg(msg)


def test_action_chunk_times() -> None:
    chunk = sample_action_chunk()
    times = chunk.times_ns()
    assert times[0] == chunk.stamp_ns and np.all(np.diff(times) == 100_000_000)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RobotStateData(0, "b", [0, 0], [0, 0, 0, 1], 0.5), r"position must have shape \(3\)"),
        (lambda: RobotStateData(-1, "b", [0, 0, 0], [0, 0, 0, 1], 0.5), r"stamp_ns must be >= 0"),
        (lambda: RobotStateData(0, "b", [0, 0, np.nan], [0, 0, 0, 1], 0.5), r"position contains NaN"),
        (
            lambda: ActionChunkData(0, "b", 1, np.zeros((0, 3)), np.zeros((0, 4)), np.zeros(0)),
            r"at least one target",
        ),
        (
            lambda: ActionChunkData(0, "b", 1, np.zeros((2, 3)), [[0, 0, 0, 1]] * 2, [0.5, 2.0]),
            r"gripper values must be in \[0, 1\]",
        ),
        (
            lambda: ActionChunkData(0, "b", 1, np.zeros((2, 3)), [[0, 0, 0, 1]] * 2, [0.5, 0.5], execute_steps=3),
            r"execute_steps must be in \[0, 2\]",
        ),
        (
            lambda: KeypointArrayData(0, "b", "image", "", ("a",), ("x", "y"), [0], [[0, 0]], [[0, 0, 0]], [1], [True]),
            r"categories has 2 entries, names has 1",
        ),
        (
            lambda: KeypointArrayData(0, "b", "image", "", ("a",), ("x",), [300], [[0, 0]], [[0, 0, 0]], [1], [True]),
            r"instances must be in \[0, 255\]",
        ),
    ],
)
def test_dataclass_validation(build, message) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_image_to_rgb_orders_channels(encoding: str) -> None:
    rgb = IMAGES["rgb8"]
    order = {"rgb8": [0, 1, 2], "bgr8": [2, 1, 0], "rgba8": [0, 1, 2, 0], "bgra8": [2, 1, 0, 0]}[encoding]
    msg = cv.numpy_to_image(np.ascontiguousarray(rgb[..., order]), encoding)
    np.testing.assert_array_equal(cv.image_to_rgb(msg), rgb)
    with pytest.raises(cv.ConversionError, match=r"cam\.encoding mono8: a colour image"):
        cv.image_to_rgb(cv.numpy_to_image(rgb[..., 0].copy(), "mono8"), what="cam")
