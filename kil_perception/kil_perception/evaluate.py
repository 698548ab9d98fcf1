"""Keypoint accuracy against the simulator's ground truth: pixel error and PCK at 5/10/20 px.

    python -m kil_perception.evaluate --tasks place_mug pick_pen --backends effnet_lite0 classic --json

For each task the reference image is the task's ``train`` configuration 0, annotated with the
ground-truth pixels of the manipulated object's keypoints that are visible there; every
evaluation frame is the initial view of an evaluation configuration (10 in-distribution and 10
unseen-object by default). Only keypoints visible in the frame (rendered depth agrees with the
keypoint's depth within 1 cm) are scored.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from kil_perception.backends import make_backend
from kil_perception.extraction import ImageMatcher
from kil_perception.instances import InstanceMatcher, SimulatorMasks
from kil_perception.spec import Category, KeypointSpec, Reference

THRESHOLDS = (5, 10, 20)
_VISIBLE_M = 0.01


def visible_keypoints(world, name: str) -> dict[str, tuple[np.ndarray, bool]]:
    """keypoint -> (pixel, visible) for object ``name`` in the current render."""
    frame = world.render()
    intrinsics, to_camera = world.camera_intrinsics, world.camera_extrinsics.inverse()
    out = {}
    for keypoint, point in world.keypoints(name).items():
        optical = to_camera.apply(point)
        uv = intrinsics.project(optical[None])[0]
        u, v = np.rint(uv).astype(int)
        inside = 0 <= u < intrinsics.width and 0 <= v < intrinsics.height
        depth = frame.depth_mm[v, u] / 1000.0 if inside else 0.0
        out[keypoint] = (uv, bool(inside and depth > 0 and abs(depth - optical[2]) < _VISIBLE_M))
    return out


def reference_spec(task: str, directory: Path) -> KeypointSpec:
    """A one-category spec from the task's train configuration 0 (visible keypoints only)."""
    from kil_sim.tasks import sample_configuration
    from kil_sim.tasks import task as task_spec

    spec = task_spec(task)
    config = sample_configuration(task, "train", 0)
    world = config.make_world()
    world.step(0.3)
    name = spec.object_names()[0]
    keypoints = {k: tuple(uv) for k, (uv, visible) in visible_keypoints(world, name).items() if visible}
    if not keypoints:
        raise ValueError(f"{task}: no keypoint of {name} is visible in the reference view")
    path = directory / f"{task}_reference.png"
    cv2.imwrite(str(path), cv2.cvtColor(world.render().rgb, cv2.COLOR_RGB2BGR))
    world.close()
    return KeypointSpec(None, (Category(spec.category, spec.category, 1, (Reference(path, keypoints),)),))


def evaluate(task: str, backend_name: str, settings: list[str], count: int, method: str = "image") -> list[dict]:
    """Score one task x backend x method (``image``, or ``instance`` with the simulator's masks)."""
    from kil_sim.tasks import evaluation_configurations
    from kil_sim.tasks import task as task_spec

    current: dict = {}

    def sim_masks():
        world = current["world"]
        frame = world.render(instance_mask=True)
        return frame.instance_mask, {i + 1: o.model.category for i, o in enumerate(world.objects)}

    with tempfile.TemporaryDirectory() as tmp:
        spec = reference_spec(task, Path(tmp))
        backend = make_backend(backend_name)
        if method == "instance":
            matcher = InstanceMatcher(spec, backend, SimulatorMasks(sim_masks))
        else:
            matcher = ImageMatcher(spec, backend)
        names = spec.categories[0].keypoint_names
        rows = []
        for setting in settings:
            errors = []
            for config in evaluation_configurations(task, setting, count):
                world = config.make_world()
                world.step(0.3)
                current["world"] = world
                target = task_spec(task).object_names()[0]
                truth = visible_keypoints(world, target)
                found = matcher.extract(world.render().rgb)
                for i, keypoint in enumerate(names):
                    uv, visible = truth[keypoint]
                    if visible:
                        errors.append(float(np.linalg.norm(found.uv[i] - uv)))
                world.close()
            errors_array = np.array(errors)
            rows.append(
                {
                    "task": task,
                    "backend": backend_name,
                    "method": method,
                    "setting": setting,
                    "keypoints": list(names),
                    "scored": len(errors),
                    "median_px": round(float(np.median(errors_array)), 1) if errors else None,
                    "mean_px": round(float(errors_array.mean()), 1) if errors else None,
                    **{f"pck@{t}": round(float((errors_array <= t).mean()), 3) if errors else None for t in THRESHOLDS},
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_perception.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks", nargs="+", default=["place_mug", "pick_pen", "place_mouse", "pour_bottle", "place_shoe"]
    )
    parser.add_argument("--backends", nargs="+", default=["effnet_lite0", "classic"])
    parser.add_argument("--settings", nargs="+", default=["in_distribution", "unseen_object"])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["image", "instance"],
        choices=["image", "instance"],
        help="instance uses the simulator's masks as the instance source",
    )
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [
        row
        for t in args.tasks
        for b in args.backends
        for m in args.methods
        for row in evaluate(t, b, args.settings, args.episodes, m)
    ]
    if args.json:
        print(json.dumps({"results": rows}))
    else:
        header = ("task", "backend", "method", "setting", "n", "median", "PCK@5", "@10", "@20")
        print("{:14s} {:13s} {:9s} {:16s} {:>3s} {:>7s} {:>6s} {:>6s} {:>6s}".format(*header))
        for r in rows:
            print(
                f"{r['task']:14s} {r['backend']:13s} {r['method']:9s} {r['setting']:16s} {r['scored']:3d} "
                f"{r['median_px']!s:>7s} "
                f"{r['pck@5']!s:>6s} {r['pck@10']!s:>6s} {r['pck@20']!s:>6s}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
