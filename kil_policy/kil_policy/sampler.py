"""DDIM sampling as plain tensor arithmetic: the scheduler's per-step coefficients computed once.

``diffusers.DDIMScheduler.step`` looks its coefficients up in Python on every call, which keeps
the denoising loop on the host. With eta = 0 and epsilon prediction a DDIM step is

    x0 = (x_t - sqrt(1 - a_t) * eps) / sqrt(a_t)           (clamped to +-clip when clipping)
    x_prev = sqrt(a_prev) * x0 + sqrt(1 - a_prev) * eps

with ``a`` the cumulative alpha products at the step's timestep and at the previous one (1 after
the last step, ``set_alpha_to_one``). :func:`ddim_coefficients` reads exactly the scheduler's
numbers; :func:`ddim_step` applies them with tensors indexed by the step number, so the whole loop
has no host synchronisation and can be captured as one graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class DdimCoefficients:
    """Per-step tensors of one DDIM schedule (S steps, in sampling order).

    Attributes:
        timesteps: (S,) int64 training timesteps (what the UNet is conditioned on).
        sqrt_alpha, sqrt_one_minus_alpha: (S,) sqrt(a_t), sqrt(1 - a_t).
        sqrt_alpha_prev, sqrt_one_minus_alpha_prev: (S,) the same at the previous timestep.
        clip: |x0| bound (None: no clipping).
    """

    timesteps: Tensor
    sqrt_alpha: Tensor
    sqrt_one_minus_alpha: Tensor
    sqrt_alpha_prev: Tensor
    sqrt_one_minus_alpha_prev: Tensor
    clip: float | None

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> DdimCoefficients:
        def move(t: Tensor) -> Tensor:
            return t.to(device) if t.dtype == torch.int64 else t.to(device, dtype)

        return DdimCoefficients(
            move(self.timesteps),
            move(self.sqrt_alpha),
            move(self.sqrt_one_minus_alpha),
            move(self.sqrt_alpha_prev),
            move(self.sqrt_one_minus_alpha_prev),
            self.clip,
        )


def ddim_coefficients(scheduler, steps: int) -> DdimCoefficients:
    """The coefficients a ``diffusers.DDIMScheduler`` uses for ``steps`` inference steps;
    ``scheduler`` is one, or a ``kil_policy.noise_schedule.NoiseSchedule`` (the same fields).

    Raises:
        ValueError: for settings this closed form does not cover (another prediction type or
            timestep spacing, or eta-dependent variance).
    """
    config = scheduler.config
    if config.prediction_type != "epsilon":
        raise ValueError(f"DDIM coefficients cover epsilon prediction, not {config.prediction_type!r}")
    if config.timestep_spacing != "leading" or getattr(config, "thresholding", False):
        raise ValueError("DDIM coefficients cover 'leading' timestep spacing without thresholding")
    if not 1 <= steps <= config.num_train_timesteps:
        raise ValueError(f"steps must be in [1, {config.num_train_timesteps}], got {steps}")
    ratio = config.num_train_timesteps // steps
    timesteps = (np.arange(steps) * ratio)[::-1].astype(np.int64) + config.steps_offset
    alphas = scheduler.alphas_cumprod.to(torch.float32)
    final = scheduler.final_alpha_cumprod.to(torch.float32)
    a_t = alphas[torch.from_numpy(timesteps.copy())]
    a_prev = torch.stack([alphas[t - ratio] if t - ratio >= 0 else final for t in timesteps.tolist()])
    return DdimCoefficients(
        timesteps=torch.from_numpy(timesteps.copy()),
        sqrt_alpha=a_t**0.5,
        sqrt_one_minus_alpha=(1 - a_t) ** 0.5,
        sqrt_alpha_prev=a_prev**0.5,
        sqrt_one_minus_alpha_prev=(1 - a_prev) ** 0.5,
        clip=float(config.clip_sample_range) if config.clip_sample else None,
    )


def ddim_step(sample: Tensor, noise: Tensor, k: int, coefficients: DdimCoefficients) -> Tensor:
    """One DDIM step (eta = 0): x_t (B, T, D) and the predicted noise -> x_prev, at step ``k``."""
    c = coefficients
    original = (sample - c.sqrt_one_minus_alpha[k] * noise) / c.sqrt_alpha[k]
    if c.clip is not None:
        original = original.clamp(-c.clip, c.clip)
    return c.sqrt_alpha_prev[k] * original + c.sqrt_one_minus_alpha_prev[k] * noise
