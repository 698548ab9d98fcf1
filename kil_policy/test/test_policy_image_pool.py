"""``PolicyConfig.image_pool``: global average pooling (the paper's) or spatial softmax (feature
keypoints). What must hold: spatial softmax reports *where* a feature is (the property GAP lacks),
both backbones take either pooling, and a wrong value is refused at construction."""

from __future__ import annotations

import pytest
import torch

from kil_policy.config import HeadConfig, PolicyConfig
from kil_policy.image_encoder import SpatialSoftmax, make_image_encoder
from kil_policy.policy import BatchKeys, KeypointDiffusionPolicy


def _hot_cell(h: int, w: int, row: int, col: int) -> torch.Tensor:
    maps = torch.zeros(1, 4, h, w)
    maps[0, 0, row, col] = 1.0
    return maps


def test_spatial_softmax_reports_where_the_feature_is() -> None:
    pool = SpatialSoftmax(4, num_keypoints=1)
    with torch.no_grad():
        pool.project.weight.zero_()
        pool.project.bias.zero_()
        pool.project.weight[0, 0] = 50.0  # keypoint 0 follows channel 0, sharply
    h, w = 9, 12
    for row, col in [(0, 0), (4, 6), (8, 11), (2, 9)]:
        x, y = pool(_hot_cell(h, w, row, col))[0].tolist()
        assert x == pytest.approx(-1 + 2 * col / (w - 1), abs=1e-3)
        assert y == pytest.approx(-1 + 2 * row / (h - 1), abs=1e-3)
    # global average pooling of the same maps cannot tell the positions apart
    gap = [_hot_cell(h, w, r, c).mean(dim=(2, 3)) for r, c in [(0, 0), (8, 11)]]
    torch.testing.assert_close(gap[0], gap[1])


@pytest.mark.parametrize("backbone", ["resnet18", "effnet_lite0_frozen"])
@pytest.mark.parametrize("pool", ["gap", "spatial_softmax"])
def test_both_backbones_take_either_pooling_and_the_policy_trains(backbone: str, pool: str) -> None:
    torch.manual_seed(0)
    config = PolicyConfig(
        observation="rgb",
        image_size=(64, 96),
        image_backbone=backbone,
        image_pool=pool,
        head=HeadConfig(down_dims=(16, 32, 64)),
    )
    encoder = make_image_encoder(config).eval()
    features = encoder(torch.rand(3, 3, 64, 96), torch.zeros(3, 7))
    assert features.shape == (3, encoder.output_dim)
    assert encoder.output_dim == (64 if pool == "spatial_softmax" else 512 if backbone == "resnet18" else 256) + 7
    policy = KeypointDiffusionPolicy(config)
    policy.fit_normalizers(torch.rand(50, 10), torch.rand(50, 7), None, None)
    policy.train()
    batch = {
        BatchKeys.IMAGE: torch.rand(2, 2, 3, 64, 96),
        BatchKeys.PROPRIO: torch.rand(2, 2, 7),
        BatchKeys.ACTION: torch.rand(2, 16, 10),
    }
    loss = policy(batch)
    loss.backward()
    assert torch.isfinite(loss)
    if pool == "spatial_softmax":
        pooling = policy.encoder.pool if backbone == "effnet_lite0_frozen" else policy.encoder.backbone.avgpool
        assert pooling.project.weight.grad is not None and pooling.log_temperature.grad is not None


def test_an_unknown_pooling_is_refused() -> None:
    with pytest.raises(ValueError, match="image_pool must be gap or spatial_softmax"):
        PolicyConfig(observation="rgb", image_pool="max")
