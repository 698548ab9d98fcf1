"""``classic``: a hand-crafted dense descriptor that needs no weights (CI, the sim demo).

Per cell of 4 x 4 pixels: colour (CIE Lab) blurred at three scales and gradient-orientation
histograms (8 bins) pooled at two scales, each block L2-normalised, so that both appearance and
local shape contribute. Deterministic, about 40 dims.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

from kil_perception.backends.base import FeatureBackend

_BINS = 8


class ClassicBackend(FeatureBackend):
    name = "classic"
    stride = 4

    def features(self, image: np.ndarray) -> Tensor:
        h, w = image.shape[:2]
        size = (max(1, w // self.stride), max(1, h // self.stride))
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32) / 255.0
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
        magnitude = np.hypot(gx, gy)
        angle = (np.arctan2(gy, gx) % np.pi) / np.pi * _BINS
        hist = np.zeros((h, w, _BINS), np.float32)
        index = np.minimum(angle.astype(int), _BINS - 1)
        np.put_along_axis(hist, index[..., None], magnitude[..., None], axis=2)
        blocks = []
        for sigma in (2.0, 6.0, 16.0):
            blocks.append(cv2.GaussianBlur(lab, (0, 0), sigma))
        for sigma in (4.0, 10.0):
            blocks.append(np.stack([cv2.GaussianBlur(hist[..., b], (0, 0), sigma) for b in range(_BINS)], -1))
        cells = []
        for block in blocks:
            # (per channel: OpenCV's area resampling takes at most 4 channels at non-integer scales)
            small = np.stack(
                [cv2.resize(block[..., c], size, interpolation=cv2.INTER_AREA) for c in range(block.shape[2])], -1
            )
            small = small - small.mean(axis=(0, 1), keepdims=True)
            small /= np.linalg.norm(small, axis=2, keepdims=True) + 1e-6
            cells.append(small)
        out = np.concatenate(cells, axis=2).transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(out)).to(self.device)
