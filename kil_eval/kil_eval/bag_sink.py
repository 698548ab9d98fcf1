"""An :class:`~kil_sim.rollout.EpisodeSink` that writes what the real topics would carry into an
episode bag (``kil_teleop.recording.EpisodeWriter``)."""

from __future__ import annotations

from collections.abc import Callable

from kil_interfaces import conversion
from kil_interfaces.data import ActionChunkData, CameraIntrinsics, KeypointArrayData, RobotStateData
from kil_sim.world import CameraFrame
from kil_teleop.recording import EpisodeWriter

COLOR_TOPIC = "/camera/color/image_raw"
DEPTH_TOPIC = "/camera/depth/image_raw"
INFO_TOPIC = "/camera/color/camera_info"
STATE_TOPIC = "/kil/robot_state"
ACTION_TOPIC = "/kil/action_chunk"
ORACLE_TOPIC = "/kil/keypoints/oracle"
#: Per-pixel object index + 1 (16UC1), as sim_node publishes it; recorded with ``masks=True``.
MASK_TOPIC = "/camera/instance_mask"


class BagSink:
    """Converts simulator streams to ``rosbags`` messages and writes them.

    Args:
        writer: the open episode.
        types: the message backend of the writer's typestore.
        intrinsics: the camera's intrinsics (its ``frame_id`` names the optical frame).
        oracle: stamp_ns -> ground-truth keypoints, written on ORACLE_TOPIC with each camera frame
            (None: not recorded).
    """

    def __init__(
        self,
        writer: EpisodeWriter,
        types: conversion.MessageTypes,
        intrinsics: CameraIntrinsics,
        oracle: Callable[[int], KeypointArrayData] | None = None,
    ) -> None:
        self.writer = writer
        self.types = types
        self.intrinsics = intrinsics
        self.oracle = oracle

    def on_camera(self, frame: CameraFrame, stamp_ns: int) -> None:
        frame_id = self.intrinsics.frame_id
        if frame.instance_mask is not None:  # before the colour frame, so a reader has it when the pair forms
            mask = frame.instance_mask.astype("uint16")
            self.writer.write(
                MASK_TOPIC, stamp_ns, conversion.numpy_to_image(mask, "16UC1", stamp_ns, frame_id, self.types)
            )
        self.writer.write(
            COLOR_TOPIC, stamp_ns, conversion.numpy_to_image(frame.rgb, "rgb8", stamp_ns, frame_id, self.types)
        )
        self.writer.write(
            DEPTH_TOPIC, stamp_ns, conversion.numpy_to_image(frame.depth_mm, "16UC1", stamp_ns, frame_id, self.types)
        )
        self.writer.write(INFO_TOPIC, stamp_ns, conversion.camera_info_to_msg(self.intrinsics, stamp_ns, self.types))
        if self.oracle is not None:
            self.writer.write(ORACLE_TOPIC, stamp_ns, conversion.keypoints_to_msg(self.oracle(stamp_ns), self.types))

    def on_state(self, state: RobotStateData) -> None:
        self.writer.write(STATE_TOPIC, state.stamp_ns, conversion.robot_state_to_msg(state, self.types))

    def on_action(self, chunk: ActionChunkData) -> None:
        # Bag time = when the command was issued (one step before the target is due).
        self.writer.write(
            ACTION_TOPIC, chunk.stamp_ns - chunk.step_ns, conversion.action_chunk_to_msg(chunk, self.types)
        )
