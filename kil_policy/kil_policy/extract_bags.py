"""Keypoints of recorded demonstrations, extracted the way training extracts them, so that a spec
is checked before any training step.

    python -m kil_policy.extract_bags demos/ --spec spec.yaml --method instance \\
        --instance-source masks [--min-score 0.6] [--gif overlays/ --gif-bags 2] [--json]
    python -m kil_policy.extract_bags demos/ --spec spec.yaml --method track --track-init instance \\
        --instance-source masks [--redetect-every 5]

One progress bar over every frame to extract (with its ETA), then the quality table per keypoint
(``kil_policy.extraction_quality``: valid fraction, median score, share rejected by
``--min-score``, and against the simulator's ground truth where the bags carry it: median pixel
error and jumps) and one line per suspicious keypoint. The keypoints are cached beside each bag
exactly as ``kil_policy.train`` caches them (same key), so training with the same settings
extracts nothing again. ``--gif`` films the keypoints over the first bags' frames.

Exit status: 0, or 1 when a keypoint is flagged and ``--strict`` is given, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from kil_policy.data import find_bags
from kil_policy.keypoint_cache import ExtractionConfig, colour_frame_count, extract_bag_keypoints, is_cached


def overlay_gif(bag: Path, frames, config: ExtractionConfig, out: Path, every: int = 2, fps: float = 5.0) -> Path:
    """A GIF of ``frames``' keypoints (KeypointArrayData, as extracted) drawn over the bag's colour
    frames of the same stamps (every ``every``-th frame); returns its path."""
    from PIL import Image
    from rosbags.rosbag2 import Reader

    from kil_interfaces import conversion
    from kil_interfaces.typestore import kil_typestore
    from kil_perception.overlay import draw_keypoints

    by_stamp = {f.stamp_ns: f for f in frames}
    typestore = kil_typestore()
    images = []
    with Reader(bag) as reader:
        connections = [c for c in reader.connections if c.topic == config.color]
        for k, (connection, _, raw) in enumerate(reader.messages(connections=connections)):
            msg = typestore.deserialize_cdr(raw, connection.msgtype)
            found = by_stamp.get(conversion.time_to_ns(msg.header.stamp))
            if found is None or k % every:
                continue
            rgb = conversion.image_to_rgb(msg, what=f"{bag}:{config.color}")
            labels = [f"{category}.{name}" for category, name in zip(found.categories, found.names, strict=True)]
            images.append(Image.fromarray(draw_keypoints(rgb, found.uv, labels, found.categories, found.valid)))
    if not images:
        raise ValueError(f"{bag}: no colour frame on {config.color} matches an extracted keypoint frame")
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{bag.name}_keypoints.gif"
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kil_policy.extract_bags",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bags", nargs="+", type=Path, help="bag directories, or directories of bags")
    parser.add_argument("--spec", type=Path, required=True, help="keypoint spec YAML (kil_perception.annotate)")
    parser.add_argument("--method", default="image", choices=("image", "instance", "track"))
    parser.add_argument("--backend", default="effnet_lite0", help="feature backend")
    parser.add_argument("--model", default="", help="hub id or local directory of the backend's weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--instance-source", default="sam3", choices=("sam3", "masks"),
                        help="instance masks: SAM3, or the bags' recorded masks (simulation)")  # fmt: skip
    parser.add_argument("--instance-model", default="", help="SAM3 hub id or local directory")
    parser.add_argument("--tracker", default="lk", choices=("lk", "cotracker3"), help="--method track: the tracker")
    parser.add_argument(
        "--track-init", default="image", choices=("image", "instance"), help="--method track: matching that starts it"
    )
    parser.add_argument(
        "--redetect-every",
        type=int,
        default=0,
        help="--method track: every N-th frame with a lost track, matching restarts it (0: never, the paper)",
    )
    parser.add_argument(
        "--mask-guard",
        action="store_true",
        help="--method track --track-init instance: a track that leaves its object's instance mask is matched "
        "again there or moves with its object; depth read on the object (off: the paper's tracking)",
    )
    parser.add_argument("--min-score", type=float, default=0.0, help="weaker matches are invalid (0: keep all)")
    parser.add_argument("--colour", default="rgb", choices=("rgb", "luminance"))
    parser.add_argument("--feature-scale", type=float, default=1.0, help="frames resized by this before the backend")
    parser.add_argument(
        "--layout-check",
        type=float,
        default=0.0,
        help="image matching: match each object's keypoints together, keeping their reference layout, with "
        "this weight (0: each keypoint's own argmax, the paper's)",
    )
    parser.add_argument("--calibration", default="", help="extrinsics YAML (default: calibration.yaml beside a bag)")
    parser.add_argument("--mask-categories", default="", help='mask values to categories, "1:mug,2:tray"')
    parser.add_argument("--truth-topic", default="/kil/keypoints/oracle", help="ground-truth keypoints (simulation)")
    parser.add_argument("--gif", type=Path, help="write keypoint overlay GIFs here")
    parser.add_argument("--gif-bags", type=int, default=1, help="how many bags to film (--gif)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a keypoint is flagged")
    parser.add_argument("--json", action="store_true", help="print the table as one JSON object")
    args = parser.parse_args(argv)
    try:
        config = ExtractionConfig(
            spec=str(args.spec),
            method=args.method,
            backend=args.backend,
            model=args.model,
            device=args.device,
            instance_source=args.instance_source,
            instance_model=args.instance_model,
            tracker=args.tracker,
            track_init=args.track_init,
            redetect_every=args.redetect_every,
            mask_guard=args.mask_guard,
            min_score=args.min_score,
            colour=args.colour,
            feature_scale=args.feature_scale,
            layout_check=args.layout_check,
            calibration=args.calibration,
            mask_categories=args.mask_categories,
        )
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    bags = find_bags(args.bags)
    if not bags:
        parser.exit(
            2, f"error: no bags in {', '.join(map(str, args.bags))} (a bag is a directory with metadata.yaml)\n"
        )
    from kil_policy.extraction_quality import assess, format_table

    try:
        todo = {bag: colour_frame_count(bag, config.color) for bag in bags if not is_cached(bag, config)}
        episodes = []
        with tqdm(total=sum(todo.values()), desc="extract", unit="frame", dynamic_ncols=True) as bar:
            for bag in bags:
                episodes.append(extract_bag_keypoints(bag, config, on_frame=lambda: bar.update(1)))
        table, flagged = assess(bags, config, args.truth_topic, episodes)
    except (OSError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    filmed = list(zip(bags, episodes, strict=True))[: args.gif_bags] if args.gif else []
    films = [overlay_gif(bag, frames, config, args.gif) for bag, frames in filmed]
    frames = sum(len(e) for e in episodes)
    if args.json:
        rows = [vars(row) | {"label": row.label} for row in table]
        print(json.dumps({"bags": len(bags), "frames": frames, "extracted_frames": sum(todo.values()),
                          "keypoints": rows, "flags": flagged, "gifs": [str(p) for p in films]}))  # fmt: skip
    else:
        print(f"{frames} frames of {len(bags)} bags ({len(todo)} extracted now, the rest cached)")
        print(format_table(table))
        for line in flagged:
            print(f"warning: {line}")
        for path in films:
            print(f"overlay: {path}")
    return 1 if flagged and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
