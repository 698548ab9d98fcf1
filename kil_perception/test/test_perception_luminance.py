"""Matching on luminance (``ExtractorConfig.colour="luminance"``): the backend sees the grey image,
so two images of the same luminance and different hue give the same descriptors; the references
go through the same wrapper; a bad choice is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kil_perception import backends
from kil_perception.backends.base import LUMA, LuminanceBackend, luminance
from kil_perception.pipeline import ExtractorConfig, build_extractor
from kil_perception.spec import load_spec


def test_luminance_is_bt601_luma_in_every_channel() -> None:
    image = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30]]], np.uint8)
    grey = luminance(image)
    assert grey.shape == image.shape and grey.dtype == np.uint8
    expected = np.rint(image.astype(float) @ np.array(LUMA)).astype(np.uint8)
    np.testing.assert_array_equal(grey[..., 0], expected)
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_same_luminance_other_hue_gives_the_same_descriptors() -> None:
    rng = np.random.default_rng(0)
    y = rng.uniform(80, 170, (48, 64))
    grey = np.repeat(np.rint(y)[..., None], 3, axis=2).astype(np.uint8)
    # A colourful image of the same luma: R and G drawn, B solved (no clipping in this range).
    r, g = rng.uniform(60, 190, (2, 48, 64))
    b = (np.rint(y) - LUMA[0] * r - LUMA[1] * g) / LUMA[2]
    keep = (b > 0) & (b < 255)
    r, g, b = (np.where(keep, c, np.rint(y)) for c in (r, g, b))
    colourful = np.stack([r, g, b], axis=-1)
    colourful = np.where(np.abs(colourful @ np.array(LUMA) - np.rint(y))[..., None] < 0.4, colourful, grey)
    colourful = np.rint(colourful).astype(np.uint8)
    inner = backends.make_backend("classic", "cpu", None)
    wrapped = LuminanceBackend(inner)
    assert wrapped.name == "classic+luminance" and wrapped.stride == inner.stride
    torch.testing.assert_close(wrapped.features(colourful), wrapped.features(grey))
    assert not torch.allclose(inner.features(colourful), inner.features(grey))  # colour alone differs


def test_the_extractor_matches_references_through_the_same_wrapper(tmp_path) -> None:
    from kil_eval.specs import make_spec
    from kil_sim.camera import CameraConfig

    spec = load_spec(make_spec("place_mug", tmp_path, CameraConfig(width=160, height=120)))
    grey = build_extractor(spec, ExtractorConfig(backend="classic", colour="luminance"))
    plain = build_extractor(spec, ExtractorConfig(backend="classic"))
    assert isinstance(grey.backend, LuminanceBackend)
    assert not torch.allclose(grey.queries, plain.queries)
    reference = spec.categories[0].references[0].image()
    found = grey.extract(reference)  # the reference frame itself: each keypoint where it was annotated
    truth = np.array(list(spec.categories[0].references[0].keypoints.values()))
    assert np.abs(found.uv[: len(truth)] - truth).max() <= 1.5
    with pytest.raises(ValueError, match="colour must be one of rgb, luminance"):
        ExtractorConfig(colour="hsv")
