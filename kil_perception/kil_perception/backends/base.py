"""The feature-backend interface and registry."""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np
import torch
from torch import Tensor


class WeightsUnavailableError(RuntimeError):
    """A backend's weights are not available; the message names the model id and a local path option."""


class FeatureBackend(ABC):
    """Dense descriptors of an RGB image.

    Attributes:
        name: registry name. stride: input pixels per feature cell (approximate).
        device: torch device the model runs on.
    """

    name: str = ""
    stride: int = 16

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)

    @property
    def dtype(self) -> torch.dtype:
        """bf16 on CUDA, fp32 on CPU (paper Appendix B)."""
        return torch.bfloat16 if self.device.type == "cuda" else torch.float32

    @abstractmethod
    def features(self, image: np.ndarray) -> Tensor:
        """(H, W, 3) uint8 RGB -> (C, h, w) float32 features on ``device``."""


def _effnet(device, model):
    from kil_perception.backends.effnet import EffNetLite0Backend

    return EffNetLite0Backend(device)


def _classic(device, model):
    from kil_perception.backends.classic import ClassicBackend

    return ClassicBackend(device)


def _radio(device, model):
    from kil_perception.backends.vit import RadioBackend

    return RadioBackend(device, model)


def _dinov3(device, model):
    from kil_perception.backends.vit import DinoV3Backend

    return DinoV3Backend(device, model)


def _dift(ensemble_size: int):
    def build(device, model):
        from kil_perception.backends.dift import DiftBackend

        return DiftBackend(device, model, ensemble_size=ensemble_size)

    return build


BACKENDS = {
    "effnet_lite0": _effnet,
    "classic": _classic,
    "radio": _radio,
    "dinov3": _dinov3,
    "dift": _dift(8),  # the paper's DIFT8
    "dift2": _dift(2),
}


def make_backend(name: str, device: str | torch.device = "cpu", model: str | None = None) -> FeatureBackend:
    """Build a backend by name; ``model`` is a hub id or local path for the foundation models."""
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown feature backend {name!r}; available: {', '.join(BACKENDS)}") from None
    return factory(device, model)


#: ITU-R BT.601 luma weights (R, G, B).
LUMA = (0.299, 0.587, 0.114)


def luminance(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) uint8 grey (BT.601 luma in every channel)."""
    grey = np.rint(np.asarray(image, np.float32) @ np.asarray(LUMA, np.float32)).clip(0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


class LuminanceBackend(FeatureBackend):
    """A backend fed the images' luminance only: descriptors then match by shape and shading, not
    hue, so an object of another colour than the reference's still matches (``colour="luminance"``
    in ``ExtractorConfig``). Reference descriptors must come through the same wrapper."""

    def __init__(self, inner: FeatureBackend) -> None:
        super().__init__(inner.device)
        self.inner = inner
        self.name = f"{inner.name}+luminance"
        self.stride = inner.stride

    def features(self, image: np.ndarray) -> Tensor:
        return self.inner.features(luminance(image))


class ScaledBackend(FeatureBackend):
    """A backend fed the images resized by ``scale`` (``feature_scale`` in ``ExtractorConfig``):
    at 2 its feature grid is twice as fine on the image (effnet_lite0's stride 8 becomes 4 px of
    the camera image) for about 3-4x the backbone's time. Matching still returns pixels of the
    original image. Reference descriptors must come through the same wrapper."""

    def __init__(self, inner: FeatureBackend, scale: float) -> None:
        super().__init__(inner.device)
        self.inner = inner
        self.scale = float(scale)
        self.name = f"{inner.name}x{self.scale:g}"
        self.stride = inner.stride / self.scale

    def features(self, image: np.ndarray) -> Tensor:
        """(H, W, 3) uint8 RGB -> (C, h, w) features of the image resized by ``scale``."""
        h, w = image.shape[:2]
        size = (max(1, round(w * self.scale)), max(1, round(h * self.scale)))
        interpolation = cv2.INTER_LINEAR if self.scale >= 1 else cv2.INTER_AREA
        return self.inner.features(cv2.resize(np.ascontiguousarray(image), size, interpolation=interpolation))
