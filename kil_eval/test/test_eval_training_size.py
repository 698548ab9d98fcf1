"""The pipeline's training sizes become the training configuration they say."""

from __future__ import annotations

import pytest

from kil_eval.pipeline import TrainingSize
from kil_policy.train import parse_config


@pytest.mark.parametrize("observation", ["keypoints", "rgb", "s2"])
@pytest.mark.parametrize("rotation", ["euler", "rot6d"])
def test_training_size_overrides_parse_into_the_policy_config(observation: str, rotation: str) -> None:
    size = TrainingSize(steps=123, batch_size=8, down_dims=(16, 32, 64), image_size=(48, 64), proprio_rotation=rotation)
    shown = ("mug", "tray") if observation == "s2" else ()
    config = parse_config(None, ["data=[x]", "out=y", *size.overrides(observation, shown)])
    assert config.steps == 123 and config.batch_size == 8
    assert config.policy.observation == observation and config.policy.head.down_dims == (16, 32, 64)
    assert config.policy.proprio_rotation == rotation
    assert config.policy.proprio_dim == {"euler": 7, "rot6d": 10}[rotation]
    if observation != "keypoints":
        assert config.policy.image_size == (48, 64) and config.policy.mask_categories == shown
