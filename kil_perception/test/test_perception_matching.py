"""Exact upsampled-cosine matching agrees with the naive implementation, borders included."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from kil_perception.matching import (
    descriptors_at,
    match_keypoints,
    match_keypoints_naive,
    upsampled_norm_squared,
)


@pytest.mark.parametrize(
    ("c", "h", "w", "size"),
    [(16, 6, 8, (48, 64)), (32, 5, 7, (37, 53)), (8, 30, 40, (480, 640)), (4, 1, 3, (5, 9)), (24, 9, 9, (9, 9))],
)
def test_norm_map_matches_upsampled_features(c: int, h: int, w: int, size: tuple[int, int]) -> None:
    features = torch.randn(c, h, w, generator=torch.Generator().manual_seed(c))
    upsampled = F.interpolate(features[None].double(), size=size, mode="bilinear", align_corners=False)[0]
    expected = (upsampled**2).sum(0)
    torch.testing.assert_close(upsampled_norm_squared(features.double(), size).double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(10))
def test_exact_argmax_agrees_with_naive(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    c, h, w, k, size = 64, 12, 16, 12, (192, 256)
    features = torch.randn(c, h, w, generator=g)
    # Queries near real feature vectors (including border cells), like reference descriptors.
    cells = torch.stack([torch.randint(0, h, (k,), generator=g), torch.randint(0, w, (k,), generator=g)], 1)
    cells[:3] = torch.tensor([[0, 0], [h - 1, w - 1], [0, w - 1]])
    queries = features[:, cells[:, 0], cells[:, 1]].T + 0.3 * torch.randn(k, c, generator=g)
    exact = match_keypoints(features, queries, size)
    naive = match_keypoints_naive(features, queries, size)
    same = (exact.uv == naive.uv).all(dim=1)
    if not same.all():  # allowed only where the two pixels tie to float precision
        upsampled = F.normalize(F.interpolate(features[None].double(), size=size, mode="bilinear")[0], dim=0)
        q = F.normalize(queries.double(), dim=1)
        for i in torch.nonzero(~same).flatten().tolist():
            a = (q[i] @ upsampled[:, int(exact.uv[i, 1]), int(exact.uv[i, 0])]).item()
            b = (q[i] @ upsampled[:, int(naive.uv[i, 1]), int(naive.uv[i, 0])]).item()
            assert abs(a - b) < 1e-6, (i, a, b)
    torch.testing.assert_close(exact.scores, naive.scores, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(exact.similarities[same], naive.similarities[same], atol=1e-5, rtol=1e-5)


def test_masks_restrict_the_search_and_empty_masks_are_reported() -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(16, 8, 8, generator=g)
    queries = torch.randn(2, 16, generator=g)
    size = (64, 64)
    masks = torch.zeros(2, *size, dtype=torch.bool)
    masks[0, 10:20, 30:40] = True
    result = match_keypoints(features, queries, size, masks)
    u, v = result.uv[0].tolist()
    assert 30 <= u < 40 and 10 <= v < 20 and result.found.tolist() == [True, False]
    assert result.scores[1] == 0.0
    naive = match_keypoints_naive(features, queries, size, masks)
    assert torch.equal(naive.uv[0], result.uv[0])


def test_reference_descriptor_is_found_where_it_was_taken() -> None:
    g = torch.Generator().manual_seed(4)
    features = torch.randn(32, 15, 20, generator=g)
    size = (240, 320)
    uv = torch.tensor([[37.0, 51.0], [300.0, 10.0], [0.0, 239.0]])
    queries = descriptors_at(features, uv, size)
    result = match_keypoints(features, queries, size)
    # Found at the pixel, or on the border plateau where clamped upsampling repeats the same feature.
    assert (result.uv - uv).abs().max() <= 16.0
    assert (result.uv[:2] == uv[:2]).all()
    torch.testing.assert_close(result.similarities.diagonal(), torch.ones(3), atol=1e-4, rtol=0)
