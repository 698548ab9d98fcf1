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


@pytest.mark.parametrize(
    ("precision", "fuse"), [("fp32", "inductor"), ("tf32", "none"), ("fp32", "triton"), ("tf32", "triton")]
)
def test_fused_and_tf32_captured_chunks_stay_within_tolerance_of_fp32(precision: str, fuse: str) -> None:
    """Inductor kernels, Triton residual-block kernels and TF32 inside the captured graph: captured,
    kept within the tolerance of the float32 eager chunk, and the process-wide TF32 flags
    restored. (One inductor compile only: the bench times the fused step in each precision.)"""
    policy, batch = _small_policy_and_batch(8)
    policy = policy.to(CUDA)
    batch = {k: v.to(CUDA) for k, v in batch.items()}
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    sampler = GraphedSampler(policy, batch, precision=precision, fuse=fuse)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    assert sampler.graph is not None and sampler.precision == precision and sampler.precision_error <= 0.01
    noise = torch.randn(8, 16, 10, generator=torch.Generator(device=CUDA).manual_seed(5), device=CUDA)
    expected = policy.action_normalizer.normalize(policy.predict_action_chunk(batch, noise=noise))
    got = policy.action_normalizer.normalize(sampler(batch, noise=noise))
    assert (got - expected).abs().max() <= 0.01


def test_bf16_capture_reports_its_difference() -> None:
    policy, batch = _small_policy_and_batch(1)
    policy = policy.to(CUDA)
    batch = {k: v.to(CUDA) for k, v in batch.items()}
    sampler = GraphedSampler(policy, batch, precision="bf16", tolerance=1.0)
    assert sampler.graph is not None and sampler.precision == "bf16" and 0 < sampler.precision_error < 1.0
    assert sampler(batch).dtype == torch.float32 and torch.isfinite(sampler(batch)).all()


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


def test_the_captured_training_step_trains_like_the_eager_one(tmp_path: Path) -> None:
    """The capture's warm-up leaves the weights and optimiser state as they were; then 150 replayed
    steps lower the loss as 150 eager steps do."""
    import copy

    from test_policy_training import _step_parts

    from kil_policy.train_step import TrainStep

    policy, windows, augmentation = _step_parts(tmp_path, "cuda")
    runs = {}
    for graph in (False, True):
        model = copy.deepcopy(policy)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=torch.tensor(1e-3, device=CUDA), fused=True, capturable=True
        )
        step = TrainStep(model, optimizer, windows, 32, augmentation,
                         torch.Generator(device=CUDA).manual_seed(1), graph=graph)  # fmt: skip
        if graph:
            step._capture()
            assert all(torch.equal(v, initial[k]) for k, v in model.state_dict().items())  # warm-up moved nothing
            assert all(float(s["exp_avg"].abs().sum()) == 0 for s in optimizer.state.values())
            assert float(optimizer.param_groups[0]["lr"]) == pytest.approx(1e-3)  # the warm-up's zero undone
        losses = []
        for s in range(150):
            step()
            if (s + 1) % 10 == 0:
                losses.append(step.take_mean_loss())
        runs[graph] = losses
    eager, graphed = runs[False], runs[True]
    assert graphed[-1] < 0.7 * graphed[0] and eager[-1] < 0.7 * eager[0]
    assert abs(np.mean(graphed[-3:]) - np.mean(eager[-3:])) < 0.3 * np.mean(eager[-3:])
