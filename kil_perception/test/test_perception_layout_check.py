"""The layout check of image matching: an object's keypoints matched together keep their
reference layout, where each keypoint's own argmax lands on a look-alike elsewhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kil_perception.layout_check import LayoutCheckConfig, check_layout, local_maxima
from kil_perception.pipeline import ExtractorConfig, build_extractor
from kil_perception.spec import load_spec

H, W = 120, 160
#: One object's three keypoints on a reference image of the frame's size (an elongated layout,
#: the middle one off-centre, like a shoe's heel, opening and toe).
REFERENCE = np.array([[60.0, 30.0], [62.0, 45.0], [66.0, 90.0]])


def bump(centre: tuple[float, float], value: float, sigma: float = 2.5) -> np.ndarray:
    v, u = np.mgrid[0:H, 0:W]
    return value * np.exp(-((u - centre[0]) ** 2 + (v - centre[1]) ** 2) / (2 * sigma**2))


def frame_layout(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """REFERENCE turned about its centroid by ``angle_deg``, scaled and shifted (px)."""
    centre = REFERENCE.mean(0)
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (REFERENCE - centre) @ rotation.T * scale + centre + np.array(shift)


def maps_for(truth: np.ndarray, true_values, distractors) -> torch.Tensor:
    """(3, H, W) similarity maps: a bump at each true pixel and at each (keypoint, pixel, value)
    distractor, over a low background."""
    maps = np.full((3, H, W), 0.1)
    for k, (point, value) in enumerate(zip(truth, true_values, strict=True)):
        if value is not None:
            maps[k] = np.maximum(maps[k], bump(tuple(point), value))
    for k, point, value in distractors:
        maps[k] = np.maximum(maps[k], bump(point, value))
    return torch.from_numpy(maps.astype(np.float32))


def check(maps: torch.Tensor, weight: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return check_layout(maps, REFERENCE, [W], [[0, 1, 2]], LayoutCheckConfig(weight=weight))


def test_a_keypoint_matched_onto_a_look_alike_comes_back_to_its_object() -> None:
    truth = frame_layout(90.0, 1.2, (15.0, -5.0))  # the object turned a quarter and nearer the camera
    decoy = (140.0, 110.0)  # a fixture's corner that looks more like the heel than the heel does
    maps = maps_for(truth, [0.75, 0.8, 0.8], [(0, decoy, 0.85)])
    plain, _, _ = check(maps, weight=0.0)
    np.testing.assert_allclose(plain[0], decoy)  # each keypoint's own argmax: the decoy
    uv, scores, found = check(maps)
    np.testing.assert_allclose(uv, np.round(truth), atol=1.0)
    assert scores[0] == pytest.approx(0.75, abs=0.02) and found.all()


def test_a_hidden_keypoint_is_not_found_where_its_layout_puts_it() -> None:
    """No match supports the pixel: reported not found (lifted, a guessed pixel off the object's
    outline would take the depth of whatever is behind it), where the layout puts it (for display)."""
    truth = frame_layout(-30.0, 0.9, (-10.0, 8.0))
    # The toe is under the gripper; its best match is on something else. At a heavy weight (a
    # light one lets the toe take the look-alike: a layout whose middle keypoint sits near one end
    # constrains the far end's distance little) it lands where its layout puts it.
    maps = maps_for(truth, [0.8, 0.8, None], [(2, (10.0, 10.0), 0.5)])
    uv, scores, found = check(maps, weight=1.0)
    np.testing.assert_allclose(uv[:2], np.round(truth[:2]), atol=1.0)
    assert np.linalg.norm(uv[2] - truth[2]) < 3.0
    assert scores[2] == pytest.approx(0.1, abs=0.01)  # the background's similarity there
    assert found.tolist() == [True, True, False]


def test_a_layout_at_an_implausible_scale_is_no_hypothesis() -> None:
    # A small object (its layout 24 px long) and stronger decoys in its shape but five times its
    # size: what a choice of candidates spread over the image can fit when the scale is left free.
    centre = REFERENCE.mean(0)
    small = centre + (REFERENCE - centre) * 0.4
    truth = small + (-30.0, 40.0)
    a = np.deg2rad(90.0)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    big = (small - centre) @ rotation.T * 5.0 + centre + (18.0, -35.0)
    assert ((big >= 0) & (big < (W, H))).all()
    maps = maps_for(truth, [0.8, 0.8, 0.8], [(k, tuple(big[k]), 0.95) for k in range(3)])
    uv, _, _ = check_layout(maps, small, [W], [[0, 1, 2]], LayoutCheckConfig(weight=0.1))
    np.testing.assert_allclose(uv, np.round(truth), atol=1.0)


def test_objects_with_one_or_two_keypoints_keep_their_argmax() -> None:
    truth = frame_layout(0.0, 1.0, (0.0, 0.0))
    maps = maps_for(truth, [0.7, 0.8, 0.8], [(0, (150.0, 100.0), 0.9)])
    uv, _, _ = check_layout(maps, REFERENCE, [W, W], [[0, 1], [2]], LayoutCheckConfig(weight=1.0))
    np.testing.assert_allclose(uv[0], (150.0, 100.0))


def test_local_maxima_are_suppressed_around_the_best_and_padded() -> None:
    maps = maps_for(frame_layout(0.0, 1.0, (0.0, 0.0)), [0.9, 0.9, 0.9], [(0, (150.0, 10.0), 0.5)])
    peaks, values = local_maxima(maps[:1], 3, radius=5)
    assert values[0, 0] == pytest.approx(0.9, abs=1e-3) and values[0, 1] == pytest.approx(0.5, abs=1e-3)
    assert abs(peaks[0, 1] - (150 + 10j)) < 1
    flat = torch.zeros(1, 20, 20)
    flat[0, 5, 7] = 1.0
    peaks, values = local_maxima(flat, 2, radius=30)  # one maximum: the best one repeats
    assert peaks[0, 0] == 7 + 5j and values[0, 0] == 1.0


@pytest.mark.parametrize("radius", [1, 2, 3, 8, 19])
def test_window_max_is_max_pooling(radius: int) -> None:
    from torch.nn import functional as F

    from kil_perception.layout_check import _window_max

    maps = torch.rand(2, 37, 53, generator=torch.Generator().manual_seed(radius))
    pooled = F.max_pool2d(maps[None], 2 * radius + 1, stride=1, padding=radius)[0]
    assert torch.equal(_window_max(_window_max(maps, radius), radius, rows=True), pooled)


def test_a_keypoint_placed_outside_the_image_keeps_its_pixel_and_gets_border_similarities() -> None:
    """A layout can place a hidden keypoint beyond the image's edge (its object half out of view):
    the result keeps that pixel, not found, with the similarities of the nearest border pixel."""
    from kil_perception.matching import result_at

    features = torch.rand(8, 6, 8, generator=torch.Generator().manual_seed(0))
    queries = torch.rand(3, 8, generator=torch.Generator().manual_seed(1))
    uv = torch.tensor([[-12.0, 5.0], [10.0, 70.0], [20.0, 20.0]])
    result = result_at(features, queries, (48, 64), uv, torch.zeros(3), torch.tensor([False, False, True]))
    border = result_at(features, queries, (48, 64), torch.tensor([[0.0, 5.0], [10.0, 47.0], [20.0, 20.0]]),
                       torch.zeros(3), torch.ones(3, dtype=torch.bool))  # fmt: skip
    torch.testing.assert_close(result.similarities, border.similarities)
    torch.testing.assert_close(result.uv, uv)
    assert result.found.tolist() == [False, False, True]


def test_bad_settings_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="layout check weight must be >= 0"):
        LayoutCheckConfig(weight=-1.0)
    with pytest.raises(ValueError, match="layout_check must be 0"):
        ExtractorConfig(layout_check=-0.1)
    with pytest.raises(ValueError, match="layout_check is a check of image matching"):
        ExtractorConfig(method="instance", instance_source="masks", layout_check=0.1)


def test_image_matcher_with_the_check_places_a_covered_keypoint_on_its_object(tmp_path: Path) -> None:
    """Real features (the classic backend) on a textured frame: the reference image shifted, with
    the surroundings of one keypoint covered. Alone, its argmax goes anywhere (and is found);
    checked, it lands where the other two say it is, reported not found."""
    import cv2

    rng = np.random.default_rng(3)
    blocks = (rng.random((H // 10, W // 10, 3)) * 255).astype(np.uint8)  # a patchwork of colours
    reference = cv2.GaussianBlur(cv2.resize(blocks, (W, H), interpolation=cv2.INTER_NEAREST), (0, 0), 1.0)
    cv2.imwrite(str(tmp_path / "ref.png"), reference)
    layout = np.array([[30.0, 20.0], [70.0, 50.0], [130.0, 95.0]])
    keypoints = ", ".join(f"k{i}: [{u}, {v}]" for i, (u, v) in enumerate(layout.tolist()))
    (tmp_path / "spec.yaml").write_text(
        f"categories:\n  - name: shoe\n    references:\n      - image: ref.png\n        keypoints: {{{keypoints}}}\n"
    )
    spec = load_spec(tmp_path / "spec.yaml")
    image = spec.categories[0].references[0].image()  # (RGB)
    frame = np.roll(image, (8, 12), axis=(0, 1)).copy()  # the object moved 12 px right, 8 down
    truth = layout + (12, 8)
    u, v = truth[1].astype(int)
    frame[v - 14 : v + 15, u - 14 : u + 15] = 128  # the middle keypoint covered
    plain = build_extractor(spec, ExtractorConfig(backend="classic")).extract(frame)
    checked = build_extractor(spec, ExtractorConfig(backend="classic", layout_check=1.0)).extract(frame)
    error = {name: np.linalg.norm(found.uv - truth, axis=1) for name, found in (("plain", plain), ("checked", checked))}
    assert (error["plain"][[0, 2]] <= 5).all() and (error["checked"][[0, 2]] <= 5).all()  # visible: found
    assert error["plain"][1] > 15
    assert error["checked"][1] <= 5
    # Placed by its layout, with no match of its own there: not found (masked by the policy).
    assert checked.found.tolist() == [True, False, True] and plain.found.all()
    assert checked.similarities.shape == (3, 3)
