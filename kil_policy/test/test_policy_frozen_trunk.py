"""The CPU recipe of the image baselines (``image_backbone: effnet_lite0_frozen``): a frozen
EfficientNet-Lite0 trunk whose features training computes once per frame, a trainable stage and
global average pooling. What must hold: the trunk never changes in training (weights nor
BatchNorm statistics), the cached features give the policy exactly what the images would, the
trunk's ImageNet weights come from the package and travel in the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from kil_policy.config import HeadConfig, PolicyConfig
from kil_policy.data import Episode, TensorWindows
from kil_policy.image_encoder import FrozenTrunkEncoder
from kil_policy.policy import BatchKeys, KeypointDiffusionPolicy


def _config(observation: str = "rgb") -> PolicyConfig:
    return PolicyConfig(
        observation=observation,
        image_backbone="effnet_lite0_frozen",
        image_size=(64, 96),
        mask_categories=("mug", "tray") if observation == "s2" else (),
        head=HeadConfig(down_dims=(16, 32, 64)),
    )


def test_the_trunk_stays_frozen_while_the_stage_learns() -> None:
    torch.manual_seed(0)
    policy = KeypointDiffusionPolicy(_config())
    policy.fit_normalizers(torch.rand(50, 10), torch.rand(50, 7), None, None)
    encoder = policy.encoder
    assert isinstance(encoder, FrozenTrunkEncoder)
    before = {k: v.clone() for k, v in encoder.trunk.state_dict().items()}
    stage_before = [p.clone() for p in encoder.stage.parameters()]
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    policy.train()
    assert not encoder.trunk.training  # BatchNorm statistics of the trunk are not updated
    batch = {
        BatchKeys.IMAGE: torch.rand(4, 2, 3, 64, 96),
        BatchKeys.PROPRIO: torch.rand(4, 2, 7),
        BatchKeys.ACTION: torch.rand(4, 16, 10),
    }
    for _ in range(2):
        optimizer.zero_grad()
        policy(batch).backward()
        optimizer.step()
    for name, value in encoder.trunk.state_dict().items():
        torch.testing.assert_close(value, before[name], msg=f"trunk {name} changed")
    assert any(not torch.equal(a, b) for a, b in zip(stage_before, encoder.stage.parameters(), strict=True))


@pytest.mark.parametrize("observation", ["rgb", "s2"])
def test_cached_features_give_the_policy_what_the_images_give(observation: str) -> None:
    torch.manual_seed(0)
    config = _config(observation)
    channels = config.image_channels
    rng = np.random.default_rng(0)
    episodes = [
        Episode(
            name=f"e{i}",
            times_ns=np.arange(20) * 100_000_000,
            actions=rng.normal(size=(20, 10)).astype(np.float32),
            proprio=rng.normal(size=(20, 7)).astype(np.float32),
            images=rng.integers(0, 255, (20, 48, 64, channels), dtype=np.uint8),
        )
        for i in range(2)
    ]
    policy = KeypointDiffusionPolicy(config).eval()
    policy.fit_normalizers(torch.rand(50, 10), torch.rand(50, 7), None, None)
    frames = TensorWindows(episodes, config.n_obs_steps, config.horizon, use_keypoints=False, use_images=True)
    features = TensorWindows(episodes, config.n_obs_steps, config.horizon, use_keypoints=False, use_images=True)
    features.cache_image_features(policy.encoder.trunk_features, chunk=7, progress=False)
    assert BatchKeys.IMAGE not in features.data and features.data[BatchKeys.IMAGE_FEATURES].dtype == torch.float16
    assert features.data[BatchKeys.IMAGE_FEATURES].shape == (40, 112, 4, 6)  # 64x96 at stride 16
    indices = torch.tensor([0, 5, 19, 21, 39])
    from_images = policy.encode(frames.batch(indices))
    from_cache = policy.encode(features.batch(indices))
    torch.testing.assert_close(from_cache, from_images, atol=2e-2, rtol=2e-2)  # float16 cache
    assert from_images.shape == (5, 2 * (256 + 7))


def test_pretrained_trunk_comes_from_the_package_and_travels_in_the_checkpoint(tmp_path) -> None:
    from kil_perception.backends.effnet import build_model
    from kil_policy.checkpoint import load_policy, save_policy

    policy = KeypointDiffusionPolicy(_config())
    policy.fit_normalizers(torch.rand(50, 10), torch.rand(50, 7), None, None)
    random_conv = policy.encoder.trunk.conv_stem.weight.clone()
    policy.encoder.load_pretrained()
    imagenet = build_model(pretrained=True).conv_stem.weight
    torch.testing.assert_close(policy.encoder.trunk.conv_stem.weight, imagenet)
    assert not torch.equal(random_conv, imagenet)
    save_policy(tmp_path / "ckpt", policy, {})
    loaded = load_policy(tmp_path / "ckpt")
    torch.testing.assert_close(loaded.encoder.trunk.conv_stem.weight, imagenet)
    image = torch.rand(1, 2, 3, 64, 96)
    batch = {BatchKeys.IMAGE: image, BatchKeys.PROPRIO: torch.rand(1, 2, 7)}
    torch.testing.assert_close(loaded.eval().encode(batch), policy.eval().encode(batch))


def test_unknown_backbone_is_refused() -> None:
    with pytest.raises(ValueError, match="image_backbone must be resnet18 or effnet_lite0_frozen"):
        PolicyConfig(observation="rgb", image_backbone="vit")


def test_trunk_features_follow_weights_loaded_after_the_first_call() -> None:
    """The trunk computes with its batch norms folded (a copy made once); loading other weights
    (a checkpoint, the ImageNet weights) must reach the features, not the stale copy."""
    torch.manual_seed(0)
    encoder = FrozenTrunkEncoder(_config())
    images = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        unfolded = encoder.trunk((F.interpolate(images, size=(64, 96)) - encoder.mean) / encoder.std)[-1]
    first = encoder.trunk_features(images)
    torch.testing.assert_close(first, unfolded, rtol=1e-4, atol=1e-4)
    other = FrozenTrunkEncoder(_config())
    with torch.no_grad():
        for module in other.trunk.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
    encoder.trunk.load_state_dict(other.trunk.state_dict())
    again = encoder.trunk_features(images)
    assert not torch.allclose(again, first)
    torch.testing.assert_close(again, other.trunk_features(images))
