"""Conditional 1-D UNet diffusion head with FiLM residual blocks (Chi et al., Diffusion Policy).

Shapes: sample (B, T, A) actions over the horizon; timestep (B,) or scalar; global condition
(B, C). Every residual block's FiLM scale and bias come from Mish(cond) through a linear layer,
where cond = [step embedding, global condition]. Because that map is linear after the
elementwise Mish, it splits into a step part and a condition part: :meth:`precompute` computes
every block's FiLM parameters for all denoising steps of a chunk at once (the condition is
constant over the loop), and :meth:`forward` then only runs the convolutions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kil_policy.config import HeadConfig


class SinusoidalStepEmbedding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        """(N,) diffusion steps -> (N, dim)."""
        half = self.dim // 2
        scale = math.log(10000) / (half - 1)
        freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -scale)
        angles = t.float()[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish."""

    def __init__(self, channels_in: int, channels_out: int, kernel_size: int, n_groups: int) -> None:
        super().__init__(
            nn.Conv1d(channels_in, channels_out, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, channels_out),
            nn.Mish(),
        )


class ConditionalResidualBlock1D(nn.Module):
    """Two conv blocks with FiLM (scale, bias) between them and a residual connection."""

    def __init__(self, channels_in: int, channels_out: int, cond_dim: int, kernel_size: int, n_groups: int) -> None:
        super().__init__()
        self.out_channels = channels_out
        self.block1 = Conv1dBlock(channels_in, channels_out, kernel_size, n_groups)
        self.block2 = Conv1dBlock(channels_out, channels_out, kernel_size, n_groups)
        self.film = nn.Linear(cond_dim, 2 * channels_out)  # applied to Mish(cond)
        self.residual = nn.Conv1d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: Tensor, film: Tensor) -> Tensor:
        """x (B, C_in, T), film (B, 2 * C_out) -> (B, C_out, T)."""
        scale, bias = film[:, : self.out_channels, None], film[:, self.out_channels :, None]
        out = self.block1(x) * scale + bias
        return self.block2(out) + self.residual(x)


@dataclass
class FilmCache:
    """Per-block FiLM parameters for a chunk: ``films[i]`` is (S, B, 2 * C_i) for S steps."""

    films: list[Tensor]


class ConditionalUnet1D(nn.Module):
    """The diffusion head.

    Args:
        action_dim: A. global_cond_dim: C (observation vectors of the history, concatenated).
        config: channels, kernel, groups, step embedding width.
    """

    def __init__(self, action_dim: int, global_cond_dim: int, config: HeadConfig) -> None:
        super().__init__()
        dsed = config.step_embed_dim
        self.step_embedding = SinusoidalStepEmbedding(dsed)
        self.step_mlp = nn.Sequential(nn.Linear(dsed, 4 * dsed), nn.Mish(), nn.Linear(4 * dsed, dsed))
        self.step_dim = dsed
        cond_dim = dsed + global_cond_dim
        dims = [action_dim, *config.down_dims]
        k, g = config.kernel_size, config.n_groups

        def block(cin: int, cout: int) -> ConditionalResidualBlock1D:
            return ConditionalResidualBlock1D(cin, cout, cond_dim, k, g)

        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(pairwise(dims)):
            last = i == len(dims) - 2
            self.down.append(
                nn.ModuleList(
                    [block(cin, cout), block(cout, cout), nn.Identity() if last else nn.Conv1d(cout, cout, 3, 2, 1)]
                )
            )
        mid = dims[-1]
        self.mid = nn.ModuleList([block(mid, mid), block(mid, mid)])
        self.up = nn.ModuleList()
        # One upsampling per downsampling: every up level ends with a transposed convolution.
        for cin, cout in reversed(list(pairwise(dims[1:]))):
            self.up.append(
                nn.ModuleList([block(2 * cout, cin), block(cin, cin), nn.ConvTranspose1d(cin, cin, 4, 2, 1)])
            )
        self.final = nn.Sequential(Conv1dBlock(dims[1], dims[1], k, g), nn.Conv1d(dims[1], action_dim, 1))
        self._blocks = [m for m in self.modules() if isinstance(m, ConditionalResidualBlock1D)]

    def _encode_steps(self, timesteps: Tensor, like: Tensor) -> Tensor:
        return self.step_mlp(self.step_embedding(timesteps.to(like.device)).to(like.dtype))

    def precompute(self, timesteps: Tensor, global_cond: Tensor) -> FilmCache:
        """FiLM parameters of every block for each of S timesteps and a (B, C) condition.

        Args:
            timesteps: (S,) diffusion steps that will be run.
            global_cond: (B, C), constant over the loop.
        """
        step = F.mish(self._encode_steps(timesteps, global_cond))  # (S, dsed)
        cond = F.mish(global_cond)  # (B, C)
        films = []
        for blk in self._blocks:
            weight, bias = blk.film.weight, blk.film.bias
            step_part = step @ weight[:, : self.step_dim].T  # (S, 2C_out)
            cond_part = cond @ weight[:, self.step_dim :].T + bias  # (B, 2C_out)
            films.append(step_part[:, None] + cond_part[None])
        return FilmCache(films)

    def _films(self, timestep: Tensor, global_cond: Tensor) -> list[Tensor]:
        if timestep.dim() == 0:
            timestep = timestep.expand(global_cond.shape[0])
        cond = torch.cat([self._encode_steps(timestep, global_cond), global_cond], dim=-1)
        cond = F.mish(cond)
        return [blk.film(cond) for blk in self._blocks]

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor | None = None,
        global_cond: Tensor | None = None,
        cache: FilmCache | None = None,
        step_index: int = 0,
    ) -> Tensor:
        """Predict the noise of ``sample``.

        Args:
            sample: (B, T, A) noisy actions.
            timestep: (B,) or () diffusion step (without ``cache``).
            global_cond: (B, C) condition (without ``cache``).
            cache: precomputed FiLM parameters (from :meth:`precompute`) and ``step_index`` into
                its timesteps; then ``timestep`` and ``global_cond`` are not needed.

        Returns:
            (B, T, A) predicted noise.
        """
        films = [f[step_index] for f in cache.films] if cache is not None else self._films(timestep, global_cond)
        films = iter(films)
        x = sample.transpose(1, 2)
        skips = []
        for block1, block2, down in self.down:
            x = block2(block1(x, next(films)), next(films))
            skips.append(x)
            x = down(x)
        for blk in self.mid:
            x = blk(x, next(films))
        for block1, block2, up in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = up(block2(block1(x, next(films)), next(films)))
        return self.final(x).transpose(1, 2)
