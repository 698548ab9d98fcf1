"""Keypoints of one image, the quickest way to check a spec.

    python -m kil_perception.extract --spec spec.yaml --image frame.png [--depth depth.png
        --camera-info camera_info.yaml --extrinsics calibration.yaml] --method image
        --backend effnet_lite0 --json [--overlay overlay.png]

``--method instance`` matches inside SAM3 instance masks (``--instance-model``: hub id or local
folder of SAM3; the spec's prompts are the text queries).

Depth: a 16-bit PNG in millimetres (0 = no return) or a .npy array in metres. Camera info: the
ROS camera-calibration YAML. Extrinsics: the calibration YAML (camera optical frame -> base);
without it points stay in the camera's optical frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from kil_interfaces.calibration import CalibrationError, load_extrinsics, load_intrinsics
from kil_perception.backends import BACKENDS, WeightsUnavailableError
from kil_perception.extraction import keypoints_message
from kil_perception.images import read_rgb
from kil_perception.lifting import depth_in_metres
from kil_perception.overlay import draw_keypoints
from kil_perception.pipeline import ExtractorConfig, build_extractor
from kil_perception.spec import SpecError, load_spec

METHODS = ("image", "instance")  # (tracking needs a video: keypoint_node, or the policy's offline extraction)


def read_depth(path: Path) -> np.ndarray:
    """Depth in metres (NaN = no return) from a 16-bit PNG (mm) or a .npy (m)."""
    if path.suffix == ".npy":
        return depth_in_metres(np.load(path).astype(np.float32), "32FC1")
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None or depth.dtype != np.uint16 or depth.ndim != 2:
        raise SystemExit(f"error: {path}: expected a single-channel 16-bit PNG in millimetres")
    return depth_in_metres(depth, "16UC1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_perception.extract", description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--depth", type=Path)
    parser.add_argument("--camera-info", type=Path)
    parser.add_argument("--extrinsics", type=Path)
    parser.add_argument("--method", choices=METHODS, default="image")
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="effnet_lite0")
    parser.add_argument("--model", help="hub id or local directory of the foundation-model backend")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--instance-model", default="", help="SAM3 hub id or local directory (--method instance)")
    parser.add_argument("--instance-threshold", type=float, default=0.3, help="minimum SAM3 instance confidence")
    parser.add_argument("--json", action="store_true", help="print the keypoints as JSON")
    parser.add_argument("--overlay", type=Path, help="write the image with the keypoints drawn")
    args = parser.parse_args(argv)
    if args.depth and not args.camera_info:
        parser.error("--depth needs --camera-info to lift keypoints to 3-D")
    try:
        spec = load_spec(args.spec)
        intrinsics = load_intrinsics(args.camera_info) if args.camera_info else None
        extrinsics = load_extrinsics(args.extrinsics) if args.extrinsics else None
        config = ExtractorConfig(
            method=args.method,
            backend=args.backend,
            model=args.model or "",
            device=args.device,
            instance_model=args.instance_model,
            instance_threshold=args.instance_threshold,
        )
        matcher = build_extractor(spec, config)
    except (SpecError, CalibrationError, WeightsUnavailableError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    try:
        rgb = read_rgb(args.image)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    depth = read_depth(args.depth) if args.depth else None
    if depth is not None and depth.shape != rgb.shape[:2]:
        raise SystemExit(f"error: depth {depth.shape[::-1]} and image {rgb.shape[1::-1]} sizes differ")
    started = time.perf_counter()
    found = matcher.extract(rgb)
    result = keypoints_message(spec, found, depth, intrinsics, extrinsics, 0, args.method, args.backend, started)
    if args.overlay:
        image = draw_keypoints(
            rgb, result.uv, result.names, result.categories, result.valid if depth is not None else None
        )
        cv2.imwrite(str(args.overlay), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    keypoints = [
        {
            "name": result.names[i],
            "category": result.categories[i],
            "instance": int(result.instances[i]),
            "u": round(float(result.uv[i, 0]), 1),
            "v": round(float(result.uv[i, 1]), 1),
            "score": round(float(result.scores[i]), 4),
            "valid": bool(result.valid[i]),
            "point": [round(float(x), 4) for x in result.points[i]] if result.valid[i] else None,
        }
        for i in range(result.num_keypoints)
    ]
    report = {
        "method": args.method,
        "backend": args.backend,
        "frame_id": result.frame_id,
        "processing_time_s": round(result.processing_time, 4),
        "keypoints": keypoints,
    }
    if args.json:
        print(json.dumps(report))
    else:
        for kp in keypoints:
            point = "no 3-D point" if kp["point"] is None else f"{kp['point']} m"
            print(
                f"{kp['category']}[{kp['instance']}].{kp['name']}: ({kp['u']}, {kp['v']}) score {kp['score']}, {point}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
