"""Synthetic demonstrations written as real rosbag2 episodes, for the policy tests.

Each episode: K keypoints scattered around a random centroid on the table; the TCP starts at a
random pose and its 10 Hz targets move it 20 % of the way to a point above the centroid each step
(with the gripper closing near the end); the robot state follows the targets. A policy that
reads the keypoints can predict the actions; one that ignores them cannot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kil_interfaces import conversion as cv
from kil_interfaces.data import ActionChunkData, KeypointArrayData, RobotStateData
from kil_interfaces.typestore import kil_typestore
from kil_teleop.recording import EpisodeWriter

TOPICS = {
    "/kil/action_chunk": "kil_interfaces/msg/ActionChunk",
    "/kil/robot_state": "kil_interfaces/msg/RobotState",
    "/kil/keypoints": "kil_interfaces/msg/KeypointArray",
}
STEP_NS = 100_000_000
DOWN = np.array([1.0, 0.0, 0.0, 0.0])


def write_episodes(
    out: Path,
    count: int,
    steps: int = 30,
    num_keypoints: int = 4,
    seed: int = 0,
    with_keypoints: bool = True,
    storage: str = "mcap",
    task: str = "synthetic",
) -> list[Path]:
    typestore = kil_typestore()
    types = cv.MessageTypes.rosbags(typestore)
    rng = np.random.default_rng(seed)
    paths = []
    for e in range(count):
        centroid = np.array([rng.uniform(0.25, 0.45), rng.uniform(-0.2, 0.2), 0.0])
        offsets = rng.normal(scale=0.03, size=(num_keypoints, 3))
        offsets[:, 2] = np.abs(offsets[:, 2])
        points = centroid + offsets
        goal = points.mean(axis=0) + np.array([0.0, 0.0, 0.05])
        position = np.array([rng.uniform(0.2, 0.5), rng.uniform(-0.25, 0.25), rng.uniform(0.15, 0.3)])
        path = out / f"episode_{e:04d}"
        topics = TOPICS if with_keypoints else {t: m for t, m in TOPICS.items() if t != "/kil/keypoints"}
        with EpisodeWriter(path, topics, typestore, storage=storage, metadata={"task": task}) as writer:
            for k in range(steps):
                t = (k + 1) * STEP_NS
                state = RobotStateData(t, "link_base", position, DOWN, 1.0 if k < steps - 8 else 0.0)
                writer.write("/kil/robot_state", t, cv.robot_state_to_msg(state, types))
                keypoints = KeypointArrayData(
                    t,
                    "link_base",
                    "oracle",
                    "",
                    tuple(f"k{i}" for i in range(num_keypoints)),
                    ("thing",) * num_keypoints,
                    np.zeros(num_keypoints),
                    np.zeros((num_keypoints, 2)),
                    points,
                    np.ones(num_keypoints),
                    np.ones(num_keypoints, bool),
                )
                if with_keypoints:
                    writer.write("/kil/keypoints", t, cv.keypoints_to_msg(keypoints, types))
                target = position + 0.2 * (goal - position)
                gripper = 1.0 if k < steps - 9 else 0.0
                chunk = ActionChunkData(t + STEP_NS, "link_base", STEP_NS, target[None], DOWN[None], [gripper])
                writer.write("/kil/action_chunk", t + 1, cv.action_chunk_to_msg(chunk, types))
                position = target
        paths.append(path)
    return paths
