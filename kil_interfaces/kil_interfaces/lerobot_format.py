"""The LeRobotDataset v3.0 layout as KIL writes and reads it (``kil_policy.export_lerobot``,
``kil_teleop.import_lerobot``): file paths, the features of a KIL episode and ``meta/info.json``.
Pure Python; the parquet and video work is the exporter's and importer's.

A dataset directory (LeRobot's ``lerobot/datasets/utils.py``: ``INFO_PATH``, ``DEFAULT_DATA_PATH``,
``DEFAULT_VIDEO_PATH``, ``DEFAULT_EPISODES_PATH``, ``DEFAULT_TASKS_PATH``)::

    meta/info.json                                    codebase_version v3.0, fps, features, paths
    meta/stats.json                                   min/max/mean/std/count per feature
    meta/tasks.parquet                                task strings (pandas index) -> task_index
    meta/episodes/chunk-000/file-000.parquet          one row per episode: length, data and video
                                                      file indices, from/to index and timestamps
    data/chunk-000/file-NNN.parquet                   one frame per row (here: one file per episode)
    videos/observation.images.color/chunk-000/file-NNN.mp4

One frame per 10 Hz action tick (the training clock of ``kil_policy.data``):

| feature | dtype, shape | from the bag |
|---|---|---|
| ``observation.state`` | float32 (7,) | RobotState: TCP position, roll/pitch/yaw, gripper |
| ``observation.keypoints`` | float32 (3K,) | KeypointArray: x, y, z per keypoint in the base frame (0 where invalid) |
| ``observation.keypoints_valid`` | bool (K,) | KeypointArray.valid |
| ``observation.images.color`` | video (H, W, 3) | colour frames (AV1, yuv420p) |
| ``action`` | float32 (10,) | the ActionChunk command: position, 6-D rotation, gripper |
| ``timestamp`` / ``frame_index`` / ``episode_index`` / ``index`` / ``task_index`` | LeRobot's own | |

Keypoint names (``mug[0].rim.x``, ...) carry the layout, so an import restores the KeypointArray's
categories, instances and names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"

STATE = "observation.state"
KEYPOINTS = "observation.keypoints"
KEYPOINTS_VALID = "observation.keypoints_valid"
COLOR = "observation.images.color"
ACTION = "action"
STATE_NAMES = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
ACTION_NAMES = ["x", "y", "z", "r11", "r21", "r31", "r12", "r22", "r32", "gripper"]
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
#: LeRobot's default video encoding (``encode_video_frames``: libsvtav1, yuv420p, g=2, crf=30).
VIDEO_CODEC, VIDEO_PIX_FMT, VIDEO_GOP, VIDEO_CRF = "libsvtav1", "yuv420p", 2, 30

_SLOT = re.compile(r"^(?P<category>[^\[\]]+)\[(?P<instance>\d+)\]\.(?P<name>.+)$")


class LeRobotFormatError(ValueError):
    """A dataset directory that is not a LeRobotDataset v3.0 KIL can read; the text says where."""


def chunk_and_file(index: int) -> tuple[int, int]:
    """(chunk_index, file_index) of the ``index``-th file (``CHUNKS_SIZE`` files per chunk)."""
    return index // CHUNKS_SIZE, index % CHUNKS_SIZE


def keypoint_slot_names(slots: list[tuple[str, int, str]]) -> list[str]:
    """``category[instance].name`` per keypoint slot."""
    return [f"{category}[{instance}].{name}" for category, instance, name in slots]


def parse_slot_names(names: list[str], where: str) -> list[tuple[str, int, str]]:
    """The inverse of :func:`keypoint_slot_names`.

    Raises:
        LeRobotFormatError: a name that is not ``category[instance].name``, naming ``where``.
    """
    slots = []
    for name in names:
        match = _SLOT.match(name)
        if match is None:
            raise LeRobotFormatError(f"{where}: keypoint name {name!r} is not category[instance].name")
        slots.append((match["category"], int(match["instance"]), match["name"]))
    return slots


def features(
    image_shape: tuple[int, int] | None, slots: list[tuple[str, int, str]] | None, fps: int
) -> dict[str, dict]:
    """The ``features`` of ``meta/info.json`` for episodes with colour frames of ``image_shape``
    (H, W) and keypoints in ``slots`` (either may be None: left out)."""
    out: dict[str, dict] = {
        STATE: {"dtype": "float32", "shape": [len(STATE_NAMES)], "names": list(STATE_NAMES)},
        ACTION: {"dtype": "float32", "shape": [len(ACTION_NAMES)], "names": list(ACTION_NAMES)},
    }
    if slots:
        names = keypoint_slot_names(slots)
        out[KEYPOINTS] = {
            "dtype": "float32",
            "shape": [3 * len(names)],
            "names": [f"{n}.{axis}" for n in names for axis in "xyz"],
        }
        out[KEYPOINTS_VALID] = {"dtype": "bool", "shape": [len(names)], "names": names}
    if image_shape is not None:
        height, width = image_shape
        out[COLOR] = {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": height,
                "video.width": width,
                "video.codec": "av1",
                "video.pix_fmt": VIDEO_PIX_FMT,
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    return {**out, **DEFAULT_FEATURES}


def info(fps: int, feature_map: dict, episodes: int, frames: int, tasks: int, robot_type: str | None = None) -> dict:
    """``meta/info.json`` (LeRobot's ``create_empty_dataset_info`` fields, totals filled in)."""
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": episodes,
        "total_frames": frames,
        "total_tasks": tasks,
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": fps,
        "splits": {"train": f"0:{episodes}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if any(f["dtype"] == "video" for f in feature_map.values()) else None,
        "features": feature_map,
    }


@dataclass(frozen=True)
class DatasetInfo:
    """What an importer needs from ``meta/info.json``."""

    root: Path
    fps: int
    features: dict
    total_episodes: int
    data_path: str
    video_path: str | None

    @property
    def keypoint_slots(self) -> list[tuple[str, int, str]] | None:
        feature = self.features.get(KEYPOINTS_VALID)
        return None if feature is None else parse_slot_names(feature["names"], f"{self.root / INFO_PATH}")

    @property
    def video_keys(self) -> list[str]:
        return [key for key, f in self.features.items() if f["dtype"] == "video"]


def read_info(root: Path) -> DatasetInfo:
    """``meta/info.json`` of the dataset at ``root``, checked.

    Raises:
        LeRobotFormatError: missing or unreadable, another codebase version, or without the
            state and action features, naming the file.
    """
    path = Path(root) / INFO_PATH
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LeRobotFormatError(f"{path}: not found (is {root} a LeRobotDataset directory?)") from None
    except (OSError, json.JSONDecodeError) as error:
        raise LeRobotFormatError(f"{path}: unreadable ({error})") from error
    version = data.get("codebase_version")
    if version != CODEBASE_VERSION:
        raise LeRobotFormatError(
            f"{path}: codebase_version {version!r}; this reader takes {CODEBASE_VERSION} (convert older datasets "
            "with LeRobot's convert_dataset_v21_to_v30)"
        )
    feature_map = data.get("features") or {}
    missing = [key for key in (STATE, ACTION) if key not in feature_map]
    if missing:
        raise LeRobotFormatError(f"{path}: features lack {', '.join(missing)}")
    for key, expected in ((STATE, len(STATE_NAMES)), (ACTION, len(ACTION_NAMES))):
        if list(feature_map[key]["shape"]) != [expected]:
            raise LeRobotFormatError(
                f"{path}: feature {key} has shape {feature_map[key]['shape']}; KIL's is [{expected}] "
                f"({', '.join(STATE_NAMES if key == STATE else ACTION_NAMES)})"
            )
    return DatasetInfo(
        root=Path(root),
        fps=int(data["fps"]),
        features=feature_map,
        total_episodes=int(data.get("total_episodes", 0)),
        data_path=data.get("data_path", DATA_PATH),
        video_path=data.get("video_path"),
    )
