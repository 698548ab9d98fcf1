"""Keypoint accuracy against ground truth: pixel error and PCK at 5/10/20 px per backend and method.

    python -m kil_eval.perception_dataset --task place_mug --out datasets/place_mug   # simulator ground truth
    python -m kil_perception.evaluate --data datasets/place_mug --backends effnet_lite0 classic --json

A dataset directory holds ``dataset.yaml`` (a reference image with annotated keypoints; frames
with their visible ground-truth keypoints, and optionally instance masks as 16-bit PNGs with a
value -> category map), so real annotated images work the same way as the simulator's. Methods:
``image`` (image matching), ``instance`` (matching inside the dataset's instance masks) and
``track`` (instance matching on a sequence's first frame, then Lucas-Kanade, reset per
sequence). Frames that belong to a sequence (``sequence``: name, in time order) are scored in
rows of their own ("<setting> seq"), for every method, so the three compare on the same frames;
tracking is scored on sequence frames only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import yaml

from kil_perception.images import read_rgb
from kil_perception.instances import SimulatorMasks
from kil_perception.pipeline import METHODS, ExtractorConfig, build_extractor
from kil_perception.spec import Category, KeypointSpec, Reference

THRESHOLDS = (5, 10, 20)


def evaluate(
    data: Path, backend_name: str, method: str = "image", per_keypoint: bool = False, feature_scale: float = 1.0
) -> list[dict]:
    """Score one dataset x backend x method; one row per setting (``per_keypoint``: one row per
    setting and keypoint, so that one badly found keypoint cannot hide in the others' median).
    ``feature_scale``: frames resized by this before the backend (``ExtractorConfig``)."""
    content = yaml.safe_load((data / "dataset.yaml").read_text())
    category = content["category"]
    reference = content["reference"]
    names = tuple(reference["keypoints"])
    spec = KeypointSpec(
        None,
        (
            Category(
                category,
                category,
                1,
                (Reference(data / reference["image"], {k: tuple(v) for k, v in reference["keypoints"].items()}),),
            ),
        ),
    )
    config = ExtractorConfig(
        method=method,
        backend=backend_name,
        instance_source="masks",
        track_init="instance",
        feature_scale=feature_scale,
    )
    frames = content["frames"]
    if method == "track":
        frames = [f for f in frames if f.get("sequence")]
        if not frames:
            raise ValueError(f"{data}: no sequences to track (write the dataset with --sequences N)")
    current: dict = {}
    matcher = build_extractor(spec, config, SimulatorMasks(lambda: (current["mask"], current["instances"])))
    errors: dict[str, list[float]] = {}
    sequence = None
    for frame in frames:
        if method == "track" and frame["sequence"] != sequence:
            matcher.reset()
            sequence = frame["sequence"]
        if method != "image":
            current["mask"] = cv2.imread(str(data / frame["mask"]), cv2.IMREAD_UNCHANGED).astype(np.int32)
            current["instances"] = {int(k): v for k, v in frame["instances"].items()}
        found = matcher.extract(read_rgb(data / frame["image"]))
        setting = frame["setting"] + (" seq" if frame.get("sequence") else "")
        for i, name in enumerate(names):
            if name in frame["keypoints"]:
                error = float(np.linalg.norm(found.uv[i] - np.asarray(frame["keypoints"][name])))
                errors.setdefault((setting, name if per_keypoint else ""), []).append(error)
    rows = []
    for (setting, keypoint), values in errors.items():
        e = np.array(values)
        rows.append(
            {
                "task": content.get("task", data.name),
                "backend": backend_name,
                "method": method,
                "feature_scale": feature_scale,
                "setting": setting,
                "keypoints": [keypoint] if keypoint else list(names),
                "scored": len(values),
                "median_px": round(float(np.median(e)), 1) if values else None,
                "mean_px": round(float(e.mean()), 1) if values else None,
                **{f"pck@{t}": round(float((e <= t).mean()), 3) if values else None for t in THRESHOLDS},
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_perception.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="dataset directories")
    parser.add_argument("--backends", nargs="+", default=["effnet_lite0", "classic"])
    parser.add_argument("--methods", nargs="+", default=["image", "instance"], choices=METHODS)
    parser.add_argument("--per-keypoint", action="store_true", help="one row per setting and keypoint")
    parser.add_argument("--feature-scale", type=float, default=1.0, help="frames resized by this before the backend")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        rows = [
            row
            for d in args.data
            for b in args.backends
            for m in args.methods
            for row in evaluate(d, b, m, args.per_keypoint, args.feature_scale)
        ]
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    if args.json:
        print(json.dumps({"results": rows}))
        return 0
    header = ("task", "backend", "method", "setting", "keypoint", "n", "median", "PCK@5", "@10", "@20")
    print("{:14s} {:13s} {:9s} {:16s} {:12s} {:>4s} {:>7s} {:>6s} {:>6s} {:>6s}".format(*header))
    for r in rows:
        keypoint = r["keypoints"][0] if args.per_keypoint else "all"
        print(
            f"{r['task']:14s} {r['backend']:13s} {r['method']:9s} {r['setting']:16s} {keypoint:12s} {r['scored']:4d} "
            f"{r['median_px']!s:>7s} {r['pck@5']!s:>6s} {r['pck@10']!s:>6s} {r['pck@20']!s:>6s}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
