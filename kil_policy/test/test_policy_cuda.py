"""CUDA-only checks, run by tools/gpu_check.sh on a GPU machine (``pytest -m cuda``); CI, which
has no GPU, deselects them (pyproject's ``-m "not cuda"``) rather than skipping them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from policy_synthetic import write_episodes
from test_policy_sampler import _small_policy_and_batch

from kil_interfaces.data import KeypointArrayData, RobotStateData
from kil_policy.data import TensorWindows, read_episode
from kil_policy.graphed import GraphedSampler
from kil_policy.packed_unet import Denoiser
from kil_policy.runner import PolicyRunner

pytestmark = pytest.mark.cuda
CUDA = torch.device("cuda")


@pytest.mark.parametrize("batch_size", [1, 8, 64])
def test_the_captured_chunk_equals_the_eager_one(batch_size: int) -> None:
    policy, batch = _small_policy_and_batch(batch_size)
    policy = policy.to(CUDA)
    batch = {k: v.to(CUDA) for k, v in batch.items()}
    sampler = GraphedSampler(policy, batch)
    assert sampler.graph is not None  # captured
    packed = Denoiser(policy.unet)
    for seed in range(3):  # replays with new inputs and noise
        g = torch.Generator(device=CUDA).manual_seed(seed)
        inputs = {
            k: (torch.rand(v.shape, generator=g, device=CUDA) if v.dtype != torch.bool else v) for k, v in batch.items()
        }
        noise = torch.randn(batch_size, 16, 10, generator=g, device=CUDA)
        expected = policy.predict_action_chunk(inputs, noise=noise, denoiser=packed)
        got = sampler(inputs, noise=noise)
        assert (got - expected).abs().max() <= 2e-3  # (cuDNN convolutions may use TF32 either way)


def test_runner_graph_mode_gives_the_packed_modes_chunks() -> None:
    policy, _ = _small_policy_and_batch(1)
    policy = policy.to(CUDA)
    state = RobotStateData(0, "link_base", [0.3, 0.0, 0.2], [0.0, 1.0, 0.0, 0.0], 0.5)
    points = np.random.default_rng(0).uniform(-0.3, 0.3, (5, 3))
    keypoints = KeypointArrayData(
        0, "link_base", "oracle", "", tuple("abcde"), ("x",) * 5, np.zeros(5), np.zeros((5, 2)), points,
        np.ones(5), [True] * 5,
    )  # fmt: skip
    chunks = {mode: PolicyRunner(policy, inference=mode).tick(state, keypoints, 10**9) for mode in ("packed", "graph")}
    np.testing.assert_allclose(chunks["graph"].positions, chunks["packed"].positions, atol=2e-3)


def test_gpu_resident_windows_equal_the_cpu_ones(tmp_path: Path) -> None:
    episodes = [read_episode(bag) for bag in write_episodes(tmp_path, count=3, steps=30)]
    cpu = TensorWindows(episodes, 2, 16)
    gpu = TensorWindows(episodes, 2, 16, device=CUDA)
    indices = torch.tensor([0, 1, 29, 30, 45, 59, 60, 89])
    expected = cpu.batch(indices)
    got = gpu.batch(indices.to(CUDA))
    for key in expected:
        assert got[key].device.type == "cuda"
        torch.testing.assert_close(got[key].cpu(), expected[key], msg=key)
