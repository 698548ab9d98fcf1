"""Keypoints extracted offline from a bag's images (when it has no keypoint topic), cached beside
the bag and keyed by the bag's content and every extraction setting, so a changed spec, backend,
method or calibration re-extracts.

The cache is ``<bag>/kil_keypoints_<key>.npz`` (rosbag2 ignores files its metadata does not list).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader

from kil_interfaces import conversion
from kil_interfaces.data import KeypointArrayData
from kil_interfaces.typestore import kil_typestore
from kil_perception.pipeline import ExtractorConfig
from kil_policy.data import bag_custom_data

log = logging.getLogger(__name__)


@dataclass
class ExtractionConfig(ExtractorConfig):
    """How to extract keypoints from bags that have none: the perception settings of
    ``kil_perception.pipeline.ExtractorConfig`` (method, backend, model, device, instance and
    tracker settings; instance matching uses SAM3, or with ``instance_source: masks`` the bag's
    recorded instance masks) and:

    Attributes:
        spec: keypoint spec YAML ("" = never extract; bags must carry keypoints).
        calibration: camera extrinsics YAML; "" looks for ``calibration.yaml`` beside the bag.
        color / depth / camera_info / instance_mask: topic names.
        mask_categories: mask values to categories ("1:mug,2:tray"); "" reads the bag's
            ``instance_categories`` custom data (written by ``kil_eval.record_demos --masks``).
        slop_s: largest colour/depth stamp difference.
    """

    spec: str = ""
    calibration: str = ""
    color: str = "/camera/color/image_raw"
    depth: str = "/camera/depth/image_raw"
    camera_info: str = "/camera/color/camera_info"
    instance_mask: str = "/camera/instance_mask"
    mask_categories: str = ""
    slop_s: float = 0.02

    def __post_init__(self) -> None:
        try:
            super().__post_init__()
        except ValueError as error:
            raise ValueError(f"keypoint_extraction: {error}") from None


def _calibration_path(bag: Path, config: ExtractionConfig) -> Path:
    path = Path(config.calibration) if config.calibration else bag.parent / "calibration.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{bag}: camera extrinsics {path} not found (set keypoint_extraction.calibration)")
    return path


def is_cached(bag: str | Path, config: ExtractionConfig) -> bool:
    """The bag's keypoints for these settings are cached (nothing to extract)."""
    bag = Path(bag)
    return (bag / f"kil_keypoints_{cache_key(bag, config)}.npz").exists()


def colour_frame_count(bag: str | Path, topic: str) -> int:
    """Messages on the colour topic, from the bag's index (0 when it has no such topic)."""
    with Reader(Path(bag)) as reader:
        return sum(c.msgcount for c in reader.connections if c.topic == topic)


#: Settings added after caches were first written, with the value that changes nothing: a setting
#: at this value is left out of the cache key, so adding it did not invalidate the caches that
#: were extracted before it existed (add every new extraction setting here with its neutral value).
NEUTRAL_SETTINGS: dict[str, object] = {"redetect_every": 0, "mask_guard": False, "layout_check": 0.0}


