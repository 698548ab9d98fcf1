"""Drawing keypoints on an image (the annotated image of keypoint_node, extract --overlay, previews)."""

from __future__ import annotations

import cv2
import numpy as np

#: Distinct colours (RGB) per category, cycled.
PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240))


def category_colours(categories) -> dict[str, tuple[int, int, int]]:
    """A fixed colour per category, in order of first appearance."""
    order = list(dict.fromkeys(categories))
    return {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(order)}


def draw_keypoints(rgb: np.ndarray, uv: np.ndarray, names, categories, valid: np.ndarray | None = None) -> np.ndarray:
    """A copy of (H, W, 3) uint8 RGB with a marker and label per keypoint; invalid ones hollow."""
    out = np.ascontiguousarray(rgb.copy())
    colours = category_colours(categories)
    for i, ((u, v), name, category) in enumerate(zip(np.asarray(uv), names, categories, strict=True)):
        colour = colours[category]
        centre = (round(float(u)), round(float(v)))
        filled = valid is None or bool(valid[i])
        cv2.circle(out, centre, 5, colour, -1 if filled else 1, cv2.LINE_AA)
        cv2.circle(out, centre, 6, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.putText(out, name, (centre[0] + 7, centre[1] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return out
