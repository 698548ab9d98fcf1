"""The diffusion head's noise schedule: betas -> cumulative alphas, and the forward (noising)
process of training, as plain tensor arithmetic.

The numbers are diffusers' ``DDPMScheduler`` / ``DDIMScheduler`` ones for the same settings
(``kil_policy/test/test_policy_noise_schedule.py`` compares them), computed here so that
``policy_node``, training and evaluation do not import diffusers: its import pulls in
``torch._dynamo`` and costs about 4 s of CPU per process, more than torch itself. diffusers
stays the reference in the tests and in ``kil_policy.bench``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor

from kil_policy.config import BETA_SCHEDULES


@dataclass(frozen=True)
class NoiseSchedule:
    """DDPM training schedule and its DDIM sampling settings (diffusers' field names, so that
    ``kil_policy.sampler.ddim_coefficients`` reads this as it reads a ``DDIMScheduler``).

    Attributes:
        num_train_timesteps: diffusion steps in training. beta_schedule: one of BETA_SCHEDULES.
        clip_sample: clip the predicted clean sample to ``clip_sample_range`` at inference.
        beta_start, beta_end: the linear schedules' end points. set_alpha_to_one: DDIM's last
            step goes to alpha 1. The rest are DDIM's defaults, fixed here.
    """

    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    beta_start: float = 0.0001
    beta_end: float = 0.02
    set_alpha_to_one: bool = True
    prediction_type: str = "epsilon"
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    thresholding: bool = False
    _moved: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")
        if self.num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {self.num_train_timesteps}")

    @property
    def config(self) -> NoiseSchedule:
        """Itself: the settings, where a diffusers scheduler keeps them."""
        return self

    @cached_property
    def betas(self) -> Tensor:
        """(T,) float32 noise variances per training step."""
        t = self.num_train_timesteps
        if self.beta_schedule == "linear":
            return torch.linspace(self.beta_start, self.beta_end, t, dtype=torch.float32)
        if self.beta_schedule == "scaled_linear":
            return torch.linspace(self.beta_start**0.5, self.beta_end**0.5, t, dtype=torch.float32) ** 2

        def alpha_bar(x: float) -> float:  # the squared cosine of Nichol & Dhariwal, capped at 0.999
            return math.cos((x + 0.008) / 1.008 * math.pi / 2) ** 2

        return torch.tensor(
            [min(1 - alpha_bar((i + 1) / t) / alpha_bar(i / t), 0.999) for i in range(t)], dtype=torch.float32
        )

    @cached_property
    def alphas_cumprod(self) -> Tensor:
        """(T,) float32 cumulative product of (1 - beta)."""
        return torch.cumprod(1.0 - self.betas, dim=0)

    @cached_property
    def final_alpha_cumprod(self) -> Tensor:
        """The cumulative alpha DDIM's last step goes to (0-d)."""
        return torch.tensor(1.0) if self.set_alpha_to_one else self.alphas_cumprod[0]

    def alphas_cumprod_on(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        """``alphas_cumprod`` on ``device`` as ``dtype``, moved once: a training step captured as a
        CUDA graph (``kil_policy.train_step``) must not copy from the host inside the capture."""
        key = (torch.device(device), dtype)
        if key not in self._moved:
            self._moved[key] = self.alphas_cumprod.to(key[0], dtype)
        return self._moved[key]

    def add_noise(self, samples: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """The forward process: sqrt(a_t) x + sqrt(1 - a_t) noise.

        Args:
            samples: (B, ...) clean samples. noise: like ``samples``. timesteps: (B,) integer steps.
        """
        alphas = self.alphas_cumprod_on(samples.device, samples.dtype)[timesteps.to(samples.device)]
        shape = (-1,) + (1,) * (samples.dim() - 1)
        return (alphas**0.5).reshape(shape) * samples + ((1 - alphas) ** 0.5).reshape(shape) * noise
