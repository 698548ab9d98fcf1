"""The noise schedule and learning-rate schedule computed without diffusers: the same numbers as
diffusers' schedulers, and the processes that run a policy or train one never import diffusers."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.optimization import get_cosine_schedule_with_warmup

from kil_policy.config import BETA_SCHEDULES, HeadConfig
from kil_policy.noise_schedule import NoiseSchedule
from kil_policy.sampler import ddim_coefficients
from kil_policy.train import cosine_with_warmup


@pytest.mark.parametrize("beta_schedule", BETA_SCHEDULES)
@pytest.mark.parametrize("steps", [100, 7, 1000])
def test_alphas_and_noising_equal_diffusers(beta_schedule: str, steps: int) -> None:
    ours = NoiseSchedule(num_train_timesteps=steps, beta_schedule=beta_schedule)
    reference = DDPMScheduler(num_train_timesteps=steps, beta_schedule=beta_schedule, prediction_type="epsilon")
    assert torch.equal(ours.betas, reference.betas)
    assert torch.equal(ours.alphas_cumprod, reference.alphas_cumprod)
    generator = torch.Generator().manual_seed(steps)
    samples = torch.randn(6, 16, 10, generator=generator)
    noise = torch.randn(6, 16, 10, generator=generator)
    timesteps = torch.randint(0, steps, (6,), generator=generator)
    assert torch.equal(ours.add_noise(samples, noise, timesteps), reference.add_noise(samples, noise, timesteps))


def test_the_schedule_is_moved_once_per_device_and_dtype() -> None:
    """Noising reuses the moved schedule: a training step captured as a CUDA graph cannot copy from
    the host inside the capture (diffusers' scheduler kept its moved copy the same way)."""
    schedule = NoiseSchedule()
    samples, steps = torch.randn(3, 16, 10, dtype=torch.float64), torch.tensor([0, 5, 99])
    schedule.add_noise(samples, torch.randn_like(samples), steps)
    moved = schedule.alphas_cumprod_on(torch.device("cpu"), torch.float64)
    schedule.add_noise(samples, torch.randn_like(samples), steps)
    assert schedule.alphas_cumprod_on("cpu", torch.float64) is moved
    assert moved.dtype == torch.float64 and torch.equal(moved, schedule.alphas_cumprod.double())


@pytest.mark.parametrize("beta_schedule", BETA_SCHEDULES)
@pytest.mark.parametrize("clip", [True, False])
def test_ddim_coefficients_from_the_schedule_equal_the_schedulers(beta_schedule: str, clip: bool) -> None:
    ours = NoiseSchedule(num_train_timesteps=100, beta_schedule=beta_schedule, clip_sample=clip)
    reference = DDIMScheduler(
        num_train_timesteps=100, beta_schedule=beta_schedule, clip_sample=clip, prediction_type="epsilon"
    )
    assert torch.equal(ours.final_alpha_cumprod, reference.final_alpha_cumprod)
    for steps in (14, 3, 100):
        a, b = ddim_coefficients(ours, steps), ddim_coefficients(reference, steps)
        for name in ("timesteps", "sqrt_alpha", "sqrt_one_minus_alpha", "sqrt_alpha_prev", "sqrt_one_minus_alpha_prev"):
            assert torch.equal(getattr(a, name), getattr(b, name)), (steps, name)
        assert a.clip == b.clip


def test_an_unknown_beta_schedule_is_refused_where_configured() -> None:
    with pytest.raises(ValueError, match=r"head\.beta_schedule must be one of"):
        HeadConfig(beta_schedule="sigmoid")
    with pytest.raises(ValueError, match="beta_schedule must be one of"):
        NoiseSchedule(beta_schedule="cosine")


@pytest.mark.parametrize(("warmup", "total"), [(500, 4000), (0, 10), (10, 10)])
def test_learning_rate_schedule_equals_diffusers(warmup: int, total: int) -> None:
    def rates(make) -> list[float]:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        schedule, out = make(optimizer, warmup, total), []
        for _ in range(total + 3):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return out

    assert rates(cosine_with_warmup) == rates(get_cosine_schedule_with_warmup)


def test_running_or_training_a_policy_imports_no_diffusers() -> None:
    """diffusers' import (torch._dynamo with it) cost each policy_node and training process about 4 s."""
    code = (
        "import sys, kil_policy.policy_node, kil_policy.train, kil_policy.checkpoint\n"
        "print(sorted(m for m in ('diffusers', 'torch._dynamo') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
