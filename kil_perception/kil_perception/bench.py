"""Perception speed on this machine.

    python -m kil_perception.bench --json

- matching: the exact upsampled-cosine argmax beside the naive (C, H, W) upsampling, same run:
  C = 768 features at 1/16 of 640 x 480, 12 keypoints; time (median) and peak memory added by the
  call (each measured in a fresh process), and whether the argmax agrees.
- matching_cuda (when CUDA is available): the same two on the GPU, with the peak GPU memory each
  call allocates (``torch.cuda.max_memory_allocated``).
- effnet_inference: EfficientNet-Lite0's feature maps as ``EffNetLite0Backend`` computes them (batch
  norms folded into the convolutions, channels-last on a CPU) beside the plain eval-mode model,
  same run, at 320 x 240 and 640 x 480, with the largest difference between their outputs.
- per_frame: latency of one 640 x 480 frame, extraction + lifting to 3-D, for each method (image
  matching, instance matching with given masks, tracking) x each backend available here.
- paper_sized (CUDA by default; ``--paper-models`` forces it): the paper's models at their
  published sizes with random weights (``kil_perception.paper_models``; latency does not depend on
  weights): image matching per frame with RADIO-B and DINOv3-B (features 448 short side +
  matching + lifting, 12 keypoints), DIFT features at SD 2.1's UNet size (768 short side, ensemble
  2, bf16 on CUDA) and SAM3's instance masks for two text prompts (the vision pass, both prompts
  in one batched pass, and the best instance's mask made at image size, as the instance matcher
  does).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kil_perception.cpu_threads import threads_under_load
from kil_perception.matching import match_keypoints, match_keypoints_naive

SIZE = (480, 640)
C, K = 768, 12


def _inputs():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(C, SIZE[0] // 16, SIZE[1] // 16, generator=g)
    queries = torch.randn(K, C, generator=g)
    return features, queries


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return round(statistics.median(times), 2)


# VmHWM (this process's peak RSS) rather than ru_maxrss, which keeps the parent's peak across exec.
_PEAK_CODE = """
import torch
from kil_perception.bench import SIZE, _inputs
from kil_perception.matching import match_keypoints, match_keypoints_naive
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
features, queries = _inputs()
before = hwm()
(match_keypoints if "{name}" == "exact" else match_keypoints_naive)(features, queries, SIZE)
print((hwm() - before) / 1024.0)
"""


def _peak_mb(name: str) -> float:
    """Peak memory (MB) a matching call adds, measured in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_CODE.format(name=name)], capture_output=True, text=True, check=True, timeout=600
    )
    return round(float(result.stdout.strip().splitlines()[-1]), 1)


