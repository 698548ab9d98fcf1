"""bf16 autocast in training: on by default on CUDA, and on CPUs with native bf16 for the image
baselines only (their convolutions gain; the keypoint policy's small GEMMs do not); explicit
choices win; a bf16 step keeps fp32 weights and a finite loss."""

from __future__ import annotations

import pytest
import torch

import kil_policy.train as train_module
from kil_policy.augmentation import AugmentationConfig
from kil_policy.config import HeadConfig, PolicyConfig
from kil_policy.data import TensorWindows
from kil_policy.policy import KeypointDiffusionPolicy
from kil_policy.train import TrainConfig, use_bf16
from kil_policy.train_step import TrainStep


@pytest.mark.parametrize("native", [True, False])
def test_auto_autocast_rule(native: bool, monkeypatch) -> None:
    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: native)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_bf16("auto", cpu, images=True) is native
    assert use_bf16("auto", cpu, images=False) is False
    assert use_bf16("auto", cuda, images=False) is True
    assert use_bf16("off", cuda, images=True) is False and use_bf16("bf16", cpu, images=False) is True
    with pytest.raises(ValueError, match="autocast must be auto, bf16 or off"):
        TrainConfig(autocast="fp16")


def test_a_bf16_step_keeps_fp32_weights() -> None:
    import numpy as np

    from kil_policy.data import Episode

    torch.manual_seed(0)
    config = PolicyConfig(observation="rgb", image_size=(24, 32), head=HeadConfig(down_dims=(16, 32, 64)))
    policy = KeypointDiffusionPolicy(config)
    n = 20
    episode = Episode(
        "synthetic",
        np.arange(n) * 100_000_000,
        np.random.rand(n, 10),
        np.random.rand(n, 7),
        images=np.random.randint(0, 255, (n, 24, 32, 3), np.uint8),
    )
    policy.fit_normalizers(torch.rand(50, 10), torch.rand(50, 7), None, None)
    windows = TensorWindows([episode], 2, 16, use_keypoints=False, use_images=True)
    optimizer = torch.optim.AdamW(policy.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)
    step = TrainStep(policy, optimizer, windows, 4, AugmentationConfig(), generator, bf16=True)
    before = [p.detach().clone() for p in policy.parameters()]
    step()
    step()
    assert step.bf16 and all(p.dtype == torch.float32 for p in policy.parameters())
    assert np.isfinite(step.take_mean_loss())
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True))  # it learned


def test_the_cpu_summary_reads_what_training_speed_depends_on(monkeypatch) -> None:
    """The demo's report names the CPU it ran on: its vector unit and whether the image baselines
    trained in bf16 there (read from /proc/cpuinfo)."""
    zen4 = "processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9R14\n"
    zen4 += "flags\t\t: fma avx2 avx512f avx512_bf16\n"
    monkeypatch.setattr(train_module, "_cpuinfo", lambda: zen4)
    assert train_module.cpu_has_native_bf16()
    assert train_module.cpu_summary() == "AMD EPYC 9R14 (family 25, model 17), AVX-512, bf16 image-baseline training"
    monkeypatch.setattr(train_module, "_cpuinfo", lambda: zen4.replace(" avx512f avx512_bf16", ""))
    assert train_module.cpu_summary() == "AMD EPYC 9R14 (family 25, model 17), AVX2, fp32 training"
    monkeypatch.setattr(train_module, "_cpuinfo", lambda: "")
    assert train_module.cpu_summary() == "unknown CPU" and not train_module.cpu_has_native_bf16()
