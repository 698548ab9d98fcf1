"""Reading colour image files as RGB arrays (OpenCV reads BGR)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_rgb(path: str | Path, what: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file.

    Raises:
        ValueError: naming the file when it is missing or not an image.
    """
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: cannot read the {what}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
