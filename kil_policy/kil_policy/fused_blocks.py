"""The packed UNet step with each residual block as two Triton kernels (issue #13: at batch 1 a
denoising step is ~30 small GEMMs plus their GroupNorm/Mish/FiLM chains, each its own launch).

One kernel computes a whole ``Conv1d -> GroupNorm -> Mish`` block and its epilogue for one
(batch element, group) pair: the temporal convolution as a GEMM over the im2col rows (taps
gathered on load, zero padding by masking), then, with the group's (T, C / G) tile still in
registers, the group statistics, the affine, Mish and either the FiLM modulation (first block of
a residual block) or the residual (second block: the block input added, or its 1x1 projection
computed in the same kernel). A residual block is therefore two launches instead of ~8.

The grid is B x G programs, so at batch 1 only G (8) programs share the weight reads: the kernel
pays where the batch fills the GPU (batched chunks) and is measured against the inductor-fused
step by ``python -m kil_policy.bench`` on CUDA. Precision: float32 inputs, float32
accumulation; ``tl.dot`` runs in TF32 while ``torch.backends.cuda.matmul.allow_tf32`` is set (as
``GraphedSampler(precision="tf32")`` sets it), IEEE float32 otherwise.

Blocks the kernel cannot take (channels per group not a power of two >= 16, even kernels) run the
packed torch code. Tests run the kernels on the CPU through Triton's interpreter
(``TRITON_INTERPRET=1``, set before this module is imported).
"""

# Triton's convention, kept: kernel sizes and compile-time constants in capitals.
# ruff: noqa: N803

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from kil_policy.packed_unet import PackedUnet1D, _ConvBlock, _ResidualBlock
from kil_policy.unet import ConditionalUnet1D

_NO_RESIDUAL, _ADD_INPUT, _PROJECT_INPUT = 0, 1, 2
_BLOCK_K = 32


@triton.jit
def _conv_block_kernel(
    x_ptr,  # (B, T, C_in) block input, time-major
    w_ptr,  # (C_out, K * C_in) packed convolution weight, taps in time order
    bias_ptr,  # (C_out,)
    norm_w_ptr,  # (C_out,) GroupNorm affine
    norm_b_ptr,
    film_ptr,  # (B, 2 C_out) scale | shift (FILM only)
    res_x_ptr,  # (B, T, C_res) residual source (RESIDUAL > 0)
    res_w_ptr,  # (C_out, C_res) 1x1 projection (RESIDUAL == 2)
    res_b_ptr,  # (C_out,)
    out_ptr,  # (B, T, C_out)
    T,
    C_IN,
    C_OUT,
    C_RES,
    eps,
    KSIZE: tl.constexpr,
    BLOCK_T: tl.constexpr,
    GROUP_C: tl.constexpr,
    BLOCK_K: tl.constexpr,
    FILM: tl.constexpr,
    RESIDUAL: tl.constexpr,
    PRECISION: tl.constexpr,
):
    b = tl.program_id(0)
    g = tl.program_id(1)
    rt = tl.arange(0, BLOCK_T)
    rc = g * GROUP_C + tl.arange(0, GROUP_C)
    row_ok = rt < T
    k_total = KSIZE * C_IN
    acc = tl.zeros((BLOCK_T, GROUP_C), dtype=tl.float32)
    for k0 in range(0, k_total, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_ok = rk < k_total
        tap = rk // C_IN
        ci = rk - tap * C_IN
        src = rt[:, None] + tap[None, :] - KSIZE // 2
        x_ok = row_ok[:, None] & k_ok[None, :] & (src >= 0) & (src < T)
        xv = tl.load(x_ptr + (b * T + src) * C_IN + ci[None, :], mask=x_ok, other=0.0)
        wv = tl.load(w_ptr + rc[None, :] * k_total + rk[:, None], mask=k_ok[:, None], other=0.0)
        acc += tl.dot(xv, wv, input_precision=PRECISION)
    acc += tl.load(bias_ptr + rc)[None, :]
    # GroupNorm over the group's (T, C / G) values; padded rows left out.
    count = T * GROUP_C
    mean = tl.sum(tl.sum(tl.where(row_ok[:, None], acc, 0.0), axis=1), axis=0) / count
    centred = tl.where(row_ok[:, None], acc - mean, 0.0)
    var = tl.sum(tl.sum(centred * centred, axis=1), axis=0) / count
    y = centred * tl.rsqrt(var + eps)
    y = y * tl.load(norm_w_ptr + rc)[None, :] + tl.load(norm_b_ptr + rc)[None, :]
    # Mish: y tanh(softplus(y)), softplus >= 0 so tanh(s) = (1 - e^-2s) / (1 + e^-2s) cannot overflow.
    softplus = tl.maximum(y, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(y)))
    decay = tl.exp(-2.0 * softplus)
    y = y * (1.0 - decay) / (1.0 + decay)
    if FILM:
        scale = tl.load(film_ptr + b * 2 * C_OUT + rc)
        shift = tl.load(film_ptr + b * 2 * C_OUT + C_OUT + rc)
        y = y * scale[None, :] + shift[None, :]
    if RESIDUAL == 1:
        y += tl.load(res_x_ptr + (b * T + rt[:, None]) * C_OUT + rc[None, :], mask=row_ok[:, None], other=0.0)
    if RESIDUAL == 2:
        racc = tl.zeros((BLOCK_T, GROUP_C), dtype=tl.float32)
        for k0 in range(0, C_RES, BLOCK_K):
            rk = k0 + tl.arange(0, BLOCK_K)
            k_ok = rk < C_RES
            xv = tl.load(res_x_ptr + (b * T + rt[:, None]) * C_RES + rk[None, :], mask=row_ok[:, None] & k_ok[None, :])
            wv = tl.load(res_w_ptr + rc[None, :] * C_RES + rk[:, None], mask=k_ok[:, None], other=0.0)
            racc += tl.dot(xv, wv, input_precision=PRECISION)
        y += racc + tl.load(res_b_ptr + rc)[None, :]
    tl.store(out_ptr + (b * T + rt[:, None]) * C_OUT + rc[None, :], y, mask=row_ok[:, None])


