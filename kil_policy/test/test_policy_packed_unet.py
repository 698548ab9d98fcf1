"""The packed (time-major, im2col) UNet computes what the module computes, eager and compiled."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kil_interfaces.data import KeypointArrayData, RobotStateData
from kil_policy.config import EncoderConfig, HeadConfig, PolicyConfig
from kil_policy.packed_unet import Denoiser, PackedUnet1D
from kil_policy.policy import BatchKeys, KeypointDiffusionPolicy
from kil_policy.runner import PolicyRunner
from kil_policy.unet import ConditionalUnet1D

ACTION_DIM, COND_DIM, HORIZON = 10, 24, 16


def _randomised_unet(head: HeadConfig) -> ConditionalUnet1D:
    """A UNet whose GroupNorm affine parameters are not the identity, so they are exercised."""
    torch.manual_seed(0)
    unet = ConditionalUnet1D(ACTION_DIM, COND_DIM, head).eval()
    with torch.no_grad():
        for module in unet.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.normal_()
                module.bias.normal_()
    return unet


@pytest.mark.parametrize(
    "head",
    [HeadConfig(), HeadConfig(down_dims=(16, 32), kernel_size=3, n_groups=4, step_embed_dim=16)],
    ids=["paper", "small-kernel3"],
)
@pytest.mark.parametrize("batch", [1, 3])
def test_packed_unet_matches_module(head: HeadConfig, batch: int) -> None:
    unet = _randomised_unet(head)
    timesteps = torch.tensor([90, 50, 3])
    cond = torch.randn(batch, COND_DIM)
    cache = unet.precompute(timesteps, cond)
    packed = PackedUnet1D(unet)
    for i in range(len(timesteps)):
        sample = torch.randn(batch, HORIZON, ACTION_DIM)
        with torch.no_grad():
            expected = unet(sample, cache=cache, step_index=i)
        got = packed(sample, [film[i] for film in cache.films])
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)


def test_packed_copy_is_independent_of_later_weight_changes() -> None:
    unet = _randomised_unet(HeadConfig(down_dims=(16, 32), n_groups=4, step_embed_dim=16))
    cache = unet.precompute(torch.tensor([10]), torch.randn(1, COND_DIM))
    sample = torch.randn(1, HORIZON, ACTION_DIM)
    films = [film[0] for film in cache.films]
    packed = PackedUnet1D(unet)
    before = packed(sample, films)
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.add_(1.0)
    torch.testing.assert_close(packed(sample, films), before)
    assert not torch.allclose(PackedUnet1D(unet)(sample, films), before)


def _small_policy() -> KeypointDiffusionPolicy:
    torch.manual_seed(1)
    config = PolicyConfig(
        encoder=EncoderConfig(num_keypoints=4, d_model=32, num_layers=1, num_heads=2, mlp_dim=64),
        head=HeadConfig(down_dims=(16, 32), n_groups=4, step_embed_dim=16, inference_steps=5),
    )
    return KeypointDiffusionPolicy(config).eval()


def _observations(policy: KeypointDiffusionPolicy) -> dict[str, torch.Tensor]:
    n, k = policy.config.n_obs_steps, policy.config.encoder.num_keypoints
    return {
        BatchKeys.PROPRIO: torch.rand(2, n, 7),
        BatchKeys.KEYPOINTS: torch.rand(2, n, k, 3),
        BatchKeys.VALID: torch.ones(2, n, k, dtype=torch.bool),
    }


def test_sampling_with_the_packed_denoiser_matches_the_module() -> None:
    policy = _small_policy()
    batch = _observations(policy)
    expected = policy.predict_action_chunk(batch, generator=torch.Generator().manual_seed(4))
    got = policy.predict_action_chunk(batch, generator=torch.Generator().manual_seed(4), denoiser=Denoiser(policy.unet))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_runner_inference_modes_give_the_same_chunk() -> None:
    """module, packed and compiled (torch.compile with the inductor CPU backend) agree."""
    policy = _small_policy()
    state = RobotStateData(0, "link_base", [0.3, 0.0, 0.2], [0.0, 1.0, 0.0, 0.0], 0.5)
    points = np.random.default_rng(0).uniform(-0.3, 0.3, (4, 3))
    names = ("a", "b", "c", "d")
    keypoints = KeypointArrayData(
        0, "link_base", "oracle", "", names, ("x",) * 4, np.zeros(4), np.zeros((4, 2)), points, np.ones(4), [True] * 4
    )
    chunks = {}
    for mode in ("module", "packed", "compiled"):
        runner = PolicyRunner(policy, inference=mode)
        chunks[mode] = runner.tick(state, keypoints, now_ns=1_000_000_000)
    for mode in ("packed", "compiled"):
        np.testing.assert_allclose(chunks[mode].positions, chunks["module"].positions, atol=1e-5)
        np.testing.assert_allclose(chunks[mode].gripper, chunks["module"].gripper, atol=1e-5)


def test_fused_graph_sampler_gives_the_modules_chunk() -> None:
    """GraphedSampler(fuse="inductor"): the packed step compiled by inductor (no CUDA graphs of its own,
    so an outer capture can hold it) samples the module's chunk (eager buffers on the CPU)."""
    from kil_policy.graphed import GraphedSampler

    policy = _small_policy()
    batch = _observations(policy)
    sampler = GraphedSampler(policy, batch, capture=False, fuse="inductor")
    assert sampler.denoiser.compiled
    noise = torch.randn(1, policy.config.horizon, 10, generator=torch.Generator().manual_seed(2))
    expected = policy.predict_action_chunk(batch, noise=noise)
    torch.testing.assert_close(sampler(batch, noise=noise), expected, atol=1e-5, rtol=1e-4)


def test_runner_rejects_unknown_inference_mode() -> None:
    with pytest.raises(ValueError, match="inference must be one of module, packed, compiled, graph"):
        PolicyRunner(_small_policy(), inference="onnx")
