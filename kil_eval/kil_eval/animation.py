"""Rollout animations: frames with a title band, written as an animated GIF (Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

BAND_PX = 18
MAX_WIDTH = 320


def titled(frame: np.ndarray, title: str) -> Image.Image:
    """(H, W, 3) uint8 RGB, shrunk to at most MAX_WIDTH wide, under a black band with ``title``."""
    image = Image.fromarray(frame)
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (image.width, image.height + BAND_PX), (0, 0, 0))
    canvas.paste(image, (0, BAND_PX))
    ImageDraw.Draw(canvas).text((4, 3), title, fill=(255, 255, 255))
    return canvas


def write_gif(frames: list[np.ndarray], path: Path, title: str, fps: float = 5.0) -> Path | None:
    """Write ``frames`` as a looping GIF at ``fps``; returns the path (None when there are no frames)."""
    if not frames:
        return None
    images = [titled(f, title) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, optimize=True)
    return path
