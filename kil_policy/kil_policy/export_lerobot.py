"""KIL demonstrations (rosbag2 episodes) as a LeRobotDataset v3.0 (parquet + AV1 video):

    python -m kil_policy.export_lerobot demos/place_mug OUT [--task place_mug] [--no-video]

One frame per 10 Hz action tick, read by the same reader that training uses (``kil_policy.data``):
``observation.state`` (7), ``observation.keypoints`` (3K, base frame) and
``observation.keypoints_valid`` (K) where the bags hold keypoints (``--keypoints-topic``, e.g.
/kil/keypoints/oracle), ``observation.images.color`` (AV1 video of the colour frames) and
``action`` (10); the layout is ``kil_interfaces.lerobot_format``. Depth is not exported (LeRobot's
video streams are 8-bit). ``python -m kil_teleop.import_lerobot`` writes such a dataset back to
bags. Needs ``pyarrow`` and ``av`` (requirements/lerobot.txt).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader
from tqdm import tqdm

from kil_interfaces import lerobot_format as fmt
from kil_policy.data import Episode, EpisodeError, TopicConfig, find_bags, read_episode, recorded_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportConfig:
    """What to export.

    Attributes:
        task: the task string of every episode ('' = each bag's recorded task).
        fps: the action clock's rate (KIL records at 10 Hz).
        video: export the colour frames as video (the bags must have them).
        topics: the bags' topic names.
        frame_id: the base frame the poses and keypoints are in (stored in info.json).
        overwrite: replace an existing output directory.
    """

    task: str = ""
    fps: int = 10
    video: bool = True
    topics: TopicConfig = field(default_factory=TopicConfig)
    frame_id: str = "link_base"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")


@dataclass(frozen=True)
class ExportSummary:
    root: Path
    episodes: int
    frames: int
    skipped: tuple[str, ...]


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        raise SystemExit(f"export_lerobot needs pyarrow: pip install -r requirements/lerobot.txt ({error})") from None
    return pa, pq


def _fixed(values: np.ndarray, pa_type):
    """(N, D) -> a fixed-size list column (LeRobot's Sequence(length=D) feature)."""
    pa, _ = _pa()
    values = np.ascontiguousarray(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), pa_type), values.shape[1])


