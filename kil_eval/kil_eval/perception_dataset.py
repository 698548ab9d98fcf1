"""A perception benchmark from the simulator: rendered frames with ground-truth keypoint pixels,
for ``python -m kil_perception.evaluate --data DIR``.

    python -m kil_eval.perception_dataset --task place_mug --out datasets/place_mug [--width 320 --height 240]

Writes ``DIR/dataset.yaml``, the reference image (the task's train configuration 0, annotated
with the manipulated object's keypoints visible there), and per evaluation configuration the
initial colour frame plus its instance mask (16-bit PNG, object index + 1). With
``--sequences N``, the first N configurations of each setting also get a video: the scripted
expert does the task and every camera frame (``--sequence-hz``) is written with its mask, in
time order under one ``sequence`` name, so that tracking can be scored on moving, occluded
objects. Only keypoints visible in a frame (rendered depth within 1 cm of the keypoint's depth)
are listed for it.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import yaml

from kil_eval.specs import with_camera
from kil_sim.camera import CameraConfig
from kil_sim.rollout import RolloutConfig, run_episode
from kil_sim.tasks import evaluation_configurations, sample_configuration, task
from kil_sim.world import CameraFrame, SimWorld


def visible_keypoints(
    world: SimWorld, name: str, frame: CameraFrame | None = None
) -> dict[str, tuple[np.ndarray, bool]]:
    """keypoint -> (pixel, visible) for object ``name`` in ``frame`` (default: a new render)."""
    frame = frame or world.render()
    keypoints = world.keypoints(name)
    points = np.stack(list(keypoints.values()))
    uv, _ = world.project(points)
    seen = world.visible(points, frame.depth_mm)
    return {k: (uv[i], bool(seen[i])) for i, k in enumerate(keypoints)}


def _pixels(keypoints: dict[str, tuple[np.ndarray, bool]]) -> dict[str, list[float]]:
    return {k: [round(float(uv[0]), 2), round(float(uv[1]), 2)] for k, (uv, visible) in keypoints.items() if visible}


def _write_frame(out: Path, stem: str, world: SimWorld, target: str, setting: str, frame: CameraFrame) -> dict:
    cv2.imwrite(str(out / f"{stem}.png"), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(out / f"{stem}_mask.png"), frame.instance_mask.astype(np.uint16))
    return {
        "image": f"{stem}.png",
        "mask": f"{stem}_mask.png",
        "setting": setting,
        "instances": {i + 1: o.model.category for i, o in enumerate(world.objects)},
        "keypoints": _pixels(visible_keypoints(world, target, frame)),
    }


class _SequenceSink:
    """Writes every camera frame (with its instance mask) of an expert episode."""

    def __init__(self, out: Path, name: str, world: SimWorld, target: str, setting: str) -> None:
        self.out, self.name, self.world, self.target, self.setting = out, name, world, target, setting
        self.frames: list[dict] = []

    def on_camera(self, frame: CameraFrame, stamp_ns: int) -> None:
        stem = f"{self.name}_{len(self.frames):04d}"
        entry = _write_frame(self.out, stem, self.world, self.target, self.setting, frame)
        self.frames.append({**entry, "sequence": self.name, "stamp_ns": int(stamp_ns)})

    def on_state(self, state) -> None:
        pass

    def on_action(self, chunk) -> None:
        pass


def write_dataset(
    task_name: str,
    out: Path,
    settings=("in_distribution", "unseen_object"),
    count: int = 10,
    sequences: int = 0,
    sequence_hz: float = 5.0,
    camera: CameraConfig | None = None,
) -> Path:
    """Render the dataset into ``out`` (through ``camera``; None: the task's default camera);
    returns the path of ``dataset.yaml``."""
    spec = task(task_name)
    target = spec.object_names()[0]
    out.mkdir(parents=True, exist_ok=True)
    world = with_camera(sample_configuration(task_name, "train", 0), camera).make_world()
    world.step(0.3)
    frame = world.render()
    reference = _pixels(visible_keypoints(world, target, frame))
    cv2.imwrite(str(out / "reference.png"), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    world.close()
    frames = []
    for setting in settings:
        for config in evaluation_configurations(task_name, setting, count):
            config = with_camera(config, camera)
            world = config.make_world()
            world.step(0.3)
            stem = f"{setting}_{config.index:03d}"
            frames.append(_write_frame(out, stem, world, target, setting, world.render(instance_mask=True)))
            if config.index < sequences:
                sink = _SequenceSink(out, f"{stem}_seq", world, target, setting)
                rollout = RolloutConfig(camera_hz=sequence_hz, instance_masks=True)
                run_episode(config, config=rollout, sink=sink, world=world)
                frames += sink.frames
            world.close()
    content = {
        "task": task_name,
        "category": spec.category,
        "reference": {"image": "reference.png", "keypoints": reference},
        "frames": frames,
    }
    (out / "dataset.yaml").write_text(yaml.safe_dump(content, sort_keys=False))
    return out / "dataset.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_eval.perception_dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--settings", nargs="+", default=["in_distribution", "unseen_object"])
    parser.add_argument("--episodes", type=int, default=10, help="configurations per setting (one frame each)")
    parser.add_argument("--sequences", type=int, default=0, help="of those, how many also get an expert video")
    parser.add_argument("--sequence-hz", type=float, default=5.0, help="frame rate of the videos")
    parser.add_argument("--width", type=int, default=CameraConfig.width, help="camera image width (px)")
    parser.add_argument("--height", type=int, default=CameraConfig.height, help="camera image height (px)")
    args = parser.parse_args(argv)
    if args.width < 16 or args.height < 16:
        parser.error(f"--width/--height: at least 16 px each, got {args.width}x{args.height}")
    camera = replace(CameraConfig(), width=args.width, height=args.height)
    path = write_dataset(args.task, args.out, args.settings, args.episodes, args.sequences, args.sequence_hz, camera)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
