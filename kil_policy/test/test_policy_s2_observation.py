"""S2's observation: relative depth as min-max normalised inverse depth over the pixels with a
return, the mask of the task's categories only, and the two-channel frame the image encoder takes
(with its own random crop per sample in training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kil_policy.config import PolicyConfig
from kil_policy.image_encoder import ImageEncoder, _crop_window
from kil_policy.s2_observation import relative_depth, s2_frame, task_mask


def test_relative_depth_is_min_max_inverse_depth() -> None:
    depth = np.array([[0.5, 1.0], [np.nan, 2.0], [0.0, 1.0]])
    # Inverse depths 2, 1, -, 0.5, -, 1 -> (x - 0.5) / 1.5 over the returns; 0 where there is none.
    expected = np.array([[1.0, 1 / 3], [0.0, 0.0], [0.0, 1 / 3]], np.float32)
    np.testing.assert_allclose(relative_depth(depth), expected, atol=1e-6)
    assert relative_depth(np.full((2, 3), 0.7)).tolist() == [[1.0] * 3] * 2  # one depth: all nearest
    assert not relative_depth(np.zeros((2, 2))).any()  # no return at all
    # Scale-free: the same scene twice as far gives the same image.
    np.testing.assert_allclose(relative_depth(2 * depth), relative_depth(depth), atol=1e-6)
    with pytest.raises(ValueError, match=r"depth must be \(H, W\)"):
        relative_depth(np.zeros((2, 2, 1)))


def test_task_mask_and_frame() -> None:
    index_map = np.array([[0, 1, 2], [3, 1, 0]])
    categories = {1: "mug", 2: "tray", 3: "distractor_can"}
    mask = task_mask(index_map, categories, ("mug", "tray"))
    assert mask.tolist() == [[False, True, True], [False, True, False]]
    depth = np.array([[1.0, 0.5, 2.0], [1.0, 1.0, 0.0]])
    frame = s2_frame(mask, depth)
    assert frame.shape == (2, 3, 2) and frame.dtype == np.uint8
    assert frame[..., 0].tolist() == [[0, 255, 255], [0, 255, 0]]
    # Inverse depth 1, 2, 0.5, 1, 1, - -> (x - 0.5) / 1.5 * 255.
    assert frame[..., 1].tolist() == [[85, 255, 0], [85, 85, 0]]
    with pytest.raises(ValueError, match="differ in size"):
        s2_frame(mask[:1], depth)


def test_s2_needs_its_categories_and_the_encoder_takes_two_channels() -> None:
    with pytest.raises(ValueError, match="s2 needs mask_categories"):
        PolicyConfig(observation="s2")
    config = PolicyConfig(observation="s2", mask_categories=("mug", "tray"), image_size=(24, 32))
    assert config.uses_images and config.image_channels == 2
    encoder = ImageEncoder(config)
    assert encoder.backbone.conv1.in_channels == 2
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())  # GroupNorm, as diffusion policy
    features = encoder.eval()(torch.rand(3, 2, 48, 64), torch.zeros(3, 7))
    assert features.shape == (3, 512 + 7)
    with pytest.raises(ValueError, match="takes 2-channel images"):
        encoder(torch.rand(3, 3, 48, 64), torch.zeros(3, 7))


def test_training_crops_each_sample_on_its_own() -> None:
    images = torch.arange(20 * 20, dtype=torch.float32).reshape(1, 1, 20, 20).expand(64, 3, 20, 20)
    torch.manual_seed(0)
    crops = _crop_window(images, training=True, fraction=0.9)
    assert crops.shape == (64, 3, 18, 18)
    corners = {float(c[0, 0, 0]) for c in crops}
    assert len(corners) > 1  # not one window for the whole batch
    for crop in crops:  # each a window of the image
        top, left = divmod(int(crop[0, 0, 0]), 20)
        torch.testing.assert_close(crop, images[0, :, top : top + 18, left : left + 18])
    centre = _crop_window(images, training=False, fraction=0.9)
    torch.testing.assert_close(centre, images[:, :, 1:19, 1:19])