def write_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """(T, H, W, 3) uint8 RGB -> an AV1 (libsvtav1, yuv420p) mp4, LeRobot's default encoding.

    Raises:
        ValueError: odd height or width (yuv420p needs even sizes), naming the file.
    """
    try:
        import av
    except ImportError as error:
        raise SystemExit(
            f"export_lerobot needs av (PyAV): pip install -r requirements/lerobot.txt ({error})"
        ) from error
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration per file otherwise (errors only)
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"{path}: {width}x{height} frames; yuv420p video needs an even width and height")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        options = {"g": str(fmt.VIDEO_GOP), "crf": str(fmt.VIDEO_CRF)}
        stream = container.add_stream(fmt.VIDEO_CODEC, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, fmt.VIDEO_PIX_FMT
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _bag_topics(bag: Path) -> set[str]:
    with Reader(bag) as reader:
        return {c.topic for c in reader.connections}


def _stats(values: np.ndarray) -> dict:
    """min/max/mean/std/count over axis 0 (LeRobot's stats.json entries)."""
    values = np.asarray(values, np.float64)
    return {
        "min": values.min(0).tolist(),
        "max": values.max(0).tolist(),
        "mean": values.mean(0).tolist(),
        "std": values.std(0).tolist(),
        "count": [len(values)],
    }


def _image_stats(frames: list[np.ndarray]) -> dict:
    """Per-channel stats of [0, 1] images, shaped (3, 1, 1) as LeRobot stores them."""
    pixels = np.concatenate([f.reshape(-1, 3) for f in frames]).astype(np.float64) / 255.0
    stats = _stats(pixels)
    return {k: ([[[v]] for v in vals] if k != "count" else vals) for k, vals in stats.items()}


def _tasks_table(tasks: list[str]):
    """meta/tasks.parquet as pandas writes ``DataFrame({"task_index": ...}, index=tasks)``."""
    pa, _ = _pa()
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }  # fmt: skip
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "__index_level_0__": tasks})
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def export(bags: list[Path], out: Path, config: ExportConfig | None = None) -> ExportSummary:
    """Write the episodes of ``bags`` as a LeRobotDataset v3.0 at ``out``.

    Raises:
        FileExistsError: ``out`` exists and is not empty (without ``overwrite``).
        EpisodeError: no bag could be exported (each one's reason in the text).
        ValueError: the bags disagree on the keypoint layout or the image size, naming both.
    """
    config = config or ExportConfig()
    pa, pq = _pa()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not config.overwrite:
            raise FileExistsError(f"{out} exists and is not empty (--overwrite replaces it)")
        shutil.rmtree(out)
    episodes: list[tuple[Path, Episode, str]] = []
    skipped: list[str] = []
    for bag in tqdm(bags, desc="read bags", unit="bag", disable=len(bags) < 2):
        try:
            keypoints = config.topics.keypoints in _bag_topics(bag)
            episode = read_episode(bag, config.topics, need_keypoints=keypoints, need_images=config.video)
        except (EpisodeError, OSError, ValueError) as error:
            log.warning("skipping %s", error)
            skipped.append(f"{bag}: {error}")
            continue
        episodes.append((bag, episode, config.task or recorded_task(bag) or "task"))
    if not episodes:
        raise EpisodeError(f"no episode exported from {len(bags)} bag(s): {'; '.join(skipped) or 'no bags found'}")

    first = episodes[0][1]
    slots = None if first.layout is None else list(first.layout)
    shape = None if first.images is None else tuple(first.images.shape[1:3])
    for bag, episode, _ in episodes[1:]:
        other = None if episode.layout is None else list(episode.layout)
        if other != slots:
            raise ValueError(f"{bag}: keypoint layout {other} differs from {episodes[0][0]}'s {slots}")
        if episode.images is not None and tuple(episode.images.shape[1:3]) != shape:
            raise ValueError(f"{bag}: {episode.images.shape[1:3]} frames; {episodes[0][0]} has {shape}")
    features = fmt.features(shape, slots, config.fps)
    tasks = list(dict.fromkeys(task for _, _, task in episodes))

    rows = {"state": [], "action": [], "keypoints": [], "valid": []}
    frames_for_stats: list[np.ndarray] = []
    episode_rows = []
    index = 0
    for e, (bag, episode, task) in enumerate(tqdm(episodes, desc="write episodes", unit="episode")):
        length = len(episode)
        chunk, file = fmt.chunk_and_file(e)
        columns = {
            fmt.STATE: _fixed(episode.proprio.astype(np.float32), pa.float32()),
            fmt.ACTION: _fixed(episode.actions.astype(np.float32), pa.float32()),
        }
        rows["state"].append(episode.proprio)
        rows["action"].append(episode.actions)
        if slots:
            flat = np.where(episode.valid[..., None], episode.keypoints, 0.0).reshape(length, -1)
            columns[fmt.KEYPOINTS] = _fixed(flat.astype(np.float32), pa.float32())
            columns[fmt.KEYPOINTS_VALID] = _fixed(episode.valid.astype(bool), pa.bool_())
            rows["keypoints"].append(flat)
            rows["valid"].append(episode.valid.astype(np.float64))
        frame_index = np.arange(length)
        columns |= {
            "timestamp": pa.array((frame_index / config.fps).astype(np.float32), pa.float32()),
            "frame_index": pa.array(frame_index, pa.int64()),
            "episode_index": pa.array(np.full(length, e), pa.int64()),
            "index": pa.array(index + frame_index, pa.int64()),
            "task_index": pa.array(np.full(length, tasks.index(task)), pa.int64()),
        }
        data_path = out / fmt.DATA_PATH.format(chunk_index=chunk, file_index=file)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), data_path)
        row = {
            "episode_index": e,
            "tasks": [task],
            "length": length,
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": index,
            "dataset_to_index": index + length,
        }
        if config.video:
            write_video(out / fmt.VIDEO_PATH.format(video_key=fmt.COLOR, chunk_index=chunk, file_index=file),
                        episode.images, config.fps)  # fmt: skip
            frames_for_stats.extend(episode.images[:: max(1, length // 10)])
            row |= {
                f"videos/{fmt.COLOR}/chunk_index": chunk,
                f"videos/{fmt.COLOR}/file_index": file,
                f"videos/{fmt.COLOR}/from_timestamp": 0.0,
                f"videos/{fmt.COLOR}/to_timestamp": length / config.fps,
            }
        row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0, "source_bag": str(bag)}
        episode_rows.append(row)
        index += length

    episodes_path = out / fmt.EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episode_rows), episodes_path)
    pq.write_table(_tasks_table(tasks), out / fmt.TASKS_PATH)
    stats = {fmt.STATE: _stats(np.concatenate(rows["state"])), fmt.ACTION: _stats(np.concatenate(rows["action"]))}
    if slots:
        stats[fmt.KEYPOINTS] = _stats(np.concatenate(rows["keypoints"]))
        stats[fmt.KEYPOINTS_VALID] = _stats(np.concatenate(rows["valid"]))
    if frames_for_stats:
        stats[fmt.COLOR] = _image_stats(frames_for_stats)
    stamps = np.arange(index, dtype=np.float64)
    stats |= {"index": _stats(stamps[:, None]), "timestamp": _stats((stamps / config.fps)[:, None])}
    (out / fmt.STATS_PATH).write_text(json.dumps(stats, indent=2))
    info = fmt.info(config.fps, features, len(episodes), index, len(tasks))
    info["kil"] = {"frame_id": config.frame_id, "exported_by": "kil_policy.export_lerobot"}
    (out / fmt.INFO_PATH).write_text(json.dumps(info, indent=4))
    return ExportSummary(out, len(episodes), index, tuple(skipped))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bags", nargs="+", type=Path, help="episode bags, or directories of them")
    parser.add_argument("out", type=Path, help="the dataset directory to write")
    parser.add_argument("--task", default="", help="task string of every episode (default: each bag's task)")
    parser.add_argument("--fps", type=int, default=10, help="the action clock's rate")
    parser.add_argument("--no-video", action="store_true", help="leave the colour frames out")
    parser.add_argument("--keypoints-topic", default=TopicConfig.keypoints, help="the bags' keypoint topic")
    parser.add_argument("--frame-id", default="link_base", help="the base frame of poses and keypoints")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = ExportConfig(
        task=args.task,
        fps=args.fps,
        video=not args.no_video,
        topics=TopicConfig(keypoints=args.keypoints_topic),
        frame_id=args.frame_id,
        overwrite=args.overwrite,
    )
    bags = find_bags(args.bags)
    try:
        summary = export(bags, args.out, config)
    except (EpisodeError, FileExistsError, ValueError) as error:
        print(f"export_lerobot: {error}", file=sys.stderr)
        return 1
    print(f"wrote {summary.root}: {summary.episodes} episodes, {summary.frames} frames (LeRobotDataset v3.0)")
    for reason in summary.skipped:
        print(f"skipped {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
