"""Shared test data: a rendered sim scene as a reference image with ground-truth keypoints."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from kil_sim.camera import CameraConfig
from kil_sim.objects import block, mug
from kil_sim.scene import PlacedObject, SceneConfig
from kil_sim.world import SimWorld


def rendered_scene(position=(0.36, 0.02), yaw: float = 0.4, size: tuple[int, int] | None = None):
    """A mug and a block on the table: (rgb, depth_mm, world); ``size`` (width, height) of the
    camera (default: the scene's)."""
    config = None if size is None else SceneConfig(camera=CameraConfig(width=size[0], height=size[1]))
    world = SimWorld(
        [
            PlacedObject("mug", mug("mug_red", colour=(0.8, 0.2, 0.2)), position, yaw),
            PlacedObject("block", block(colour=(0.2, 0.3, 0.85)), (0.3, -0.15), 0.3),
        ],
        config,
    )
    world.step(0.2)
    frame = world.render()
    return frame.rgb, frame.depth_mm, world


def write_spec(
    directory: Path, rgb: np.ndarray, keypoints: dict[str, tuple[float, float]], name: str = "thing"
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(directory / "reference.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    lines = [
        f"  - name: {name}",
        "    instances: 1",
        "    references:",
        "      - image: reference.png",
        "        keypoints:",
    ]
    lines += [f"          {k}: [{u:.1f}, {v:.1f}]" for k, (u, v) in keypoints.items()]
    (directory / "spec.yaml").write_text("categories:\n" + "\n".join(lines) + "\n")
    return directory / "spec.yaml"
