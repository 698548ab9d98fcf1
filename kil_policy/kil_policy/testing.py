"""Small untrained checkpoints for tests of the nodes and graphs that load one (every package's
tests that need an image-baseline checkpoint use this one)."""

from __future__ import annotations

from pathlib import Path

import torch

from kil_policy.checkpoint import save_policy
from kil_policy.config import HeadConfig, PolicyConfig
from kil_policy.policy import KeypointDiffusionPolicy


def tiny_image_checkpoint(directory: Path, observation: str, task: str = "") -> Path:
    """Save a randomly initialised RGB or S2 (``observation``) policy, 24x32 frames and a small
    head (3 inference steps), normalised around a reachable pose; S2 masks show mug and tray.
    ``task``: recorded as the training task (``train.task``) when given. Returns the checkpoint."""
    config = PolicyConfig(
        observation=observation,
        head=HeadConfig(down_dims=(16, 32, 64), inference_steps=3),
        image_size=(24, 32),
        mask_categories=("mug", "tray") if observation == "s2" else (),
    )
    policy = KeypointDiffusionPolicy(config)
    rng = torch.Generator().manual_seed(0)
    actions = torch.rand(64, 10, generator=rng) * 0.1 + torch.tensor([0.3, 0, 0.2, 1, 0, 0, 0, -1, 0, 1.0])
    policy.fit_normalizers(actions, torch.rand(64, 7, generator=rng) * 0.2, None, None)
    return save_policy(directory, policy, {"train": {"task": task}} if task else None)
