"""Demonstrations from rosbag2 episodes, resampled onto the 10 Hz action clock (the one reader).

One bag = one episode (MCAP, or sqlite3 for Humble users), read with ``rosbags`` (no ROS needed).
The action clock is the sequence of recorded action commands (``/kil/action_chunk``, one pose
per 10 Hz tick from teleoperation): step k's action is that command's first target; its
observation is the newest robot state and keypoint message at or before the command's time.

Problems with one bag (unreadable, truncated, a required topic missing, too short) are reported
by file name and the bag is skipped; :func:`load_episodes` raises when nothing usable remains.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from rosbags.rosbag2 import Reader
from torch.utils.data import Dataset
from tqdm import tqdm

from kil_interfaces import conversion
from kil_interfaces.keypoint_layout import Layout, layout_of_message
from kil_interfaces.representation import action_from_pose, proprio_from_pose
from kil_interfaces.typestore import kil_typestore
from kil_policy.policy import BatchKeys

log = logging.getLogger(__name__)


@dataclass
class TopicConfig:
    """Topic names read from the bags (all configurable).

    Attributes:
        action: the 10 Hz action commands (ActionChunk; the action clock).
        robot_state: proprioception (RobotState).
        keypoints: recorded keypoints (KeypointArray; e.g. /kil/keypoints/oracle for the
            simulator's ground truth).
        color: colour frames (the RGB baseline; keypoint extraction has its own topics).
        depth / instance_mask: depth images and instance masks (the S2 baseline).
    """

    action: str = "/kil/action_chunk"
    robot_state: str = "/kil/robot_state"
    keypoints: str = "/kil/keypoints"
    color: str = "/camera/color/image_raw"
    depth: str = "/camera/depth/image_raw"
    instance_mask: str = "/camera/instance_mask"


@dataclass
class Episode:
    """One demonstration on the 10 Hz action clock (T steps).

    Attributes:
        name: the bag's path.
        times_ns: (T,) command times.
        actions: (T, 10). proprio: (T, 7), or (T, 10) with the 6-D rotation
            (``read_episode(proprio_rotation=...)``).
        keypoints: (T, K, 3) base-frame positions (m), zero where invalid, or None.
        valid: (T, K) bool, or None. similarities: (T, K, K) or None.
        images: (T, H, W, 3) uint8 colour frames, or (T, H, W, 2) S2 frames (mask, relative depth;
            ``kil_policy.s2_observation``), only when requested; else None.
        layout: the keypoints' (category, instance, name) slots, or None.
    """

    name: str
    times_ns: np.ndarray
    actions: np.ndarray
    proprio: np.ndarray
    keypoints: np.ndarray | None = None
    valid: np.ndarray | None = None
    similarities: np.ndarray | None = None
    images: np.ndarray | None = None
    layout: Layout | None = None

    def __len__(self) -> int:
        return len(self.times_ns)


class EpisodeError(ValueError):
    """A bag cannot be used as an episode; the text names the file and the reason."""


def _latest_indices(sources_ns: np.ndarray, times_ns: np.ndarray) -> np.ndarray:
    """Index of the newest source stamp at or before each time (-1 when none)."""
    return np.searchsorted(sources_ns, times_ns, side="right") - 1


def read_episode(
    path: str | Path,
    topics: TopicConfig | None = None,
    need_keypoints: bool = True,
    need_images: bool = False,
    image_size: tuple[int, int] | None = None,
    max_age_s: float = 0.5,
    extraction=None,
    s2_categories: tuple[str, ...] = (),
    proprio_rotation: str = "euler",
) -> Episode:
    """Read one bag onto the action clock.

    Args:
        path: the bag directory.
        topics: topic names.
        need_keypoints / need_images: the topics that must be present (images: colour frames, or
            S2 frames when ``s2_categories`` is given).
        image_size: resize colour frames to (H, W) (nearest pixel) when reading them.
        max_age_s: a step whose newest observation is older than this is dropped (start of
            the episode) ; keypoints older than this are marked invalid.
        extraction: ``keypoint_cache.ExtractionConfig``; when its spec is set and the bag has no
            keypoint topic, keypoints are extracted from the images (and cached beside the bag).
        s2_categories: S2's object categories: the images are S2 frames built from the depth and
            instance-mask topics (the mask values' categories from the bag's
            ``instance_categories`` custom data, as ``kil_eval.record_demos --masks`` writes it).
        proprio_rotation: the proprioception's orientation encoding, "euler" or "rot6d"
            (``kil_interfaces.representation.proprio_from_pose``).

    Raises:
        EpisodeError: naming the bag: unreadable, truncated, or a required topic missing.
    """
    path = Path(path)
    topics = topics or TopicConfig()
    typestore = kil_typestore()
    wanted = {topics.action, topics.robot_state}
    if need_keypoints:
        wanted.add(topics.keypoints)
    s2 = need_images and bool(s2_categories)
    if need_images:
        wanted |= {topics.depth, topics.instance_mask} if s2 else {topics.color}
    can_extract = need_keypoints and extraction is not None and bool(extraction.spec)
    extract = False
    try:
        with Reader(path) as reader:
            present = {c.topic for c in reader.connections}
            if can_extract and topics.keypoints not in present:  # extracted from the images instead
                extract = True
                wanted.discard(topics.keypoints)
            data: dict[str, list] = {topic: [] for topic in wanted}
            missing = sorted(wanted - present)
            if missing:
                raise EpisodeError(
                    f"{path}: required topic(s) {', '.join(missing)} missing (has {', '.join(sorted(present))})"
                )
            connections = [c for c in reader.connections if c.topic in wanted]
            for connection, stamp, raw in reader.messages(connections=connections):
                msg = typestore.deserialize_cdr(raw, connection.msgtype)
                data[connection.topic].append((stamp, msg))
    except EpisodeError:
        raise
    except Exception as error:  # rosbags raises many kinds for damaged files
        raise EpisodeError(f"{path}: unreadable bag ({type(error).__name__}: {error})") from None
    if not data[topics.action]:
        raise EpisodeError(f"{path}: no messages on {topics.action}")
    chunks = [conversion.action_chunk_from_msg(m, what=f"{path}:{topics.action}") for _, m in data[topics.action]]
    times = np.array([stamp for stamp, _ in data[topics.action]], np.int64)
    order = np.argsort(times, kind="stable")
    times, chunks = times[order], [chunks[i] for i in order]
    actions = action_from_pose(
        np.stack([c.positions[0] for c in chunks]),
        np.stack([c.quaternions[0] for c in chunks]),
        np.array([c.gripper[0] for c in chunks]),
    )
    states = [
        conversion.robot_state_from_msg(m, what=f"{path}:{topics.robot_state}") for _, m in data[topics.robot_state]
    ]
    state_times = np.array([s.stamp_ns for s in states], np.int64) if states else np.zeros(0, np.int64)
    state_order = np.argsort(state_times, kind="stable")
    state_times = state_times[state_order]
    states = [states[i] for i in state_order]
    index = _latest_indices(state_times, times)
    max_age_ns = round(max_age_s * 1e9)
    keep = (
        (index >= 0) & (times - state_times[np.maximum(index, 0)] <= max_age_ns)
        if len(states)
        else np.zeros(len(times), bool)
    )
    if not keep.any():
        raise EpisodeError(f"{path}: no {topics.robot_state} message within {max_age_s} s of any action")
    times, actions, index = times[keep], actions[keep], index[keep]
    proprio = proprio_from_pose(
        np.stack([states[i].position for i in index]),
        np.stack([states[i].quaternion for i in index]),
        np.array([states[i].gripper for i in index]),
        proprio_rotation,
    )
    episode = Episode(str(path), times, actions, proprio)
    if need_keypoints:
        if extract:
            from kil_policy.keypoint_cache import extract_bag_keypoints

            try:
                frames = extract_bag_keypoints(path, extraction)
            except (ValueError, FileNotFoundError) as error:
                raise EpisodeError(str(error)) from None
        else:
            frames = [
                conversion.keypoints_from_msg(m, what=f"{path}:{topics.keypoints}") for _, m in data[topics.keypoints]
            ]
        _attach_keypoints(episode, frames, path, topics.keypoints, max_age_ns)
    if s2:
        mask_text = str(bag_custom_data(path).get("instance_categories", ""))
        _attach_s2(episode, data, topics, path, image_size, mask_text, s2_categories)
    elif need_images:
        _attach_images(episode, data[topics.color], path, topics.color, image_size)
    return episode


def _attach_keypoints(episode: Episode, frames: list, path: Path, topic: str, max_age_ns: int) -> None:
    if not frames:
        raise EpisodeError(f"{path}: no messages on {topic}")
    counts = {f.num_keypoints for f in frames}
    if len(counts) != 1:
        raise EpisodeError(f"{path}: {topic} keypoint count changes within the episode ({sorted(counts)})")
    layouts = {layout_of_message(f) for f in frames}
    if len(layouts) != 1:
        raise EpisodeError(f"{path}: {topic} keypoint layout changes within the episode")
    episode.layout = layouts.pop()
    stamps = np.array([f.stamp_ns for f in frames], np.int64)
    order = np.argsort(stamps, kind="stable")
    stamps, frames = stamps[order], [frames[i] for i in order]
    index = _latest_indices(stamps, episode.times_ns)
    fresh = (index >= 0) & (episode.times_ns - stamps[np.maximum(index, 0)] <= max_age_ns)
    k = frames[0].num_keypoints
    episode.keypoints = np.zeros((len(episode), k, 3))
    episode.valid = np.zeros((len(episode), k), bool)
    has_similarities = all(f.similarities is not None for f in frames)
    episode.similarities = np.zeros((len(episode), k, k), np.float32) if has_similarities else None
    for step, (i, ok) in enumerate(zip(index, fresh, strict=True)):
        if not ok:
            continue
        frame = frames[i]
        episode.valid[step] = frame.valid
        episode.keypoints[step] = np.where(frame.valid[:, None], frame.points, 0.0)
        if has_similarities:
            episode.similarities[step] = frame.similarities


def _attach_images(episode: Episode, messages: list, path: Path, topic: str, size: tuple[int, int] | None) -> None:
    if not messages:
        raise EpisodeError(f"{path}: no messages on {topic}")
    stamps = np.array([stamp for stamp, _ in messages], np.int64)
    index = np.maximum(_latest_indices(stamps, episode.times_ns), 0)
    images = []
    for i in index:
        image = conversion.image_to_rgb(messages[i][1], what=f"{path}:{topic}")
        images.append(resize_nearest(image, size) if size is not None else image)
    episode.images = np.stack(images)


def _attach_s2(episode, data, topics, path: Path, size, mask_text: str, s2_categories: tuple[str, ...]) -> None:
    """S2 frames at each action step from the newest depth image and instance mask."""
    from kil_perception.instances import parse_mask_categories
    from kil_perception.lifting import depth_in_metres
    from kil_policy.s2_observation import s2_frame, task_mask

    if not mask_text:
        raise EpisodeError(
            f"{path}: S2 needs the instance masks' categories (custom data instance_categories, written by "
            "kil_eval.record_demos --masks)"
        )
    try:
        categories = parse_mask_categories(mask_text)
    except ValueError as error:
        raise EpisodeError(f"{path}: instance_categories: {error}") from None
    missing = sorted(set(s2_categories) - set(categories.values()))
    if missing:
        raise EpisodeError(
            f"{path}: S2 mask categories {', '.join(missing)} are not in the bag's masks "
            f"({', '.join(sorted(set(categories.values())))})"
        )
    streams = {}
    for topic in (topics.depth, topics.instance_mask):
        if not data[topic]:
            raise EpisodeError(f"{path}: no messages on {topic}")
        streams[topic] = (np.array([stamp for stamp, _ in data[topic]], np.int64), data[topic])
    frames, cache = [], {}
    for time_ns in episode.times_ns:
        picked = []
        for topic in (topics.depth, topics.instance_mask):
            stamps = streams[topic][0]
            picked.append(int(max(_latest_indices(stamps, np.array([time_ns]))[0], 0)))
        key = tuple(picked)
        if key not in cache:
            depth_msg = streams[topics.depth][1][picked[0]][1]
            mask_msg = streams[topics.instance_mask][1][picked[1]][1]
            depth = depth_in_metres(
                conversion.image_to_numpy(depth_msg, what=f"{path}:{topics.depth}"), depth_msg.encoding
            )
            index_map = conversion.image_to_numpy(mask_msg, what=f"{path}:{topics.instance_mask}")
            if index_map.shape[:2] != depth.shape:
                raise EpisodeError(
                    f"{path}: {topics.instance_mask} is {index_map.shape[1]}x{index_map.shape[0]}, "
                    f"{topics.depth} {depth.shape[1]}x{depth.shape[0]}"
                )
            frame = s2_frame(task_mask(index_map, categories, s2_categories), depth)
            cache[key] = resize_nearest(frame, size) if size is not None else frame
        frames.append(cache[key])
    episode.images = np.stack(frames)


def resize_nearest(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, C) -> (size[0], size[1], C) by nearest pixel: how the RGB baseline's frames are
    shrunk, in training and at inference alike."""
    rows = np.linspace(0, image.shape[0] - 1, size[0]).round().astype(int)
    cols = np.linspace(0, image.shape[1] - 1, size[1]).round().astype(int)
    return np.ascontiguousarray(image[rows][:, cols])


def bag_custom_data(bag: Path) -> dict:
    """A bag's ``custom_data`` from its ``metadata.yaml`` ({} when there is none or the file is
    unreadable: ``read_episode`` reports that)."""
    try:
        info = yaml.safe_load((Path(bag) / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        custom = info.get("custom_data") or {}
        return dict(custom) if isinstance(custom, dict) else {}
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return {}


def recorded_task(bag: Path) -> str:
    """The task name a bag was recorded for (its ``custom_data.task``; '' when none is stored)."""
    return str(bag_custom_data(bag).get("task", ""))


def find_bags(paths: list[str | Path]) -> list[Path]:
    """The bags among ``paths``: each a bag directory, or a directory whose sub-directories are
    bags (hidden ones skipped); anything else is skipped with a warning naming it."""
    bags: list[Path] = []
    for path in map(Path, paths):
        if (path / "metadata.yaml").exists():
            bags.append(path)
        elif path.is_dir():
            bags += sorted(p.parent for p in path.glob("*/metadata.yaml") if not p.parent.name.startswith("."))
        else:
            log.warning("%s: not a bag or a directory of bags; skipped", path)
    return bags


def load_episodes(
    paths: list[str | Path], min_length: int, topics: TopicConfig | None = None, task: str = "", **kwargs
) -> list[Episode]:
    """Read every bag (directories are searched for bags); skip, with a warning naming the file,
    those that fail, are shorter than ``min_length`` steps or (with ``task``) were recorded for
    another task (a bag storing no task name is accepted).

    Raises:
        EpisodeError: when no usable episode remains.
    """
    bags = find_bags(paths)
    episodes, skipped = [], []
    extraction = kwargs.get("extraction")
    extracting = kwargs.get("need_keypoints", True) and extraction is not None and bool(extraction.spec)
    desc = "extract keypoints" if extracting else "read bags"  # (cached extractions are read back)
    for bag in tqdm(bags, desc=desc, unit="bag", leave=False, disable=len(bags) < 2):
        other = recorded_task(bag) if task else ""
        if other and other != task:
            message = f"{bag}: recorded for task {other!r}, not {task!r}"
            log.warning("skipping %s", message)
            skipped.append(message)
            continue
        try:
            episode = read_episode(bag, topics, **kwargs)
        except EpisodeError as error:
            log.warning("skipping %s", error)
            skipped.append(str(error))
            continue
        if len(episode) < min_length:
            message = f"{bag}: {len(episode)} steps, shorter than the horizon {min_length}"
            log.warning("skipping %s", message)
            skipped.append(message)
            continue
        episodes.append(episode)
    if not episodes:
        detail = "; ".join(skipped) if skipped else "no bags found"
        raise EpisodeError(f"no usable episodes in {', '.join(map(str, paths))}: {detail}")
    return episodes


@dataclass
class WindowDataset(Dataset):
    """Training windows: observation history and action horizon around each step.

    Step i gives observations at i - n_obs + 1 .. i (the first repeated before the start) and
    actions at i - n_obs + 1 .. i - n_obs + horizon (the last repeated past the end, flagged in
    ``action_is_pad``).
    """

    episodes: list[Episode]
    n_obs_steps: int
    horizon: int
    use_keypoints: bool = True
    use_images: bool = False
    index: list[tuple[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.index = [(e, i) for e, episode in enumerate(self.episodes) for i in range(len(episode))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        e, i = self.index[item]
        episode = self.episodes[e]
        n = len(episode)
        obs = np.clip(np.arange(i - self.n_obs_steps + 1, i + 1), 0, n - 1)
        act = np.arange(i - self.n_obs_steps + 1, i - self.n_obs_steps + 1 + self.horizon)
        pad = act >= n
        act = np.clip(act, 0, n - 1)
        sample = {
            BatchKeys.PROPRIO: torch.from_numpy(episode.proprio[obs]).float(),
            BatchKeys.ACTION: torch.from_numpy(episode.actions[act]).float(),
            BatchKeys.ACTION_IS_PAD: torch.from_numpy(pad),
        }
        if self.use_keypoints:
            sample[BatchKeys.KEYPOINTS] = torch.from_numpy(episode.keypoints[obs]).float()
            sample[BatchKeys.VALID] = torch.from_numpy(episode.valid[obs])
            if episode.similarities is not None:
                sample[BatchKeys.SIMILARITIES] = torch.from_numpy(episode.similarities[obs]).float()
        if self.use_images:
            sample[BatchKeys.IMAGE] = torch.from_numpy(episode.images[obs]).permute(0, 3, 1, 2).float() / 255.0
        return sample


class TensorWindows:
    """The windows of :class:`WindowDataset`, gathered a whole batch at a time from tensors held
    on one device (the 50 demonstrations of a task are megabytes: on a GPU they stay resident,
    and a batch is a few index operations instead of B Python calls and a collate).

    ``batch(indices)`` equals ``default_collate([dataset[i] for i in indices])`` of the
    :class:`WindowDataset` built from the same episodes (tested).
    """

    def __init__(
        self,
        episodes: list[Episode],
        n_obs_steps: int,
        horizon: int,
        use_keypoints: bool = True,
        use_images: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        obs, act, pad = [], [], []
        offset = 0
        for episode in episodes:
            n = len(episode)
            steps = np.arange(n)[:, None]
            obs.append(np.clip(steps + np.arange(-n_obs_steps + 1, 1), 0, n - 1) + offset)
            window = steps + np.arange(-n_obs_steps + 1, -n_obs_steps + 1 + horizon)
            pad.append(window >= n)
            act.append(np.clip(window, 0, n - 1) + offset)
            offset += n
        self.device = torch.device(device)
        self.obs_index = torch.from_numpy(np.concatenate(obs)).to(self.device)  # (W, n_obs)
        self.action_index = torch.from_numpy(np.concatenate(act)).to(self.device)  # (W, horizon)
        self.action_is_pad = torch.from_numpy(np.concatenate(pad)).to(self.device)  # (W, horizon)

        def stack(name: str, dtype=torch.float32) -> torch.Tensor:
            values = np.concatenate([getattr(e, name) for e in episodes])
            return torch.from_numpy(values).to(self.device, dtype)

        self.data = {BatchKeys.PROPRIO: stack("proprio"), BatchKeys.ACTION: stack("actions")}
        if use_keypoints:
            self.data[BatchKeys.KEYPOINTS] = stack("keypoints")
            self.data[BatchKeys.VALID] = stack("valid", torch.bool)
            if all(e.similarities is not None for e in episodes):
                self.data[BatchKeys.SIMILARITIES] = stack("similarities")
        if use_images:
            self.data[BatchKeys.IMAGE] = stack("images", torch.uint8)  # (N, H, W, 3), scaled per batch

    def __len__(self) -> int:
        return len(self.obs_index)

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        """Windows ``indices`` (B,) -> the batch (shapes as in ``kil_policy.policy``), on ``device``."""
        indices = indices.to(self.device)
        obs, act = self.obs_index[indices], self.action_index[indices]
        out = {
            BatchKeys.PROPRIO: self.data[BatchKeys.PROPRIO][obs],
            BatchKeys.ACTION: self.data[BatchKeys.ACTION][act],
            BatchKeys.ACTION_IS_PAD: self.action_is_pad[indices],
        }
        for key in (BatchKeys.KEYPOINTS, BatchKeys.VALID, BatchKeys.SIMILARITIES):
            if key in self.data:
                out[key] = self.data[key][obs]
        if BatchKeys.IMAGE in self.data:
            out[BatchKeys.IMAGE] = self.data[BatchKeys.IMAGE][obs].permute(0, 1, 4, 2, 3).float() / 255.0
        if BatchKeys.IMAGE_FEATURES in self.data:
            out[BatchKeys.IMAGE_FEATURES] = self.data[BatchKeys.IMAGE_FEATURES][obs].float()
        return out

    @torch.no_grad()
    def cache_image_features(self, trunk, chunk: int = 64, progress: bool = True) -> None:
        """Replace the frames by ``trunk``'s features of them, computed once (a frozen encoder
        trunk: ``FrozenTrunkEncoder.trunk_features``, (N, C, H, W) in [0, 1] -> (N, F, h, w));
        stored as float16 (the demo's 50 place_mug demonstrations: about 100 MB)."""
        frames = self.data.pop(BatchKeys.IMAGE)  # (N, H, W, C) uint8
        out = []
        for start in tqdm(range(0, len(frames), chunk), desc="image features", unit="chunk", disable=not progress):
            images = frames[start : start + chunk].permute(0, 3, 1, 2).float() / 255.0
            out.append(trunk(images).to(torch.float16))
        self.data[BatchKeys.IMAGE_FEATURES] = torch.cat(out)
