"""A LeRobotDataset v3.0 written back as rosbag2 episodes (MCAP), one bag per episode, that
training (``kil_policy.train``), ``ros2 bag play``, Foxglove and RViz read:

    python -m kil_teleop.import_lerobot DATASET OUT [--episodes 0 3 7] [--storage sqlite3]

Per frame (at ``timestamp``): ``/kil/robot_state`` from ``observation.state`` (position,
roll/pitch/yaw, gripper), ``/kil/action_chunk`` (one pose) from ``action`` (position, 6-D rotation,
gripper), ``/kil/keypoints`` from ``observation.keypoints`` + ``observation.keypoints_valid`` (their
names carry the layout), and ``/camera/color/image_raw`` (rgb8) from the ``observation.images.color``
video. The layout is ``kil_interfaces.lerobot_format``; a dataset without KIL's state and action
features is refused with the reason. Needs ``pyarrow`` and ``av`` (requirements/lerobot.txt); no
torch.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kil_interfaces import conversion
from kil_interfaces import lerobot_format as fmt
from kil_interfaces.conversion import MessageTypes
from kil_interfaces.data import ActionChunkData, KeypointArrayData, RobotStateData
from kil_interfaces.representation import pose_from_action
from kil_interfaces.rotations import euler_to_quat
from kil_interfaces.typestore import kil_typestore
from kil_teleop.recording import DEMONSTRATION_TOPICS, EpisodeWriter, episode_name

_NS = 1_000_000_000
#: The imported episodes' clock starts here (any positive time; bags need no wall-clock meaning).
START_NS = 1_000 * _NS


@dataclass(frozen=True)
class ImportConfig:
    """episodes: indices to import (None = all). storage: "mcap" or "sqlite3". frame_id: the base
    frame (default: the one the exporter stored, else link_base)."""

    episodes: tuple[int, ...] | None = None
    storage: str = "mcap"
    frame_id: str = ""

    def __post_init__(self) -> None:
        if self.storage not in ("mcap", "sqlite3"):
            raise ValueError(f"storage must be mcap or sqlite3, got {self.storage!r}")


def _pq():
    try:
        import pyarrow.parquet as pq
    except ImportError as error:
        raise SystemExit(f"import_lerobot needs pyarrow: pip install -r requirements/lerobot.txt ({error})") from None
    return pq


def read_video(path: Path, start_s: float, end_s: float) -> list[np.ndarray]:
    """The (H, W, 3) uint8 RGB frames of ``path`` whose time is in [start_s, end_s) (a v3 video file
    may hold several episodes one after another).

    Raises:
        fmt.LeRobotFormatError: the file is missing or cannot be decoded, naming it.
    """
    try:
        import av
    except ImportError as error:
        raise SystemExit(
            f"import_lerobot needs av (PyAV): pip install -r requirements/lerobot.txt ({error})"
        ) from error
    if not path.is_file():
        raise fmt.LeRobotFormatError(f"{path}: video file not found")
    frames = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base) if frame.pts is not None else frame.time
                if start_s - 1e-4 <= t < end_s - 1e-4:
                    frames.append(frame.to_ndarray(format="rgb24"))
    except av.error.FFmpegError as error:
        raise fmt.LeRobotFormatError(f"{path}: cannot decode ({error})") from error
    return frames


def _episode_rows(info: fmt.DatasetInfo) -> list[dict]:
    pq = _pq()
    files = sorted((info.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise fmt.LeRobotFormatError(f"{info.root / 'meta/episodes'}: no episode metadata (chunk-*/file-*.parquet)")
    rows = [row for path in files for row in pq.read_table(path).to_pylist()]
    return sorted(rows, key=lambda r: r["episode_index"])


def _frames(info: fmt.DatasetInfo, row: dict) -> dict[str, np.ndarray]:
    """The episode's columns (rows in frame order) from its data file."""
    pq = _pq()
    path = info.root / info.data_path.format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
    if not path.is_file():
        raise fmt.LeRobotFormatError(f"{path}: data file of episode {row['episode_index']} not found")
    table = pq.read_table(path)
    episode = np.asarray(table.column("episode_index").to_numpy())
    keep = np.flatnonzero(episode == row["episode_index"])
    columns = {}
    for name in table.column_names:
        column = table.column(name).take(keep)
        values = column.to_pylist()
        columns[name] = np.asarray(values)
    order = np.argsort(columns["frame_index"])
    return {name: values[order] for name, values in columns.items()}


