"""Finer features by resizing the frames (``ExtractorConfig.feature_scale``): the backend sees the
frame resized, the references go through the same wrapper, keypoints stay pixels of the camera
image, and a bad factor is refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from kil_perception import backends
from kil_perception.backends.base import ScaledBackend
from kil_perception.pipeline import ExtractorConfig, build_extractor
from kil_perception.spec import load_spec


def test_the_backend_sees_the_resized_frame() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    inner = backends.make_backend("effnet_lite0", "cpu", None)
    wrapped = ScaledBackend(inner, 2.0)
    assert wrapped.name == "effnet_lite0x2" and wrapped.stride == inner.stride / 2
    features = wrapped.features(image)
    resized = cv2.resize(image, (128, 96), interpolation=cv2.INTER_LINEAR)
    torch.testing.assert_close(features, inner.features(resized))
    assert features.shape[1:] == (96 // inner.stride, 128 // inner.stride)  # twice the cells per axis
    assert inner.features(image).shape[1:] == (48 // inner.stride, 64 // inner.stride)


def test_the_extractor_finds_keypoints_in_camera_pixels(tmp_path) -> None:
    from kil_eval.specs import make_spec
    from kil_sim.camera import CameraConfig

    spec = load_spec(make_spec("pour_bottle", tmp_path, CameraConfig(width=160, height=120)))
    fine = build_extractor(spec, ExtractorConfig(backend="effnet_lite0", feature_scale=2.0))
    plain = build_extractor(spec, ExtractorConfig(backend="effnet_lite0"))
    assert isinstance(fine.backend, ScaledBackend) and not isinstance(plain.backend, ScaledBackend)
    assert not torch.allclose(fine.queries, plain.queries)
    reference = spec.categories[0].references[0].image()
    found = fine.extract(reference)  # the reference frame itself: each keypoint where it was annotated
    truth = np.array(list(spec.categories[0].references[0].keypoints.values()))
    assert np.abs(found.uv[: len(truth)] - truth).max() <= 1.5
    for bad in (0.1, 5.0):
        with pytest.raises(ValueError, match="feature_scale must be in"):
            ExtractorConfig(feature_scale=bad)