def matching(repeats: int) -> dict:
    features, queries = _inputs()
    exact = match_keypoints(features, queries, SIZE)
    naive = match_keypoints_naive(features, queries, SIZE)
    exact_ms = _median_ms(lambda: match_keypoints(features, queries, SIZE), repeats)
    naive_ms = _median_ms(lambda: match_keypoints_naive(features, queries, SIZE), max(2, repeats // 3))
    exact_mb, naive_mb = _peak_mb("exact"), _peak_mb("naive")
    return {
        "features": [C, SIZE[0] // 16, SIZE[1] // 16],
        "image": list(SIZE),
        "keypoints": K,
        "exact_ms": exact_ms,
        "naive_ms": naive_ms,
        "speedup": round(naive_ms / exact_ms, 1),
        "exact_peak_mb": exact_mb,
        "naive_peak_mb": naive_mb,
        "memory_ratio": round(naive_mb / max(exact_mb, 0.1), 1),
        "argmax_identical": int((exact.uv == naive.uv).all(dim=1).sum()),
        "max_score_difference": float((exact.scores - naive.scores).abs().max()),
        "targets": {"speedup": 5.0, "memory_ratio": 10.0},
    }


def matching_cuda(repeats: int) -> dict:
    """The matching row on the GPU: time (synchronised median) and peak allocated memory."""
    device = torch.device("cuda")
    features, queries = (t.to(device) for t in _inputs())
    out: dict = {"gpu": torch.cuda.get_device_name(device)}
    results = {}
    for name, fn in (("exact", match_keypoints), ("naive", match_keypoints_naive)):
        results[name] = fn(features, queries, SIZE)  # warm-up (operators cached, cuBLAS handles)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn(features, queries, SIZE)
        torch.cuda.synchronize(device)
        out[f"{name}_peak_mb"] = round((torch.cuda.max_memory_allocated(device) - base) / 2**20, 1)
        out[f"{name}_ms"] = _cuda_ms(lambda fn=fn: fn(features, queries, SIZE), device, repeats)
    out["speedup"] = round(out["naive_ms"] / out["exact_ms"], 2)
    out["argmax_identical"] = int((results["exact"].uv == results["naive"].uv).all(dim=1).sum())
    out["targets"] = {"exact_ms": 0.5, "exact_peak_mb_at_most": out["naive_peak_mb"]}
    return out


def _bench_spec(directory, image: np.ndarray):
    """Two categories of 6 keypoints (K = 12) on ``image``, written to ``directory``."""
    import cv2

    from kil_perception.spec import load_spec

    cv2.imwrite(f"{directory}/reference.png", image[..., ::-1])
    rng = np.random.default_rng(1)
    lines = ["categories:"]
    for name, (x0, x1) in (("left", (20, 300)), ("right", (340, 620))):
        points = ", ".join(f"k{i}: [{rng.integers(x0, x1)}, {rng.integers(20, 460)}]" for i in range(6))
        lines += [
            f"  - name: {name}",
            "    references:",
            "      - image: reference.png",
            f"        keypoints: {{{points}}}",
        ]
    (Path(directory) / "spec.yaml").write_text("\n".join(lines) + "\n")
    return load_spec(Path(directory) / "spec.yaml")


def per_frame(repeats: int) -> dict:
    """End-to-end latency of one 640 x 480 frame (extraction + lifting to 3-D), per method x backend.

    Instance matching uses given masks (the left and right halves); tracking is timed on frames
    after the first (the first frame is a matching); ``image+layout_check``: image matching with the
    layout check (weight 0.1), beside plain image matching for its cost."""
    from kil_interfaces.data import CameraIntrinsics
    from kil_perception.extraction import keypoints_message
    from kil_perception.instances import SimulatorMasks
    from kil_perception.pipeline import ExtractorConfig, build_extractor

    rng = np.random.default_rng(0)
    image = (rng.random((*SIZE, 3)) * 255).astype(np.uint8)
    image = np.ascontiguousarray(np.repeat(np.repeat(image[::8, ::8], 8, 0), 8, 1))  # texture LK can track
    shifted = np.roll(image, 2, axis=1)
    depth = np.full(SIZE, 0.8, np.float32)
    intrinsics = CameraIntrinsics(SIZE[1], SIZE[0], 500, 500, 319.5, 239.5)
    index_map = np.zeros(SIZE, int)
    index_map[:, :320], index_map[:, 320:] = 1, 2
    masks = SimulatorMasks(lambda: (index_map, {1: "left", 2: "right"}))
    out = {}
    with tempfile.TemporaryDirectory() as directory:
        spec = _bench_spec(directory, image)
        for backend in ("effnet_lite0", "classic"):
            for method in ("image", "image+layout_check", "instance", "track"):
                config = ExtractorConfig(
                    method=method.split("+")[0],
                    backend=backend,
                    instance_source="masks",
                    track_init="instance",
                    layout_check=0.1 if "layout_check" in method else 0.0,
                )
                extractor = build_extractor(spec, config, masks)
                frames = iter([image, shifted] * (repeats + 2))
                if method == "track":
                    extractor.extract(next(frames))

                def frame(extractor=extractor, frames=frames, method=config.method, backend=backend) -> None:
                    found = extractor.extract(next(frames))
                    keypoints_message(spec, found, depth, intrinsics, None, 0, method, backend)

                out[f"{method}/{backend}"] = {"ms": _median_ms(frame, repeats), "keypoints": spec.num_keypoints}
    return out


def _cuda_ms(fn, device: torch.device, repeats: int) -> float:
    """Median ms of ``fn`` (synchronised on CUDA), after two warm-up calls."""

    def timed() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    timed()
    return _median_ms(timed, repeats)


def paper_sized(device: torch.device, repeats: int) -> dict:
    """Per-frame latency of the paper's models at their published sizes (random weights)."""
    from kil_interfaces.data import CameraIntrinsics
    from kil_perception import paper_models
    from kil_perception.backends.dift import DiftBackend
    from kil_perception.backends.vit import DinoV3Backend, RadioBackend
    from kil_perception.extraction import ImageMatcher, keypoints_message
    from kil_perception.instances import Sam3Instances

    rng = np.random.default_rng(0)
    image = (rng.random((*SIZE, 3)) * 255).astype(np.uint8)
    depth = np.full(SIZE, 0.8, np.float32)
    intrinsics = CameraIntrinsics(SIZE[1], SIZE[0], 500, 500, 319.5, 239.5)
    out: dict = {"device": str(device), "image": f"{SIZE[1]}x{SIZE[0]}"}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    with tempfile.TemporaryDirectory() as directory:
        spec = _bench_spec(directory, image)
        for name, backend in (
            ("radio_b", lambda: RadioBackend(device, paper_models.radio_base())),
            ("dinov3_b", lambda: DinoV3Backend(device, paper_models.dinov3_base())),
        ):
            feature_backend = backend()
            matcher = ImageMatcher(spec, feature_backend)

            def frame(matcher=matcher, name=name) -> None:
                found = matcher.extract(image)
                keypoints_message(spec, found, depth, intrinsics, None, 0, "image", name)

            out[f"image_matching/{name}"] = {
                "frame_ms": _cuda_ms(frame, device, repeats),
                "features_ms": _cuda_ms(lambda b=feature_backend: b.features(image), device, repeats),
                "parameters_m": round(sum(p.numel() for p in feature_backend.model.parameters()) / 1e6, 1),
            }
        components = paper_models.sd21_components(Path(directory))
        dift = DiftBackend(device, components, ensemble_size=2)
        out["dift2_features/sd21_unet"] = {
            "features_ms": _cuda_ms(lambda: dift.features(image), device, max(3, repeats // 2)),
            "unet_parameters_m": round(sum(p.numel() for p in components[0].parameters()) / 1e6, 1),
        }
        sam3 = Sam3Instances(device, paper_models.sam3_full(Path(directory)))

        frames = [image, image.copy()]  # alternated: each call is a new frame, so the vision pass runs

        def two_prompts() -> None:
            frames.reverse()
            sam3.prepare(frames[0], ["a mug", "a tray"])  # (as the instance matcher does: one batched pass)
            for category, prompt in (("mug", "a mug"), ("tray", "a tray")):
                instances = sam3(frames[0], category, prompt)
                max(instances, key=lambda i: i.score).tensor()  # the kept instance's mask, on the GPU

        out["sam3_instances/two_prompts"] = {
            "ms": _cuda_ms(two_prompts, device, max(3, repeats // 2)),
            "parameters_m": round(sum(p.numel() for p in sam3.model.parameters()) / 1e6, 1),
        }
    out["targets_ms"] = {"image_matching_frame": 5.0, "sam3_two_prompts": 40.0}
    return out


def effnet_inference(repeats: int) -> dict:
    """EfficientNet-Lite0 (random weights: the time does not depend on them) as the backend runs it
    beside the plain model, one image per call, per frame size."""
    from kil_perception.backends.effnet import EffNetLite0Backend, build_model

    plain = build_model(pretrained=False)
    backend = EffNetLite0Backend(model=plain)
    rows = {}
    for height, width in ((240, 320), (480, 640)):
        x = torch.rand(1, 3, height, width)
        fast = x.contiguous(memory_format=backend.memory_format)
        with torch.inference_mode():
            difference = max(float((a - b).abs().max()) for a, b in zip(plain(x), backend.model(fast), strict=True))
            rows[f"{width}x{height}"] = {
                "plain_ms": _median_ms(lambda x=x: plain(x), repeats),
                "backend_ms": _median_ms(lambda fast=fast: backend.model(fast), repeats),
                "max_abs_difference": difference,
            }
    return rows


def threads_under_load_frame(repeats: int) -> dict:
    """One 640 x 480 frame of image matching with effnet_lite0 (extraction + lifting) with 1 thread
    and one per core, alone and beside one busy process per core: what keypoint_node's
    ``cpu_threads`` decides."""
    from kil_interfaces.data import CameraIntrinsics
    from kil_perception.extraction import keypoints_message
    from kil_perception.pipeline import ExtractorConfig, build_extractor

    image = (np.random.default_rng(0).random((*SIZE, 3)) * 255).astype(np.uint8)
    depth = np.full(SIZE, 0.8, np.float32)
    intrinsics = CameraIntrinsics(SIZE[1], SIZE[0], 500, 500, 319.5, 239.5)
    with tempfile.TemporaryDirectory() as directory:
        spec = _bench_spec(directory, image)
        extractor = build_extractor(spec, ExtractorConfig(method="image", backend="effnet_lite0"))

        def frame() -> None:
            found = extractor.extract(image)
            keypoints_message(spec, found, depth, intrinsics, None, 0, "image", "effnet_lite0")

        return threads_under_load(frame, repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_perception.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--paper-models",
        choices=("auto", "on", "off"),
        default="auto",
        help="time the paper-sized models (auto: on CUDA only; on the CPU they take minutes)",
    )
    parser.add_argument(
        "--threads-under-load",
        action="store_true",
        help="only: a frame with 1 thread and one per core, alone and beside busy processes",
    )
    args = parser.parse_args(argv)
    if args.threads_under_load:
        result = {"image/effnet_lite0": threads_under_load_frame(args.repeats)}
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return 0
    results = {
        "torch_threads": torch.get_num_threads(),
        "matching": matching(args.repeats),
        "effnet_inference": effnet_inference(args.repeats),
        "per_frame": per_frame(args.repeats),
    }
    cuda = torch.cuda.is_available()
    if cuda:
        results["matching_cuda"] = matching_cuda(args.repeats)
    if args.paper_models == "on" or (args.paper_models == "auto" and cuda):
        results["paper_sized"] = paper_sized(torch.device("cuda" if cuda else "cpu"), args.repeats)
    print(json.dumps(results) if args.json else json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
