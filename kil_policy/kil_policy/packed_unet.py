"""Inference-only, time-major copy of a :class:`~kil_policy.unet.ConditionalUnet1D`.

At batch 1 the UNet's cost is reading its weights once per denoising step: every temporal
convolution is a skinny matrix product (T = 16, 8 or 4 rows). PyTorch's CPU convolution picks a
single-threaded im2col path for such small inputs, so this copy keeps activations time-major,
(B, T, C), and runs each convolution as one multi-threaded ``F.linear`` over an im2col view with
the weights packed once as (C_out, k * C_in):

- Conv1d (kernel k, stride s): rows are windows of k consecutive time steps of the padded input.
- ConvTranspose1d (kernel 4, stride 2, padding 1), the upsampling: even outputs 2m take
  (x[m-1], x[m]) with taps (3, 1), odd outputs 2m+1 take (x[m], x[m+1]) with taps (2, 0); both are
  windows of two padded rows, so one product gives both halves.

It computes the same float32 numbers as the module up to rounding (tested). Eager, it saves the
single-threaded convolutions; under ``torch.compile`` (:class:`Denoiser` with ``compile=True``)
the GroupNorm/Mish/FiLM chains between the products fuse as well, which on the 2-core CI machine
roughly halves the step time (``python -m kil_policy.bench``). On CUDA, ``compile=True`` uses
the "reduce-overhead" mode, i.e. CUDA graphs. bf16 weights were measured too and gave ~10 % on
top of the compiled float32 step (AMX machine), not worth leaving the paper's fp32 policy.

Weights are copied when packing: pack again after they change (e.g. another checkpoint).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kil_policy.unet import ConditionalResidualBlock1D, ConditionalUnet1D, Conv1dBlock


def _windows(x: Tensor, size: int, stride: int, pad: int) -> Tensor:
    """(B, T, C) -> (B * T_out, size * C) rows of ``size`` consecutive (zero-padded) time steps."""
    if pad:
        x = F.pad(x, (0, 0, pad, pad))
    c = x.shape[2]
    rows = x.unfold(1, size, stride)  # (B, T_out, C, size)
    return rows.transpose(2, 3).reshape(-1, size * c)


@dataclass
class _Conv:
    """A packed Conv1d: weight (C_out, k * C_in), taps in time order."""

    weight: Tensor
    bias: Tensor | None
    kernel: int
    stride: int
    pad: int

    @classmethod
    def pack(cls, conv: nn.Conv1d) -> _Conv:
        weight = conv.weight.detach().permute(0, 2, 1).reshape(conv.out_channels, -1).clone()
        bias = None if conv.bias is None else conv.bias.detach().clone()
        return cls(weight, bias, conv.kernel_size[0], conv.stride[0], conv.padding[0])

    def __call__(self, x: Tensor) -> Tensor:
        """(B, T, C_in) -> (B, T_out, C_out)."""
        b = x.shape[0]
        if self.kernel == 1 and self.stride == 1:
            rows = x.flatten(0, 1)
        else:
            rows = _windows(x, self.kernel, self.stride, self.pad)
        return F.linear(rows, self.weight, self.bias).reshape(b, -1, self.weight.shape[0])


@dataclass
class _UpConv:
    """A packed ConvTranspose1d(C, C, 4, stride 2, padding 1): weight (2 C_out, 2 C_in)."""

    weight: Tensor
    bias: Tensor

    @classmethod
    def pack(cls, conv: nn.ConvTranspose1d) -> _UpConv:
        if (conv.kernel_size[0], conv.stride[0], conv.padding[0]) != (4, 2, 1):
            raise ValueError("only ConvTranspose1d(kernel 4, stride 2, padding 1) is packed")
        w = conv.weight.detach()  # (C_in, C_out, 4)
        even = torch.cat([w[:, :, 3], w[:, :, 1]], dim=0)  # rows (x[m-1], x[m])
        odd = torch.cat([w[:, :, 2], w[:, :, 0]], dim=0)  # rows (x[m], x[m+1])
        weight = torch.cat([even, odd], dim=1).T  # (2 C_out, 2 C_in)
        return cls(weight.contiguous(), conv.bias.detach().clone())

    def __call__(self, x: Tensor) -> Tensor:
        """(B, T, C) -> (B, 2T, C)."""
        b, t, _ = x.shape
        c_out = self.bias.shape[0]
        out = F.linear(_windows(x, 2, 1, 1), self.weight).reshape(b, t + 1, 2, c_out)
        even, odd = out[:, :t, 0], out[:, 1:, 1]  # window m feeds output 2m; window m+1 output 2m+1
        return torch.stack([even, odd], dim=2).reshape(b, 2 * t, c_out) + self.bias


@dataclass
class _ConvBlock:
    """Conv1d -> GroupNorm -> Mish, time-major."""

    conv: _Conv
    groups: int
    norm_weight: Tensor
    norm_bias: Tensor
    eps: float

    @classmethod
    def pack(cls, block: Conv1dBlock) -> _ConvBlock:
        conv, norm = block[0], block[1]
        weight, bias = norm.weight.detach().clone(), norm.bias.detach().clone()
        return cls(_Conv.pack(conv), norm.num_groups, weight, bias, norm.eps)

    def __call__(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        b, t, c = y.shape
        grouped = y.reshape(b, t, self.groups, c // self.groups)
        var, mean = torch.var_mean(grouped, dim=(1, 3), keepdim=True, correction=0)
        y = ((grouped - mean) * torch.rsqrt(var + self.eps)).reshape(b, t, c)
        return F.mish(torch.addcmul(self.norm_bias, y, self.norm_weight))


@dataclass
class _ResidualBlock:
    block1: _ConvBlock
    block2: _ConvBlock
    residual: _Conv | None
    channels: int

    @classmethod
    def pack(cls, block: ConditionalResidualBlock1D) -> _ResidualBlock:
        return cls(
            _ConvBlock.pack(block.block1),
            _ConvBlock.pack(block.block2),
            _pack_optional(block.residual),
            block.out_channels,
        )

    def __call__(self, x: Tensor, film: Tensor) -> Tensor:
        """x (B, T, C_in), film (B, 2 C_out) -> (B, T, C_out)."""
        scale, bias = film[:, None, : self.channels], film[:, None, self.channels :]
        out = torch.addcmul(bias, self.block1(x), scale)
        return self.block2(out) + (x if self.residual is None else self.residual(x))


def _pack_optional(module: nn.Module) -> _Conv | None:
    """A Conv1d packed, or None where the module has an identity instead (no residual projection,
    no downsampling at the last level)."""
    return None if isinstance(module, nn.Identity) else _Conv.pack(module)


class PackedUnet1D:
    """The UNet's denoising step with packed weights (see the module docstring).

    Args:
        unet: the trained module (its weights are copied; the module is not changed).
    """

    def __init__(self, unet: ConditionalUnet1D) -> None:
        with torch.no_grad():
            self.down = [
                (_ResidualBlock.pack(b1), _ResidualBlock.pack(b2), _pack_optional(d)) for b1, b2, d in unet.down
            ]
            self.mid = [_ResidualBlock.pack(b) for b in unet.mid]
            self.up = [(_ResidualBlock.pack(b1), _ResidualBlock.pack(b2), _UpConv.pack(u)) for b1, b2, u in unet.up]
            self.final_block = _ConvBlock.pack(unet.final[0])
            self.final_conv = _Conv.pack(unet.final[1])

    def __call__(self, sample: Tensor, films: list[Tensor]) -> Tensor:
        """Predicted noise.

        Args:
            sample: (B, T, A) noisy actions.
            films: every residual block's FiLM parameters for this step, (B, 2 C_i) each, in the
                order of :meth:`ConditionalUnet1D.precompute`.

        Returns:
            (B, T, A).
        """
        films_iter = iter(films)
        residual = self.residual_block
        x = sample
        skips = []
        for block1, block2, down in self.down:
            x = residual(block2, residual(block1, x, next(films_iter)), next(films_iter))
            skips.append(x)
            x = down(x) if down is not None else x
        for block in self.mid:
            x = residual(block, x, next(films_iter))
        for block1, block2, up in self.up:
            x = torch.cat([x, skips.pop()], dim=2)
            x = up(residual(block2, residual(block1, x, next(films_iter)), next(films_iter)))
        return self.final_conv(self.conv_block(self.final_block, x))

    def residual_block(self, block: _ResidualBlock, x: Tensor, film: Tensor) -> Tensor:
        """One residual block (a subclass may run it otherwise: ``kil_policy.fused_blocks``)."""
        return block(x, film)

    def conv_block(self, block: _ConvBlock, x: Tensor) -> Tensor:
        """One Conv1d -> GroupNorm -> Mish block."""
        return block(x)


class Denoiser:
    """What :meth:`KeypointDiffusionPolicy.predict_action_chunk` calls per denoising step:
    the packed UNet, eager or compiled.

    Args:
        unet: the trained module.
        compile: ``torch.compile`` the step (first call compiles: tens of seconds on a small CPU;
            needs a C++ compiler, Triton on CUDA): the GroupNorm/Mish/FiLM chains between the
            products become fused kernels.
        cuda_graphs: on CUDA, let the compiled step replay its own CUDA graphs ("reduce-overhead");
            False when the caller captures the whole chunk itself (``kil_policy.graphed``).
        triton: run each residual block as two fused Triton kernels (``kil_policy.fused_blocks``;
            CUDA, or Triton's interpreter in tests).
    """

    def __init__(
        self, unet: ConditionalUnet1D, compile: bool = False, cuda_graphs: bool = True, triton: bool = False
    ) -> None:
        if triton:
            from kil_policy.fused_blocks import TritonUnet1D  # (imports Triton only when asked)

            self.packed: PackedUnet1D = TritonUnet1D(unet)
        else:
            self.packed = PackedUnet1D(unet)
        self.compiled = compile
        self._step = self.packed
        # (a step that replays its own graphs overwrites its output on the next call: copied out)
        self._copy_out = False
        if compile:
            self._copy_out = cuda_graphs and next(unet.parameters()).device.type == "cuda"
            mode = "reduce-overhead" if self._copy_out else None
            self._step = torch.compile(self.packed.__call__, mode=mode, dynamic=False)

    @torch.no_grad()
    def __call__(self, sample: Tensor, films: list[Tensor]) -> Tensor:
        """sample (B, T, A), films per block (B, 2 C_i) -> predicted noise (B, T, A)."""
        out = self._step(sample, films)
        return out.clone() if self._copy_out else out
