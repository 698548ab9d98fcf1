"""Min-max normalisation to [-1, 1], fitted once on the training set and stored in the model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

_EPS = 1e-6


class MinMaxNormalizer(nn.Module):
    """Per-feature affine map of [min, max] onto [-1, 1]; the statistics are buffers, so they are
    saved and loaded with the model's weights.

    Features whose range is below 1e-6 (constant in the data) are only shifted to 0.

    Args:
        dim: feature count D (the last axis of the data).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("minimum", torch.full((dim,), -1.0))
        self.register_buffer("maximum", torch.full((dim,), 1.0))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, data: Tensor) -> MinMaxNormalizer:
        """Fit on (N, D) samples (NaN rows, e.g. masked keypoints, are ignored)."""
        data = data.reshape(-1, data.shape[-1]).double()
        valid = ~torch.isnan(data).any(dim=1)
        if not valid.any():
            raise ValueError("cannot fit a normaliser on zero valid samples")
        data = data[valid]
        self.minimum.copy_(data.min(dim=0).values)
        self.maximum.copy_(data.max(dim=0).values)
        self.fitted.fill_(True)
        return self

    def _scale_offset(self) -> tuple[Tensor, Tensor]:
        span = self.maximum - self.minimum
        constant = span < _EPS
        scale = torch.where(constant, torch.ones_like(span), 2.0 / span.clamp_min(_EPS))
        offset = torch.where(constant, -self.minimum, -1.0 - self.minimum * scale)
        return scale, offset

    def normalize(self, x: Tensor) -> Tensor:
        """(..., D) raw -> (..., D) in [-1, 1] over the training range."""
        scale, offset = self._scale_offset()
        return x * scale.to(x.dtype) + offset.to(x.dtype)

    def unnormalize(self, y: Tensor) -> Tensor:
        """Inverse of :meth:`normalize`."""
        scale, offset = self._scale_offset()
        return (y - offset.to(y.dtype)) / scale.to(y.dtype)