def import_episode(info: fmt.DatasetInfo, row: dict, out: Path, config: ImportConfig, typestore) -> Path:
    """Write one episode as a bag in ``out``; its path."""
    frames = _frames(info, row)
    length = len(frames["frame_index"])
    where = f"{info.root} episode {row['episode_index']}"
    if length == 0:
        raise fmt.LeRobotFormatError(f"{where}: no frames in its data file")
    slots = info.keypoint_slots
    video = None
    if fmt.COLOR in info.video_keys and info.video_path:
        key = f"videos/{fmt.COLOR}"
        path = info.root / info.video_path.format(
            video_key=fmt.COLOR, chunk_index=row[f"{key}/chunk_index"], file_index=row[f"{key}/file_index"]
        )
        video = read_video(path, row[f"{key}/from_timestamp"], row[f"{key}/to_timestamp"])
        if len(video) != length:
            raise fmt.LeRobotFormatError(f"{where}: {len(video)} video frames in {path}, {length} data frames")
    topics = {t: m for t, m in DEMONSTRATION_TOPICS.items() if t != "/camera/depth/image_raw"}
    if video is None:
        topics = {t: m for t, m in topics.items() if not t.startswith("/camera/")}
    else:
        topics.pop("/camera/color/camera_info")
    if slots:
        topics["/kil/keypoints"] = "kil_interfaces/msg/KeypointArray"
    task = row["tasks"][0] if row.get("tasks") else ""
    metadata = {"task": task, "recorded_by": "kil_teleop.import_lerobot", "source": str(info.root),
                "source_episode": str(row["episode_index"])}  # fmt: skip
    bag = out / episode_name(int(row["episode_index"]))
    writer = EpisodeWriter(bag, topics, typestore, metadata=metadata, storage=config.storage)
    types = MessageTypes.rosbags(typestore)
    frame_id = config.frame_id
    step_ns = round(_NS / info.fps)
    try:
        for i in range(length):
            stamp = START_NS + round(float(frames["timestamp"][i]) * _NS)
            state = np.asarray(frames[fmt.STATE][i], np.float64)
            robot = RobotStateData(
                stamp, frame_id, state[:3], euler_to_quat(state[3:6]), float(np.clip(state[6], 0, 1))
            )
            writer.write("/kil/robot_state", stamp, conversion.robot_state_to_msg(robot, types))
            if slots:
                valid = np.asarray(frames[fmt.KEYPOINTS_VALID][i], bool)
                points = np.asarray(frames[fmt.KEYPOINTS][i], np.float64).reshape(-1, 3)
                keypoints = KeypointArrayData(
                    stamp_ns=stamp,
                    frame_id=frame_id,
                    method="image",
                    backend="lerobot",
                    names=tuple(s[2] for s in slots),
                    categories=tuple(s[0] for s in slots),
                    instances=np.array([s[1] for s in slots], np.uint8),
                    uv=np.zeros((len(slots), 2), np.float32),
                    points=points,
                    scores=valid.astype(np.float32),
                    valid=valid,
                )
                writer.write("/kil/keypoints", stamp, conversion.keypoints_to_msg(keypoints, types))
            if video is not None:
                image = conversion.numpy_to_image(video[i], "rgb8", stamp, "camera_color_optical_frame", types)
                writer.write("/camera/color/image_raw", stamp, image)
            position, quaternion, gripper = pose_from_action(np.asarray(frames[fmt.ACTION][i], np.float64))
            chunk = ActionChunkData(stamp, frame_id, step_ns, position[None], quaternion[None],
                                    np.array([gripper], np.float32), execute_steps=1)  # fmt: skip
            writer.write("/kil/action_chunk", stamp, conversion.action_chunk_to_msg(chunk, types))
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def import_dataset(root: Path, out: Path, config: ImportConfig | None = None) -> list[Path]:
    """Write the dataset's episodes as bags in ``out``; their paths.

    Raises:
        fmt.LeRobotFormatError: the dataset is not one KIL can read, or an episode is broken,
            naming the file.
        FileExistsError: an episode's bag already exists in ``out``.
    """
    config = config or ImportConfig()
    info = fmt.read_info(root)
    if not config.frame_id:
        import json

        stored = json.loads((Path(root) / fmt.INFO_PATH).read_text()).get("kil", {}).get("frame_id")
        config = ImportConfig(config.episodes, config.storage, stored or "link_base")
    rows = _episode_rows(info)
    if config.episodes is not None:
        known = {r["episode_index"] for r in rows}
        unknown = sorted(set(config.episodes) - known)
        if unknown:
            raise fmt.LeRobotFormatError(f"{root}: no episodes {unknown} (it has {len(rows)})")
        rows = [r for r in rows if r["episode_index"] in config.episodes]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    typestore = kil_typestore()
    return [
        import_episode(info, row, out, config, typestore)
        for row in tqdm(rows, desc="write bags", unit="episode", disable=len(rows) < 2)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="a LeRobotDataset v3.0 directory")
    parser.add_argument("out", type=Path, help="directory of the episode bags")
    parser.add_argument("--episodes", type=int, nargs="*", default=None, help="episode indices (default: all)")
    parser.add_argument("--storage", default="mcap", choices=("mcap", "sqlite3"), help="bag storage")
    parser.add_argument("--frame-id", default="", help="base frame (default: the exporter's, else link_base)")
    args = parser.parse_args(argv)
    config = ImportConfig(None if args.episodes is None else tuple(args.episodes), args.storage, args.frame_id)
    try:
        bags = import_dataset(args.dataset, args.out, config)
    except (fmt.LeRobotFormatError, FileExistsError, ValueError) as error:
        print(f"import_lerobot: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(bags)} episode bags to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
