"""Deterministic sample kil messages (as dataclasses) shared by the kil_interfaces tests."""

from __future__ import annotations

import numpy as np

from kil_interfaces.data import ActionChunkData, KeypointArrayData, RobotStateData

# Stamps with non-zero sec and nanosec parts, beyond 2**31 ns, so both are exercised.
STAMP_NS = 1_764_150_123_456_789_012


def _unit_quaternions(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def sample_keypoints(seed: int = 0) -> KeypointArrayData:
    """Two categories, a second instance, one invalid keypoint, similarities present."""
    rng = np.random.default_rng(seed)
    k = 5
    return KeypointArrayData(
        stamp_ns=STAMP_NS,
        frame_id="link_base",
        method="instance",
        backend="effnet_lite0",
        names=("rim", "handle", "base", "heel", "toe"),
        categories=("mug", "mug", "mug", "shoe", "shoe"),
        instances=np.array([0, 0, 0, 1, 1], dtype=np.uint8),
        uv=rng.uniform(0, 640, size=(k, 2)).astype(np.float32),
        points=np.vstack([rng.normal(size=(k - 1, 3)), np.zeros((1, 3))]),
        scores=rng.uniform(-1, 1, size=k).astype(np.float32),
        valid=np.array([True, True, True, True, False]),
        similarities=rng.uniform(-1, 1, size=(k, k)).astype(np.float32),
        processing_time=0.0421,
    )


def sample_action_chunk(seed: int = 1) -> ActionChunkData:
    rng = np.random.default_rng(seed)
    t = 16
    return ActionChunkData(
        stamp_ns=STAMP_NS + 5,
        frame_id="link_base",
        step_ns=100_000_000,
        positions=rng.normal(size=(t, 3)),
        quaternions=_unit_quaternions(rng, t),
        gripper=rng.uniform(0, 1, size=t).astype(np.float32),
        execute_steps=8,
        inference_latency=0.029,
    )


def sample_robot_state(seed: int = 2) -> RobotStateData:
    rng = np.random.default_rng(seed)
    return RobotStateData(
        stamp_ns=STAMP_NS + 7,
        frame_id="link_base",
        position=rng.normal(size=3),
        quaternion=_unit_quaternions(rng, 1)[0],
        gripper=0.625,
        joint_names=tuple(f"joint{i}" for i in range(1, 7)),
        joint_positions=rng.uniform(-3, 3, size=6),
    )


def assert_same(a, b) -> None:
    """Assert two kil dataclasses are equal field by field (arrays exactly, dtypes included)."""
    assert type(a) is type(b)
    for name, value in vars(a).items():
        other = getattr(b, name)
        if isinstance(value, np.ndarray):
            assert isinstance(other, np.ndarray), name
            assert value.dtype == other.dtype, (name, value.dtype, other.dtype)
            np.testing.assert_array_equal(value, other, err_msg=name)
        elif isinstance(value, float):
            # float32 message fields (latency, processing time) round to float32.
            assert other == np.float32(value), (name, value, other)
        else:
            assert value == other, (name, value, other)
