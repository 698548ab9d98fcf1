"""Keypoint matching: cosine similarity of reference descriptors against dense features
bilinearly upsampled to the image size (paper §IV-D), and its argmax.

``match_keypoints`` computes the exact argmax of the upsampled cosine similarity without
materialising the (C, H, W) upsampled features. With f(p) = sum_a w_a(p) F_a the bilinear blend
of a pixel's (up to) 4 low-resolution neighbours:

- the dot product q . f(p) = sum_a w_a(p) (q . F_a) is the bilinear upsampling of the (h, w) map
  q . F, and
- |f(p)|^2 = sum_{a,b} w_a w_b (F_a . F_b) needs only each low-resolution cell's 10 neighbour
  dot products (4 squared norms, 2 horizontal, 2 vertical, 2 diagonal), computed once per frame.

So a frame costs O(C h w) plus O(K H W) instead of O(C H W); ``match_keypoints_naive`` is the
straightforward reference. Both upsamplings are products with per-axis interpolation matrices made
once per (image size, feature size, device): the dot maps are ``R_y (q . F) R_x^T`` and the norm map
is two products over the stacked neighbour maps (``upsampled_norm_squared``), so a frame is a few
GEMMs and reductions, which a GPU runs as a handful of kernels. Upsampling follows
``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)`` exactly, borders
included.

Shapes: features (C, h, w); queries (K, C); image size (H, W); masks (K, H, W) bool or None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

_EPS = 1e-12


@dataclass
class MatchResult:
    """Per keypoint: best pixel, its cosine similarity, and its similarity to every query.

    Attributes:
        uv: (K, 2) float pixel coordinates (u = column, v = row).
        scores: (K,) cosine similarity at the best pixel.
        similarities: (K, K) cosine similarity of the feature at keypoint i's pixel with query j.
        found: (K,) bool, False where a mask left no pixel to match.
    """

    uv: Tensor
    scores: Tensor
    similarities: Tensor
    found: Tensor


def _axis(size_out: int, size_in: int, device) -> tuple[Tensor, Tensor, Tensor]:
    """Low-res neighbours i0, i1 and weight of i1 for each output index (align_corners=False)."""
    scale = size_in / size_out
    src = ((torch.arange(size_out, device=device, dtype=torch.float64) + 0.5) * scale - 0.5).clamp_min(0.0)
    i0 = src.floor().long().clamp_max(size_in - 1)
    i1 = (i0 + 1).clamp_max(size_in - 1)
    return i0, i1, (src - i0).to(torch.float32)


@dataclass(frozen=True)
class _AxisOperators:
    """One axis's bilinear upsampling (size_in -> size_out) as dense matrices, so that a frame's
    upsampling is a few GEMMs (tensor cores on a GPU, a handful of kernels) instead of gathers.

    Attributes:
        i0, i1, w: :func:`_axis`.
        blend: (size_out, size_in) the interpolation, ``blend @ m`` = upsampling of m along the axis.
        norm: (size_out, 2 size_in) [squares | cross] for the |f|^2 expansion: squares has
            (1-w)^2 at i0 and w^2 at i1 (same-cell products), cross has 2 w (1-w) at i0 (the product
            of cell i0 with its next cell, replicated at the border, as the neighbour maps are).
    """

    i0: Tensor
    i1: Tensor
    w: Tensor
    blend: Tensor
    norm: Tensor


_OPERATORS: dict[tuple, _AxisOperators] = {}


def _operators(size_out: int, size_in: int, device: torch.device) -> _AxisOperators:
    """:class:`_AxisOperators`, made once per (sizes, device) (a camera's frames share them)."""
    key = (size_out, size_in, str(device))
    cached = _OPERATORS.get(key)
    if cached is None:
        i0, i1, w = _axis(size_out, size_in, device)
        rows = torch.arange(size_out, device=device)
        blend = torch.zeros(size_out, size_in, device=device)
        blend.index_put_((rows, i0), 1 - w, accumulate=True)
        blend.index_put_((rows, i1), w, accumulate=True)
        squares = torch.zeros(size_out, size_in, device=device)
        squares.index_put_((rows, i0), (1 - w) ** 2, accumulate=True)
        squares.index_put_((rows, i1), w**2, accumulate=True)
        cross = torch.zeros(size_out, size_in, device=device)
        cross[rows, i0] = 2 * w * (1 - w)
        if len(_OPERATORS) > 16:  # (a few cameras and feature sizes at most)
            _OPERATORS.clear()
        cached = _OPERATORS[key] = _AxisOperators(i0, i1, w, blend, torch.cat([squares, cross], dim=1))
    return cached


def upsampled_norm_squared(features: Tensor, size: tuple[int, int]) -> Tensor:
    """|f(p)|^2 of the bilinearly upsampled features at every pixel, (H, W), without (C, H, W).

    With S/X the per-axis square/cross weights (:class:`_AxisOperators`), N the cells' squared
    norms, Hz/V their products with the right/lower neighbour and D half the sum of both diagonal
    products: |f|^2 = [S_y X_y] [[N, Hz], [V, D]] [S_x X_x]^T, two matrix products.
    """
    _, h, w = features.shape
    f = features.float()
    down = torch.cat([f[:, 1:], f[:, -1:]], dim=1)  # F[i+1, j], replicated at the border
    right = torch.cat([f[:, :, 1:], f[:, :, -1:]], dim=2)  # F[i, j+1]
    down_right = torch.cat([down[:, :, 1:], down[:, :, -1:]], dim=2)  # F[i+1, j+1]
    norm = (f * f).sum(0)
    horizontal = (f * right).sum(0)
    vertical = (f * down).sum(0)
    diagonals = 0.5 * ((f * down_right).sum(0) + (right * down).sum(0))
    middle = torch.cat([torch.cat([norm, horizontal], 1), torch.cat([vertical, diagonals], 1)], 0)  # (2h, 2w)
    rows = _operators(size[0], h, f.device).norm
    cols = _operators(size[1], w, f.device).norm
    return rows @ middle @ cols.T


def _feature_at(features: Tensor, uv: Tensor, size: tuple[int, int]) -> Tensor:
    """(K, C) upsampled features at integer pixels uv (K, 2)."""
    _, h, w = features.shape
    rows, cols = _operators(size[0], h, features.device), _operators(size[1], w, features.device)
    y0, y1, wy = rows.i0, rows.i1, rows.w
    x0, x1, wx = cols.i0, cols.i1, cols.w
    v, u = uv[:, 1].long(), uv[:, 0].long()
    fy, fx = wy[v][:, None], wx[u][:, None]
    f = features.float()
    return (
        (1 - fy) * (1 - fx) * f[:, y0[v], x0[u]].T
        + (1 - fy) * fx * f[:, y0[v], x1[u]].T
        + fy * (1 - fx) * f[:, y1[v], x0[u]].T
        + fy * fx * f[:, y1[v], x1[u]].T
    )


def _similarities_at(features: Tensor, queries: Tensor, uv: Tensor, size: tuple[int, int]) -> Tensor:
    """(K, K) cosine similarity of the upsampled feature at keypoint i's integer pixel uv[i] with query j."""
    f = _feature_at(features, uv, size)
    f = f / f.norm(dim=1, keepdim=True).clamp_min(_EPS)
    return f @ F.normalize(queries.float(), dim=1).T


def _finish(cos: Tensor, masks: Tensor | None, queries: Tensor, features: Tensor, size: tuple[int, int]) -> MatchResult:
    k = cos.shape[0]
    if masks is not None:
        cos = cos.masked_fill(~masks, float("-inf"))
    flat = cos.reshape(k, -1)
    scores, index = flat.max(dim=1)
    found = torch.isfinite(scores)
    uv = torch.stack([index % size[1], index // size[1]], dim=1)
    similarities = _similarities_at(features, queries, uv, size)
    return MatchResult(uv.float(), torch.where(found, scores, torch.zeros_like(scores)), similarities, found)


def similarity_maps(features: Tensor, queries: Tensor, size: tuple[int, int]) -> Tensor:
    """(K, H, W) cosine similarity of each query with the upsampled features at every pixel,
    without materialising (C, H, W)."""
    c, h, w = features.shape
    q = F.normalize(queries.float(), dim=1)
    dots = (q @ features.float().reshape(c, h * w)).reshape(-1, h, w)
    rows, cols = _operators(size[0], h, features.device), _operators(size[1], w, features.device)
    upsampled = rows.blend @ dots @ cols.blend.T  # (K, H, W): the bilinear upsampling, as GEMMs
    norm = upsampled_norm_squared(features, size).clamp_min(_EPS).sqrt()
    return upsampled / norm


def match_keypoints(
    features: Tensor, queries: Tensor, size: tuple[int, int], masks: Tensor | None = None
) -> MatchResult:
    """Exact argmax of the upsampled cosine similarity, without materialising (C, H, W)."""
    return _finish(similarity_maps(features, queries, size), masks, queries, features, size)


def result_at(
    features: Tensor, queries: Tensor, size: tuple[int, int], uv: Tensor, scores: Tensor, found: Tensor
) -> MatchResult:
    """The :class:`MatchResult` of keypoints placed at pixels ``uv`` (K, 2) with ``scores`` (K,)
    and ``found`` (K,) bool by another rule than the argmax (e.g. ``layout_check``, whose layout may
    place a hidden keypoint outside the image: its similarities are those of the nearest border
    pixel, its ``uv`` is kept)."""
    inside = torch.stack([uv[:, 0].round().clamp(0, size[1] - 1), uv[:, 1].round().clamp(0, size[0] - 1)], dim=1)
    similarities = _similarities_at(features, queries, inside, size)
    return MatchResult(uv.float(), scores.float(), similarities, found.to(uv.device))


def match_keypoints_naive(
    features: Tensor, queries: Tensor, size: tuple[int, int], masks: Tensor | None = None
) -> MatchResult:
    """Reference: upsample the features to (C, H, W), normalise, dot with the queries."""
    upsampled = F.interpolate(features.float()[None], size=size, mode="bilinear", align_corners=False)[0]
    upsampled = upsampled / upsampled.norm(dim=0, keepdim=True).clamp_min(_EPS)
    cos = torch.einsum("kc,chw->khw", F.normalize(queries.float(), dim=1), upsampled)
    return _finish(cos, masks, queries, features, size)


def descriptors_at(features: Tensor, uv: Tensor, size: tuple[int, int]) -> Tensor:
    """Reference descriptors: the upsampled features at pixels uv (K, 2) of an image of ``size``."""
    return _feature_at(features, uv.round(), size)
