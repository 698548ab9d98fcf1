"""CUDA-only checks of perception, run by tools/gpu_check.sh on a GPU machine (``pytest -m
cuda``); CI, which has no GPU, deselects them. Tiny randomly initialised models: the backbones and
SAM3's vision encoder and DIFT replayed from CUDA graphs give the eager results, frame after frame; an
uncapturable function falls back to eager with one warning; matching on the GPU agrees with the
naive path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from perception_tiny_models import tiny_dift_components, tiny_sam3
from test_perception_vit_backends import IMAGE, _tiny_dinov3, _tiny_radio

from kil_perception.backends.dift import DiftBackend
from kil_perception.backends.vit import DinoV3Backend, RadioBackend
from kil_perception.cuda_graph import GraphedCall
from kil_perception.instances import Sam3Instances
from kil_perception.matching import match_keypoints, match_keypoints_naive

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


@pytest.mark.parametrize(("cls", "build"), [(DinoV3Backend, _tiny_dinov3), (RadioBackend, _tiny_radio)])
def test_graphed_backbones_give_the_eager_features(cls, build) -> None:
    graphed = cls(CUDA, build(), short_side=96)
    eager = cls(CUDA, build(), short_side=96, cuda_graphs=False)
    frames = [IMAGE, np.roll(IMAGE, 40, axis=1), IMAGE[::-1].copy()]
    kept = [graphed.features(frame) for frame in frames]  # (each result is a copy, not the graph's buffer)
    for frame, features in zip(frames, kept, strict=True):
        torch.testing.assert_close(features, eager.features(frame), atol=2e-2, rtol=2e-2)
    assert graphed._backbone.captured == 1 and eager._backbone.captured == 0
    assert not torch.allclose(kept[0], kept[1])


def test_graphed_dift_gives_the_eager_features(tmp_path: Path) -> None:
    graphed = DiftBackend(CUDA, tiny_dift_components(tmp_path / "a"), ensemble_size=2, short_side=64)
    eager = DiftBackend(CUDA, tiny_dift_components(tmp_path / "b"), ensemble_size=2, short_side=64, cuda_graphs=False)
    frames = [IMAGE, np.roll(IMAGE, 40, axis=1)]
    kept = [graphed.features(frame) for frame in frames]
    for frame, features in zip(frames, kept, strict=True):
        torch.testing.assert_close(features, eager.features(frame), atol=3e-2, rtol=3e-2)
    assert graphed._extract.captured == 1 and not torch.allclose(kept[0], kept[1])


def test_graphed_sam3_encoder_gives_the_eager_instances(tmp_path: Path) -> None:
    model, processor = tiny_sam3(tmp_path)
    graphed = Sam3Instances(CUDA, (model, processor))
    eager = Sam3Instances(CUDA, (model, processor), cuda_graphs=False)
    for frame in (IMAGE, np.roll(IMAGE, 30, axis=0)):
        a, b = graphed(frame, "mug", "mug"), eager(frame, "mug", "mug")
        assert [i.score for i in a] == pytest.approx([i.score for i in b], abs=1e-2)
        assert np.mean([np.mean(x.mask == y.mask) for x, y in zip(a, b, strict=True)]) > 0.99
    assert graphed._encoder.captured == 1


def test_an_uncapturable_function_runs_eagerly_with_one_warning() -> None:
    calls = GraphedCall(lambda x: x * float(x.sum()), "host-synchronising function")  # (.item() inside)
    x = torch.arange(4.0, device=CUDA)
    with pytest.warns(UserWarning, match="host-synchronising function: CUDA graph capture failed"):
        first = calls(x)
    torch.testing.assert_close(first, x * 6.0)
    torch.testing.assert_close(calls(x + 1), (x + 1) * 10.0)  # eager from now on, still right
    assert not calls.enabled and calls.captured == 0


def test_gpu_matching_agrees_with_the_naive_path() -> None:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(768, 30, 40, generator=g).to(CUDA)
    queries = torch.randn(12, 768, generator=g).to(CUDA)
    exact = match_keypoints(features, queries, (480, 640))
    naive = match_keypoints_naive(features, queries, (480, 640))
    assert (exact.uv == naive.uv).all(dim=1).sum() >= 11  # (a tie to float precision may differ)
    torch.testing.assert_close(exact.scores, naive.scores, atol=1e-4, rtol=1e-4)
