"""The DDIM sampler with precomputed coefficients: the same numbers as diffusers' DDIMScheduler,
and predict_action_chunk the same chunks as a loop over scheduler.step on the same noise."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler

from kil_policy.bench import scheduler_predict
from kil_policy.config import EncoderConfig, HeadConfig, PolicyConfig
from kil_policy.packed_unet import Denoiser
from kil_policy.policy import BatchKeys, KeypointDiffusionPolicy
from kil_policy.sampler import ddim_coefficients, ddim_step


def _scheduler(**overrides) -> DDIMScheduler:
    config = dict(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                  prediction_type="epsilon") | overrides  # fmt: skip
    return DDIMScheduler(**config)


@pytest.mark.parametrize("steps", [14, 4, 7, 100, 1])
@pytest.mark.parametrize("clip", [True, False])
def test_steps_equal_the_schedulers(steps: int, clip: bool) -> None:
    scheduler = _scheduler(clip_sample=clip)
    coefficients = ddim_coefficients(scheduler, steps)
    scheduler.set_timesteps(steps)
    assert torch.equal(coefficients.timesteps, scheduler.timesteps)
    generator = torch.Generator().manual_seed(steps)
    sample = 1.5 * torch.randn(3, 16, 10, generator=generator)
    for k, t in enumerate(scheduler.timesteps):
        noise = torch.randn(3, 16, 10, generator=generator)
        expected = scheduler.step(noise, t, sample).prev_sample
        got = ddim_step(sample, noise, k, coefficients)
        assert (got - expected).abs().max() <= 1e-6, (k, int(t))
        sample = expected


def test_unsupported_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="epsilon prediction"):
        ddim_coefficients(_scheduler(prediction_type="sample"), 14)
    with pytest.raises(ValueError, match="leading"):
        ddim_coefficients(_scheduler(timestep_spacing="trailing"), 14)
    with pytest.raises(ValueError, match=r"steps must be in \[1, 100\]"):
        ddim_coefficients(_scheduler(), 0)


def _small_policy_and_batch(batch_size: int):
    torch.manual_seed(0)
    config = PolicyConfig(
        encoder=EncoderConfig(num_keypoints=5, d_model=32, num_layers=1, num_heads=2, mlp_dim=64),
        head=HeadConfig(down_dims=(32, 64, 128), inference_steps=14),
    )
    policy = KeypointDiffusionPolicy(config).eval()
    policy.fit_normalizers(
        torch.rand(64, 10), torch.rand(64, 7), torch.rand(64, 5, 3), torch.ones(64, 5, dtype=torch.bool)
    )
    valid = torch.ones(batch_size, 2, 5, dtype=torch.bool)
    valid[:, :, -1] = False  # a missing keypoint: the padding mask is part of the captured work
    batch = {
        BatchKeys.PROPRIO: torch.rand(batch_size, 2, 7),
        BatchKeys.KEYPOINTS: torch.rand(batch_size, 2, 5, 3),
        BatchKeys.VALID: valid,
    }
    return policy, batch


@pytest.mark.parametrize("batch_size", [1, 3])
def test_predict_action_chunk_equals_the_scheduler_loop(batch_size: int) -> None:
    policy, batch = _small_policy_and_batch(batch_size)
    noise = torch.randn(batch_size, 16, 10, generator=torch.Generator().manual_seed(1))
    expected = scheduler_predict(policy, batch, 14, noise=noise)
    got = policy.predict_action_chunk(batch, noise=noise)
    assert (got - expected).abs().max() <= 1e-5
    packed = Denoiser(policy.unet)
    got_packed = policy.predict_action_chunk(batch, noise=noise, denoiser=packed)
    assert (got_packed - scheduler_predict(policy, batch, 14, noise=noise, denoiser=packed)).abs().max() <= 1e-5
    # The generator path draws the same initial noise as before.
    a = policy.predict_action_chunk(batch, generator=torch.Generator().manual_seed(1))
    assert (a - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("batch_size", [1, 8])
def test_graphed_sampler_buffers_give_the_chunks_of_predict_action_chunk(batch_size: int) -> None:
    """The graph sampler's static-buffer path (eager here, captured on CUDA) equals
    predict_action_chunk on the same noise, call after call with new inputs."""
    from kil_policy.graphed import GraphedSampler

    policy, batch = _small_policy_and_batch(batch_size)
    sampler = GraphedSampler(policy, batch, capture=False)
    packed = Denoiser(policy.unet)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        inputs = {k: (torch.rand(v.shape, generator=g) if v.dtype != torch.bool else v) for k, v in batch.items()}
        noise = torch.randn(batch_size, 16, 10, generator=g)
        expected = policy.predict_action_chunk(inputs, noise=noise, denoiser=packed)
        assert (sampler(inputs, noise=noise) - expected).abs().max() <= 1e-5
    with pytest.raises(ValueError, match=r"batch\['proprio'\] has shape \(2, 2, 7\); this sampler was built for"):
        sampler({**batch, BatchKeys.PROPRIO: torch.rand(2, 2, 7)})
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        GraphedSampler(policy, batch, capture=True)


def test_bf16_is_kept_within_its_tolerance_and_refused_beyond_it() -> None:
    """precision bf16 (autocast) is measured against float32 on the example batch: kept where the
    normalised actions stay within the tolerance, float32 (with a warning) where they do not."""
    from kil_policy.graphed import GraphedSampler

    policy, batch = _small_policy_and_batch(2)
    packed = Denoiser(policy.unet)
    noise = torch.randn(2, 16, 10, generator=torch.Generator().manual_seed(3))
    fp32 = policy.predict_action_chunk(batch, noise=noise, denoiser=packed)
    loose = GraphedSampler(policy, batch, capture=False, precision="bf16", tolerance=0.5)
    assert loose.precision == "bf16" and 0.0 < loose.precision_error <= 0.5
    got = loose(batch, noise=noise)
    assert got.dtype == torch.float32 and 0.0 < (got - fp32).abs().max() < 0.5
    assert not torch.is_autocast_enabled("cpu")  # the autocast region ended with the call
    refused = r"precision bf16 moved the actions by 0\.\d+ .*tolerance 1e-06: sampling in fp32"
    with pytest.warns(UserWarning, match=refused):
        strict = GraphedSampler(policy, batch, capture=False, precision="bf16", tolerance=1e-6)
    assert strict.precision == "fp32" and strict.precision_error == pytest.approx(loose.precision_error, rel=1e-3)
    assert (strict(batch, noise=noise) - fp32).abs().max() <= 1e-5


def test_graphed_sampler_refuses_bad_settings() -> None:
    from kil_policy.graphed import GraphedSampler

    policy, batch = _small_policy_and_batch(1)
    with pytest.raises(ValueError, match="precision tf32 needs CUDA tensor cores; the policy is on cpu"):
        GraphedSampler(policy, batch, capture=False, precision="tf32")
    with pytest.raises(ValueError, match="precision must be one of fp32, tf32, bf16, got 'fp16'"):
        GraphedSampler(policy, batch, capture=False, precision="fp16")
    with pytest.raises(ValueError, match="tolerance must be > 0, got 0"):
        GraphedSampler(policy, batch, capture=False, precision="bf16", tolerance=0)
    with pytest.raises(ValueError, match="pass fuse='inductor' or a denoiser, not both"):
        GraphedSampler(policy, batch, capture=False, fuse="inductor", denoiser=Denoiser(policy.unet))
    with pytest.raises(ValueError, match="fuse must be one of none, inductor, triton, got True"):
        GraphedSampler(policy, batch, capture=False, fuse=True)
    with pytest.raises(ValueError, match="fuse triton computes in fp32 or tf32; precision bf16 needs"):
        GraphedSampler(policy, batch, capture=False, fuse="triton", precision="bf16")
    with pytest.raises(ValueError, match=r"Triton kernels need a CUDA device; the policy is on cpu .*TRITON_INTERPRET"):
        GraphedSampler(policy, batch, capture=False, fuse="triton")


def test_runner_graph_mode_needs_cuda() -> None:
    from kil_policy.runner import PolicyRunner

    policy, _ = _small_policy_and_batch(1)
    with pytest.raises(ValueError, match="inference graph needs a CUDA device; the policy is on cpu"):
        PolicyRunner(policy, inference="graph")
    with pytest.raises(ValueError, match="precision 'bf16' and fuse 'none' apply to inference graph only"):
        PolicyRunner(policy, inference="packed", precision="bf16")
    with pytest.raises(ValueError, match="precision 'fp32' and fuse 'inductor' apply to inference graph only"):
        PolicyRunner(policy, inference="compiled", fuse="inductor")
