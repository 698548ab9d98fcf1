"""Keypoint tracking (T, paper §III-B): initialised by matching on the first frame, then followed
frame to frame; re-initialised on reset.

Two trackers with one interface (``Tracker``):

- ``LucasKanadeTracker``: pyramidal Lucas-Kanade optical flow (OpenCV), weights-free, with a
  forward-backward check as the visibility flag;
- ``CoTrackerOnline``: CoTracker3 online (torch.hub ``facebookresearch/co-tracker``, entry
  ``cotracker3_online``, or a local clone), fed the last ``2 * step`` frames every ``step`` frames
  with the windowed online API; its visibility output sets the valid flags.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import cv2
import numpy as np
import torch

from kil_perception.backends.base import WeightsUnavailableError


class Tracker(Protocol):
    def start(self, image: np.ndarray, uv: np.ndarray) -> None:
        """Begin tracking pixels uv (K, 2) from this (H, W, 3) uint8 RGB frame."""

    def track(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Next frame -> uv (K, 2) and visible (K,) bool."""


class LucasKanadeTracker:
    """Pyramidal Lucas-Kanade with a forward-backward consistency check.

    Args:
        window: search window side (px). levels: pyramid levels.
        max_fb_error: largest forward-backward distance (px) for a point to count as visible.
    """

    def __init__(self, window: int = 21, levels: int = 3, max_fb_error: float = 1.5) -> None:
        self.params = dict(
            winSize=(window, window),
            maxLevel=levels,
            criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
        )
        self.max_fb_error = max_fb_error
        self._gray: np.ndarray | None = None
        self._uv: np.ndarray | None = None

    def start(self, image: np.ndarray, uv: np.ndarray) -> None:
        self._gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        self._uv = np.asarray(uv, np.float32).reshape(-1, 1, 2)

    def track(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._gray is None:
            raise RuntimeError("LucasKanadeTracker.track called before start")
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        forward, status, _ = cv2.calcOpticalFlowPyrLK(self._gray, gray, self._uv, None, **self.params)
        backward, back_status, _ = cv2.calcOpticalFlowPyrLK(gray, self._gray, forward, None, **self.params)
        fb_error = np.linalg.norm((backward - self._uv).reshape(-1, 2), axis=1)
        visible = (status.ravel() == 1) & (back_status.ravel() == 1) & (fb_error < self.max_fb_error)
        # Lost points keep their last position (flagged invalid) so a later frame can recover them.
        new = np.where(visible[:, None, None], forward, self._uv)
        self._gray, self._uv = gray, new.astype(np.float32)
        return new.reshape(-1, 2).astype(np.float64), visible


class CoTrackerOnline:
    """CoTracker3 in its online (windowed) mode.

    Args:
        model: a loaded online CoTracker (callable with ``video_chunk``, ``is_first_step``,
            ``queries`` and returning ``(tracks, visibility)``), or None to load
            ``cotracker3_online`` from torch.hub (``repo``: the hub repo or a local clone path).
        device: torch device.
    """

    def __init__(self, model=None, device: str = "cpu", repo: str = "facebookresearch/co-tracker") -> None:
        self.device = torch.device(device)
        if model is None:
            source = "local" if repo.startswith(("/", ".")) else "github"
            try:
                model = torch.hub.load(repo, "cotracker3_online", source=source)
            except Exception as error:  # no network, no cache, wrong path
                reason = f"{type(error).__name__}: {error}"
                raise WeightsUnavailableError(
                    f"CoTracker3 ('{repo}', entry cotracker3_online) is not available ({reason}); "
                    "clone facebookresearch/co-tracker and pass its path as repo"
                ) from None
        self.model = model.to(self.device).eval() if hasattr(model, "to") else model
        self.step = int(getattr(model, "step", 8))
        self._frames: deque[torch.Tensor] = deque(maxlen=2 * self.step)
        self._count = 0
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def start(self, image: np.ndarray, uv: np.ndarray) -> None:
        self._frames.clear()
        self._frames.append(self._tensor(image))
        k = len(uv)
        queries = torch.cat([torch.zeros(k, 1), torch.as_tensor(uv, dtype=torch.float32)], dim=1)[None]
        self.model(video_chunk=self._video(), is_first_step=True, queries=queries.to(self.device))
        self._count = 1
        self._last = (np.asarray(uv, np.float64), np.ones(k, bool))

    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()

    def _video(self) -> torch.Tensor:
        return torch.stack(list(self._frames))[None].to(self.device)  # (1, T, 3, H, W)

    @torch.inference_mode()
    def track(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._last is None:
            raise RuntimeError("CoTrackerOnline.track called before start")
        self._frames.append(self._tensor(image))
        self._count += 1
        # As in CoTracker's online demo: the first window once 2 * step frames exist, then every step frames.
        if self._count >= 2 * self.step and (self._count - 2 * self.step) % self.step == 0:
            tracks, visibility = self.model(video_chunk=self._video())
            if tracks is not None:
                uv = tracks[0, -1].float().cpu().numpy().astype(np.float64)
                visible = visibility[0, -1].cpu().numpy().astype(bool)
                self._last = (uv, visible)
        return self._last