def cache_key(bag: Path, config: ExtractionConfig) -> str:
    """Hash of the bag's metadata and data file sizes, the spec and its images, and the settings
    (those at their :data:`NEUTRAL_SETTINGS` value left out)."""
    from kil_perception.spec import load_spec

    digest = hashlib.sha256()
    digest.update((bag / "metadata.yaml").read_bytes())
    for data_file in sorted(bag.glob("*.mcap")) + sorted(bag.glob("*.db3")):
        digest.update(f"{data_file.name}:{data_file.stat().st_size}".encode())
    spec = load_spec(config.spec)
    digest.update(Path(config.spec).read_bytes())
    for category in spec.categories:
        for reference in category.references:
            digest.update(reference.image_path.read_bytes())
    digest.update(_calibration_path(bag, config).read_bytes())
    settings = {
        k: v
        for k, v in asdict(config).items()
        if k not in ("spec", "calibration", "device") and not (k in NEUTRAL_SETTINGS and v == NEUTRAL_SETTINGS[k])
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def extract_bag_keypoints(
    bag: str | Path, config: ExtractionConfig, on_frame: Callable[[], None] | None = None
) -> list[KeypointArrayData]:
    """Keypoint frames of a bag, from the cache or extracted (and then cached); ``on_frame`` is
    called after each extracted frame (a progress bar)."""
    from kil_interfaces.calibration import load_extrinsics
    from kil_perception.extraction import keypoints_message
    from kil_perception.instances import SimulatorMasks, parse_mask_categories
    from kil_perception.lifting import depth_in_metres
    from kil_perception.pipeline import build_extractor
    from kil_perception.spec import load_spec
    from kil_perception.synchronization import LatestPairSynchronizer

    bag = Path(bag)
    cache = bag / f"kil_keypoints_{cache_key(bag, config)}.npz"
    spec = load_spec(config.spec)
    layout = spec.layout()
    if cache.exists():
        return _frames_from_npz(np.load(cache), layout, config)
    extrinsics = load_extrinsics(_calibration_path(bag, config))
    frame_masks: dict[int, np.ndarray] = {}  # stamp -> object-index map, the newest few
    current: list = [None]
    extractor = build_extractor(spec, config, SimulatorMasks(lambda: current[0]))
    typestore = kil_typestore()
    sync = LatestPairSynchronizer(round(config.slop_s * 1e9), history=20)
    intrinsics = None
    frames = []
    with Reader(bag) as reader:
        wanted = {config.color, config.depth, config.camera_info}
        categories = {}
        if config.uses_given_masks:
            wanted.add(config.instance_mask)
            text = config.mask_categories or str(bag_custom_data(bag).get("instance_categories", ""))
            if not text:
                raise ValueError(f"{bag}: instance masks need their categories (keypoint_extraction.mask_categories)")
            categories = parse_mask_categories(text)
        missing = wanted - {c.topic for c in reader.connections}
        if missing:
            raise ValueError(f"{bag}: cannot extract keypoints, topic(s) {', '.join(sorted(missing))} missing")
        for connection, _, raw in reader.messages([c for c in reader.connections if c.topic in wanted]):
            msg = typestore.deserialize_cdr(raw, connection.msgtype)
            stamp = conversion.time_to_ns(msg.header.stamp)
            if connection.topic == config.camera_info:
                intrinsics = conversion.camera_info_from_msg(msg, what=f"{bag}:{config.camera_info}")
            elif connection.topic == config.instance_mask:
                frame_masks[stamp] = conversion.image_to_numpy(msg, what=f"{bag}:{config.instance_mask}").astype(int)
                for old in sorted(frame_masks)[:-20]:
                    del frame_masks[old]
            else:
                (sync.add_color if connection.topic == config.color else sync.add_depth)(stamp, msg)
            # Pairs wait in the synchroniser until the first CameraInfo has been read.
            pair = sync.pop_newest() if intrinsics is not None else None
            if pair is None:
                continue
            if config.uses_given_masks:
                if pair.stamp_ns not in frame_masks:
                    log.warning("%s: no %s at %d; frame skipped", bag, config.instance_mask, pair.stamp_ns)
                    continue
                current[0] = (frame_masks[pair.stamp_ns], categories)
            rgb = conversion.image_to_rgb(pair.color, what=f"{bag}:{config.color}")
            depth = depth_in_metres(
                conversion.image_to_numpy(pair.depth, what=f"{bag}:{config.depth}"), pair.depth.encoding
            )
            found = extractor.extract(rgb)
            frames.append(
                keypoints_message(
                    spec, found, depth, intrinsics, extrinsics, pair.stamp_ns, config.method, config.backend
                )
            )
            if on_frame is not None:
                on_frame()
    if not frames:
        raise ValueError(f"{bag}: no colour/depth pair within {config.slop_s} s to extract keypoints from")
    arrays = {
        "stamps": np.array([f.stamp_ns for f in frames], np.int64),
        "points": np.stack([f.points for f in frames]),
        "valid": np.stack([f.valid for f in frames]),
        "uv": np.stack([f.uv for f in frames]),
        "scores": np.stack([f.scores for f in frames]),
        "frame_id": np.array(frames[0].frame_id),
    }
    if all(f.similarities is not None for f in frames):
        arrays["similarities"] = np.stack([f.similarities for f in frames])
    staged = cache.with_name(f".{cache.stem}.partial.npz")
    np.savez_compressed(staged, **arrays)
    staged.replace(cache)  # a reader sees the whole cache or none
    log.info("%s: extracted keypoints of %d frames (cached in %s)", bag, len(frames), cache.name)
    return frames


def _frames_from_npz(data, layout, config: ExtractionConfig) -> list[KeypointArrayData]:
    """The cached frames, every field as extracted (similarities included when there were any)."""
    count = len(data["stamps"])
    similarities = data["similarities"] if "similarities" in data.files else [None] * count
    return [
        KeypointArrayData(
            stamp_ns=int(stamp),
            frame_id=str(data["frame_id"]),
            method=config.method,
            backend=config.backend,
            names=tuple(n for _, _, n in layout),
            categories=tuple(c for c, _, _ in layout),
            instances=np.array([i for _, i, _ in layout], np.uint8),
            uv=uv,
            points=points,
            scores=scores,
            valid=valid,
            similarities=sims,
        )
        for stamp, points, valid, uv, scores, sims in zip(
            data["stamps"], data["points"], data["valid"], data["uv"], data["scores"], similarities, strict=True
        )
    ]


def bag_keypoints(bag: str | Path, topic: str) -> list[KeypointArrayData]:
    """Every KeypointArray recorded on ``topic`` in a bag (e.g. the simulator's ground truth on
    ``/kil/keypoints/oracle``), in stamp order; [] when the bag has no such topic."""
    bag = Path(bag)
    typestore = kil_typestore()
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            return []
        frames = [
            conversion.keypoints_from_msg(typestore.deserialize_cdr(raw, c.msgtype), what=f"{bag}:{topic}")
            for c, _, raw in reader.messages(connections=connections)
        ]
    return sorted(frames, key=lambda f: f.stamp_ns)