def supported(block: _ConvBlock) -> bool:
    """Whether the kernel can run this block: odd kernel, stride 1, 'same' padding, and a power of
    two >= 16 channels per group (``tl.dot`` tiles)."""
    conv = block.conv
    group = conv.weight.shape[0] // block.groups
    same = conv.stride == 1 and conv.kernel % 2 == 1 and conv.pad == conv.kernel // 2
    return same and conv.bias is not None and group >= 16 and group & (group - 1) == 0


def fused_conv_block(
    block: _ConvBlock,
    x: Tensor,
    film: Tensor | None = None,
    residual: Tensor | None = None,
    projection: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """One launch: ``mish(groupnorm(conv(x)))``, then ``* scale + shift`` (``film`` (B, 2 C_out)),
    or ``+ residual`` (B, T, C_out), or ``+ residual @ W^T + b`` (``projection`` = (W, b), residual
    (B, T, C_res)).

    Args:
        x: (B, T, C_in) float32, contiguous.

    Returns:
        (B, T, C_out).
    """
    b, t, c_in = x.shape
    weight = block.conv.weight
    c_out = weight.shape[0]
    out = torch.empty(b, t, c_out, device=x.device, dtype=torch.float32)
    mode = _NO_RESIDUAL if residual is None else (_ADD_INPUT if projection is None else _PROJECT_INPUT)
    res_w, res_b = projection if projection is not None else (weight, block.conv.bias)
    residual = x if residual is None else residual.contiguous()
    tf32 = x.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
    _conv_block_kernel[(b, block.groups)](
        x.contiguous(),
        weight,
        block.conv.bias,
        block.norm_weight,
        block.norm_bias,
        film if film is not None else x,
        residual,
        res_w,
        res_b,
        out,
        t,
        c_in,
        c_out,
        residual.shape[2],
        block.eps,
        KSIZE=block.conv.kernel,
        BLOCK_T=max(16, triton.next_power_of_2(t)),
        GROUP_C=c_out // block.groups,
        BLOCK_K=_BLOCK_K,
        FILM=film is not None,
        RESIDUAL=mode,
        PRECISION="tf32" if tf32 else "ieee",
    )
    return out


class TritonUnet1D(PackedUnet1D):
    """:class:`PackedUnet1D` with every supported residual block as two fused kernels and the
    final Conv1dBlock as one (same numbers up to float rounding; tested through the interpreter).

    Args:
        unet: the trained module (weights copied, as for the packed step). Its device must be CUDA,
            or the CPU with ``TRITON_INTERPRET=1`` set before this module was imported (tests).
    """

    def __init__(self, unet: ConditionalUnet1D) -> None:
        device = next(unet.parameters()).device
        if device.type != "cuda" and not os.environ.get("TRITON_INTERPRET"):
            raise ValueError(
                f"Triton kernels need a CUDA device; the policy is on {device} (on the CPU only Triton's "
                "interpreter runs them: TRITON_INTERPRET=1, for tests)"
            )
        super().__init__(unet)

    def residual_block(self, block: _ResidualBlock, x: Tensor, film: Tensor) -> Tensor:
        if not (supported(block.block1) and supported(block.block2)):
            return super().residual_block(block, x, film)
        x = x.contiguous()
        hidden = fused_conv_block(block.block1, x, film=film.contiguous())
        if block.residual is None:
            return fused_conv_block(block.block2, hidden, residual=x)
        projection = block.residual
        if projection.kernel != 1 or projection.bias is None:
            return block.block2(hidden) + projection(x)
        return fused_conv_block(block.block2, hidden, residual=x, projection=(projection.weight, projection.bias))

    def conv_block(self, block: _ConvBlock, x: Tensor) -> Tensor:
        return fused_conv_block(block, x.contiguous()) if supported(block) else super().conv_block(block, x)
