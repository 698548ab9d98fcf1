"""Settings -> extractor: validation, what gets built, and the mask-category parameter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kil_perception.backends import make_backend
from kil_perception.extraction import ImageMatcher, TrackingExtractor
from kil_perception.instances import InstanceMatcher, SimulatorMasks, parse_mask_categories
from kil_perception.pipeline import ExtractorConfig, build_extractor
from kil_perception.spec import load_spec
from kil_perception.tracking import LucasKanadeTracker


@pytest.fixture
def spec(tmp_path: Path):
    import cv2

    image = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "ref.png"), image)
    (tmp_path / "spec.yaml").write_text(
        "categories:\n  - name: mug\n    references:\n      - image: ref.png\n"
        "        keypoints: {a: [10, 10], b: [40, 30], c: [70, 50]}\n"
    )
    return load_spec(tmp_path / "spec.yaml")


@pytest.mark.parametrize(
    ("field", "value"),
    [("method", "flow"), ("instance_source", "yolo"), ("tracker", "sift"), ("track_init", "none")],
)
def test_bad_settings_name_the_field(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=rf"{field} must be one of .*got '{value}'"):
        ExtractorConfig(**{field: value})
    with pytest.raises(ValueError, match="instance_threshold must be in"):
        ExtractorConfig(instance_threshold=1.5)
    with pytest.raises(ValueError, match="redetect_every must be 0"):
        ExtractorConfig(redetect_every=-2)
    with pytest.raises(ValueError, match="mask_guard keeps tracks on instance masks: it needs method 'track'"):
        ExtractorConfig(method="instance", mask_guard=True)
    with pytest.raises(ValueError, match="got method 'track', track_init 'image'"):
        ExtractorConfig(method="track", mask_guard=True)


def test_built_extractors(spec) -> None:
    masks = SimulatorMasks(lambda: (np.ones((60, 80), int), {1: "mug"}))
    assert isinstance(build_extractor(spec, ExtractorConfig(backend="classic")), ImageMatcher)
    config = ExtractorConfig(method="instance", backend="classic", instance_source="masks")
    instance = build_extractor(spec, config, masks)
    assert isinstance(instance, InstanceMatcher)
    assert instance.extract(np.zeros((60, 80, 3), np.uint8)).found.shape == (3,)
    track = build_extractor(
        spec,
        ExtractorConfig(method="track", backend="classic", instance_source="masks", track_init="instance"),
        masks,
    )
    assert isinstance(track, TrackingExtractor) and isinstance(track.initializer, InstanceMatcher)
    assert isinstance(track.tracker, LucasKanadeTracker) and track.redetect_every == 0  # (the paper's)
    assert track.guard is None
    guarded = build_extractor(
        spec,
        ExtractorConfig(
            method="track", backend="classic", instance_source="masks", track_init="instance", mask_guard=True
        ),
        masks,
    )
    assert guarded.guard is guarded.initializer  # the masks the tracks started in keep them on the mug
    config_redetect = ExtractorConfig(method="track", backend="classic", redetect_every=5)
    assert build_extractor(spec, config_redetect).redetect_every == 5
    with pytest.raises(ValueError, match="needs instance masks"):
        build_extractor(spec, config)


def test_mask_categories_parameter() -> None:
    assert parse_mask_categories("1:mug, 2:paper_box") == {1: "mug", 2: "paper_box"}
    for bad in ("mug", "1:", "x:mug", "1-mug"):
        with pytest.raises(ValueError, match="is not VALUE:category"):
            parse_mask_categories(bad)
    with pytest.raises(ValueError, match="needs parameter mask_categories"):
        parse_mask_categories("")


def test_cotracker3_without_a_clone_or_network_says_how_to_provide_it(spec, tmp_path: Path) -> None:
    from kil_perception.backends import WeightsUnavailableError

    config = ExtractorConfig(method="track", backend="classic", tracker="cotracker3", tracker_repo=str(tmp_path / "no"))
    with pytest.raises(WeightsUnavailableError, match=r"CoTracker3 .* not available.*clone .*co-tracker"):
        build_extractor(spec, config)


def test_min_score_marks_weak_matches_not_found(spec) -> None:
    reference = spec.categories[0].references[0].image()
    scrambled = np.ascontiguousarray(reference[::-1, ::-1])  # the keypoints' surroundings are gone
    plain = build_extractor(spec, ExtractorConfig(backend="classic"))
    found = plain.extract(scrambled)
    assert found.found.all()  # argmax matching always finds a pixel
    threshold = float(np.sort(found.scores)[1])  # between the weakest and the strongest match
    gated = build_extractor(spec, ExtractorConfig(backend="classic", min_score=threshold))
    gated_found = gated.extract(scrambled)
    np.testing.assert_array_equal(gated_found.found, found.scores >= threshold)
    assert not gated_found.found.all() and gated_found.found.any()
    np.testing.assert_array_equal(gated_found.uv, found.uv)  # where they are is still reported
    assert gated.extract(reference).found.all()  # the reference itself matches perfectly
    tracked = build_extractor(spec, ExtractorConfig(backend="classic", method="track", min_score=threshold))
    assert tracked.initializer.min_score == threshold  # tracks start from gated matches
    with pytest.raises(ValueError, match="min_score must be a cosine similarity"):
        ExtractorConfig(min_score=2.0)


@pytest.mark.parametrize("backend", ["classic", "effnet_lite0"])
def test_weights_free_backends_take_any_frame_size(spec, backend: str) -> None:
    """Real cameras and crops give sizes that are not multiples of a backend's stride (the
    classic backend once failed on them in OpenCV): features for every size, keypoints inside the
    frame, and a frame that is the reference minus its last row and column matches where the
    reference keypoints are."""
    import cv2

    reference = spec.categories[0].references[0].image()
    matcher = ImageMatcher(spec, make_backend(backend))
    for h, w in ((59, 81), (61, 79), (18, 23), (3, 5), (1, 1), (243, 321)):
        frame = cv2.resize(reference, (w, h), interpolation=cv2.INTER_LINEAR)
        features = matcher.backend.features(frame)
        assert features.ndim == 3 and features.shape[1] >= 1 and features.shape[2] >= 1
        found = matcher.extract(frame)
        assert np.isfinite(found.uv).all() and (found.uv >= 0).all(), (h, w)
        assert (found.uv[:, 0] <= w - 1).all() and (found.uv[:, 1] <= h - 1).all(), (h, w, found.uv)
    cropped = np.ascontiguousarray(reference[:-1, :-1])
    found = matcher.extract(cropped)
    expected = np.array(list(spec.categories[0].references[0].keypoints.values()), float)
    assert np.abs(found.uv - expected).max() <= 4.0, found.uv


def test_tracking_restarts_from_matching_when_the_frame_size_changes(spec) -> None:
    """A reconfigured camera (another resolution mid-stream) cannot be tracked across: the first
    frame of the new size is matched (cosine scores), later ones are tracked again (scores 1)."""
    import cv2

    reference = spec.categories[0].references[0].image()
    extractor = build_extractor(spec, ExtractorConfig(method="track", backend="classic"))
    calls = []
    original = extractor.initializer.extract
    extractor.initializer.extract = lambda image: calls.append(image.shape[:2]) or original(image)
    larger = cv2.resize(reference, (160, 120), interpolation=cv2.INTER_LINEAR)
    for frame in (reference, reference, larger, larger, reference):
        found = extractor.extract(np.ascontiguousarray(frame))
        assert (found.uv[:, 0] <= frame.shape[1] - 1).all() and (found.uv[:, 1] <= frame.shape[0] - 1).all()
    assert calls == [(60, 80), (120, 160), (60, 80)]
    expected = np.array(list(spec.categories[0].references[0].keypoints.values()), float)
    np.testing.assert_allclose(extractor.extract(reference).uv, expected, atol=1.0)  # tracked on
