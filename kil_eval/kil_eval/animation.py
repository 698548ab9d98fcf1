"""Rollout animations: frames with a title band, written as an animated GIF (Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LINE_PX = 13
MARGIN_PX = 4
MAX_WIDTH = 320


def wrap(title: str, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """``title`` broken at spaces into lines that fit ``width`` pixels (a word longer than a line
    gets a line of its own)."""
    lines: list[str] = []
    for word in title.split():
        if lines and draw.textlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def titled(frame: np.ndarray, title: str) -> Image.Image:
    """(H, W, 3) uint8 RGB, shrunk to at most MAX_WIDTH wide, under a black band holding all of
    ``title`` (wrapped onto as many lines as it needs)."""
    image = Image.fromarray(frame)
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.Resampling.BILINEAR)
    lines = wrap(title, image.width - 2 * MARGIN_PX, ImageDraw.Draw(image))
    band = len(lines) * LINE_PX + 2 * MARGIN_PX
    canvas = Image.new("RGB", (image.width, image.height + band), (0, 0, 0))
    canvas.paste(image, (0, band))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((MARGIN_PX, MARGIN_PX + i * LINE_PX), line, fill=(255, 255, 255))
    return canvas


def write_gif(frames: list[np.ndarray], path: Path, title: str, fps: float = 5.0) -> Path | None:
    """Write ``frames`` as a looping GIF at ``fps``; returns the path (None when there are no frames)."""
    if not frames:
        return None
    images = [titled(f, title) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, optimize=True)
    return path
