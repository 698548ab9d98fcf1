"""Geometric check of image matching: one object's keypoints are matched together, so that they keep
the layout they have on the reference image.

Plain image matching (paper §III-B) takes each keypoint's argmax on its own. With a backend whose
features do not tell one end of an object from the other, or an object corner from a fixture corner,
a keypoint lands elsewhere while the rest of its object is matched right (on place_shoe with
``effnet_lite0`` the heel lands on the tray's corners once the gripper covers it). The check chooses,
per object instance with at least three keypoints, the pixels that best trade similarity against
the reference layout:

1. Candidates: each keypoint's ``candidates`` best local maxima of its cosine-similarity map
   (non-maximum suppression over a square of ``radius`` pixels).
2. Hypotheses: a 2-D similarity transform (rotation, scale, translation; no reflection) from the
   reference keypoints to the frame, from every pair of candidates of every pair of keypoints, and
   the least-squares fit of the plain argmax.
3. Each hypothesis's score: per keypoint the best of its candidates' similarity minus ``weight``
   times their distance to the transformed reference point (in units of the object's reference
   spread: the RMS distance of its keypoints from their centroid, in frame pixels at the
   reference's scale, so that a hypothesis cannot shrink its distances by growing), or the
   similarity at the transformed point itself.
4. The best hypothesis is refined once: refitted on the keypoints that took a candidate, scored
   again, kept if better.
5. A keypoint that took its transformed reference point takes its nearest candidate if one lies
   within the suppression radius; otherwise it is reported not found. Its layout says where it
   should be (hidden by the gripper, or not recognised), but no match supports the pixel, and a
   guessed pixel off the object's outline lifts to the depth of whatever is behind it (metres off,
   measured on place_mug's carried mug): the policy masks it instead.

Objects in 3-D are not planar, so a turned or lifted object's keypoints are not an exact similarity
of the reference: the weight makes the layout a preference, not a constraint. Instances with one or
two keypoints (two points fit every similarity exactly) keep the plain argmax.

Measured (README, Perception: "The layout check"): with ``effnet_lite0`` the check brings training
keypoints closer to the truth in pixels (place_shoe's resting heel 41 -> 4.5 px), but policies
trained on them did worse on place_mug and place_shoe, so it is off by default.

Points are complex numbers u + iv below; a similarity transform is q = a p + b with a, b complex.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

#: Transforms scaling the reference layout (normalised by its image width) by less/more than this
#: relative to the frame (normalised by its width) are not hypotheses: an object's size on the image
#: changes with its distance to the camera and from one instance to another, but not tenfold; a
#: scale left free would let a spread-out or collapsed choice of candidates fit any layout.
SCALE_RANGE = (0.5, 2.0)


@dataclass(frozen=True)
class LayoutCheckConfig:
    """Attributes:
    weight: similarity given up per reference spread of distance from the layout (0 = off: the
        plain argmax of each keypoint).
    candidates: local maxima per keypoint's similarity map.
    radius_fraction: non-maximum suppression radius, as a fraction of the image width.
    """

    weight: float = 0.1
    candidates: int = 6
    radius_fraction: float = 0.03

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"layout check weight must be >= 0, got {self.weight}")
        if self.candidates < 1:
            raise ValueError(f"layout check candidates must be >= 1, got {self.candidates}")
        if not 0 < self.radius_fraction < 0.5:
            raise ValueError(f"layout check radius_fraction must be in (0, 0.5), got {self.radius_fraction}")


def _window_max(x: Tensor, radius: int, rows: bool = False) -> Tensor:
    """The max over [i - radius, i + radius] along the last axis (the second last with ``rows``) of
    (K, H, W) ``x``, -inf beyond the border: windows doubled log2(2 radius + 1) times (a CPU's
    max_pool2d takes about the window's size per pixel, seconds at 640x480)."""
    if rows:
        return _window_max(x.transpose(1, 2), radius).transpose(1, 2)
    size = 2 * radius + 1
    y = F.pad(x, (radius, radius), value=float("-inf"))
    width = 1  # y[..., j] is the max of the padded x over [j, j + width)
    while 2 * width <= size:
        y = torch.maximum(y[..., :-width], y[..., width:])
        width *= 2
    n = x.shape[-1]
    return torch.maximum(y[..., :n], y[..., size - width : size - width + n])


def local_maxima(maps: Tensor, count: int, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Each map's ``count`` highest local maxima (ties on plateaus: every pixel of the plateau).

    Args:
        maps: (K, H, W) similarity maps.
    Returns:
        uv (K, count) complex pixels (u + iv) and their values (K, count), best first; a map with
        fewer maxima repeats its best one.
    """
    k, height, width = maps.shape
    pooled = _window_max(_window_max(maps, radius), radius, rows=True)  # the square window: rows, then columns
    peaks = torch.where(maps >= pooled, maps, torch.full_like(maps, float("-inf")))
    values, index = peaks.reshape(k, -1).topk(min(count, height * width), dim=1)
    best = index[:, :1].expand_as(index)
    index = torch.where(torch.isfinite(values), index, best)
    values = torch.where(torch.isfinite(values), values, values[:, :1].expand_as(values))
    index, values = index.cpu().numpy(), values.cpu().numpy().astype(np.float64)
    return (index % width) + 1j * (index // width), values


def _fit(reference: np.ndarray, points: np.ndarray, use: np.ndarray) -> tuple[complex, complex]:
    """Least-squares similarity q = a p + b of the ``use``d (n,) complex reference points onto points."""
    p, q = reference[use], points[use]
    pc, qc = p - p.mean(), q - q.mean()
    a = (qc * pc.conj()).sum() / max(float((np.abs(pc) ** 2).sum()), 1e-12)
    return complex(a), complex(q.mean() - a * p.mean())


def _score(
    a: np.ndarray,
    b: np.ndarray,
    reference: np.ndarray,
    unit: float,
    peaks: np.ndarray,
    peak_values: np.ndarray,
    maps: np.ndarray,
    weight: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Score H hypotheses a, b (H,) for one instance's n keypoints.

    Returns: the scores (H,), the chosen pixels (H, n) complex, their values (H, n), and whether
    each keypoint took a candidate (H, n) bool (else the transformed reference point).
    """
    predicted = a[:, None] * reference[None] + b[:, None]  # (H, n)
    distance = np.abs(peaks[None] - predicted[:, :, None]) / unit  # (H, n, M)
    options = peak_values[None] - weight * distance
    best = options.argmax(axis=2)
    best_value = np.take_along_axis(options, best[..., None], axis=2)[..., 0]
    height, width = maps.shape[1:]
    u = np.rint(predicted.real).astype(int)
    v = np.rint(predicted.imag).astype(int)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    rows = np.broadcast_to(np.arange(len(reference)), predicted.shape)
    at_prediction = np.where(inside, maps[rows, v.clip(0, height - 1), u.clip(0, width - 1)], -np.inf)
    took = best_value >= at_prediction
    peak = np.take_along_axis(np.broadcast_to(peaks, distance.shape), best[..., None], 2)[..., 0]
    peak_value = np.take_along_axis(np.broadcast_to(peak_values, distance.shape), best[..., None], 2)[..., 0]
    chosen = np.where(took, peak, predicted)
    values = np.where(took, peak_value, at_prediction)
    return np.maximum(best_value, at_prediction).sum(axis=1), chosen, values, took


def check_instance(
    maps: np.ndarray,
    reference: np.ndarray,
    reference_width: int,
    peaks: np.ndarray,
    peak_values: np.ndarray,
    weight: float,
    snap_px: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The layout-checked pixels of one object instance.

    Args:
        maps: (n, H, W) the instance's keypoints' similarity maps.
        reference: (n, 2) their pixels on the reference image, of width ``reference_width``.
        peaks, peak_values: (n, M) complex candidates and their similarities (:func:`local_maxima`).
        snap_px: a keypoint placed by its layout within this distance of one of its candidates
            takes that candidate (a matched pixel, on what was matched).
    Returns:
        uv (n, 2) float pixels, their similarities (n,) and whether each is a matched pixel (n,)
        bool: False for a keypoint its layout placed away from every candidate (hidden, or not
        recognised), whose pixel may lie off its object (depth there is another surface's).
    """
    n = len(reference)
    ref = reference[:, 0] + 1j * reference[:, 1]
    spread = float(np.sqrt((np.abs(ref - ref.mean()) ** 2).mean()))
    unit = spread * maps.shape[2] / reference_width  # the spread in frame pixels, at the reference's scale
    argmax = np.stack([peaks[:, 0].real, peaks[:, 0].imag], 1), peak_values[:, 0], np.ones(n, bool)
    if n < 3 or spread <= 0:
        return argmax
    a_list, b_list = [], []
    for i, j in combinations(range(n), 2):
        if ref[i] == ref[j]:
            continue
        pi, pj = np.meshgrid(peaks[i], peaks[j], indexing="ij")
        a = ((pj - pi) / (ref[j] - ref[i])).ravel()
        a_list.append(a)
        b_list.append(pi.ravel() - a * ref[i])
    argmax_a, argmax_b = _fit(ref, peaks[:, 0], np.ones(n, bool))
    a = np.concatenate([*a_list, [argmax_a]])
    b = np.concatenate([*b_list, [argmax_b]])
    relative = np.abs(a) * reference_width / maps.shape[2]
    keep = (relative >= SCALE_RANGE[0]) & (relative <= SCALE_RANGE[1])
    if not keep.any():
        return argmax
    a, b = a[keep], b[keep]
    scores, chosen, values, took = _score(a, b, ref, unit, peaks, peak_values, maps, weight)
    h = int(scores.argmax())
    best_score, points, point_values, matched = scores[h], chosen[h], values[h], took[h]
    if took[h].sum() >= 2:  # refit on the keypoints that took a candidate
        ra, rb = _fit(ref, chosen[h], took[h])
        if abs(ra) > 0:
            s, c, v, t = _score(np.array([ra]), np.array([rb]), ref, unit, peaks, peak_values, maps, weight)
            if s[0] > best_score:
                points, point_values, matched = c[0], v[0], t[0]
    # A point placed by the layout beside a candidate is that candidate (the prediction sits on a
    # smooth slope of the same match); far from every candidate it is a guess, reported not found.
    gap = np.abs(peaks - points[:, None])  # (n, M)
    near = gap.argmin(axis=1)
    snap = ~matched & (gap[np.arange(n), near] <= snap_px)
    points = np.where(snap, peaks[np.arange(n), near], points)
    point_values = np.where(snap, peak_values[np.arange(n), near], point_values)
    return np.stack([points.real, points.imag], 1), point_values, matched | snap


def check_layout(
    maps: Tensor,
    reference: np.ndarray,
    reference_widths: list[int],
    groups: list[list[int]],
    config: LayoutCheckConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layout-checked pixels of every keypoint.

    Args:
        maps: (K, H, W) cosine-similarity maps of the K keypoint slots (masked pixels -inf).
        reference: (K, 2) the slots' pixels on their reference images.
        reference_widths: per group, its reference image's width (px).
        groups: the slots of each object instance (a partition of range(K)).
    Returns:
        uv (K, 2) float pixels, their similarities (K,) and found (K,) bool: False where the layout
        placed a keypoint away from every candidate of its own (:func:`check_instance`).
    """
    radius = max(1, round(config.radius_fraction * maps.shape[2]))
    peaks, peak_values = local_maxima(maps, config.candidates, radius)
    uv = np.stack([peaks[:, 0].real, peaks[:, 0].imag], 1)
    scores = peak_values[:, 0].copy()
    found = np.ones(len(uv), bool)
    if config.weight == 0:
        return uv, scores, found
    dense = maps.float().cpu().numpy()
    for slots, width in zip(groups, reference_widths, strict=True):
        index = np.asarray(slots)
        uv[index], scores[index], found[index] = check_instance(
            dense[index], reference[index], width, peaks[index], peak_values[index], config.weight, radius
        )
    return uv, scores, found
