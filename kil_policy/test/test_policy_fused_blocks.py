"""The Triton residual-block kernels (``kil_policy.fused_blocks``) compute the packed UNet's step,
run on the CPU through Triton's interpreter in a child process (TRITON_INTERPRET must be set before
Triton compiles anything). Small widths with 2 groups keep the interpreter quick while every kernel
variant runs: FiLM epilogue, identity residual, projected residual, final block, padded time rows
(T = 16, 8, 4 against a 16-row tile), and blocks the kernel does not take (8 channels per group)
falling back to the torch code."""

from __future__ import annotations

import json
import sys

import pytest

from kil_interfaces.background_jobs import BackgroundJob

CHECK = r"""
import json, torch
from kil_policy.config import EncoderConfig, HeadConfig, PolicyConfig
from kil_policy.fused_blocks import TritonUnet1D, fused_conv_block, supported
from kil_policy.graphed import GraphedSampler
from kil_policy.packed_unet import PackedUnet1D
from kil_policy.policy import KeypointDiffusionPolicy
from kil_policy.unet import ConditionalUnet1D

out = {}
launches = []
original = fused_conv_block.__globals__["_conv_block_kernel"]


class Counting:
    def __getitem__(self, grid):
        launches.append(grid)
        return original[grid]


fused_conv_block.__globals__["_conv_block_kernel"] = Counting()
for name, dims in (("all_fused", (32, 64, 128)), ("mixed", (16, 64))):
    torch.manual_seed(0)
    unet = ConditionalUnet1D(10, 24, HeadConfig(down_dims=dims, n_groups=2)).eval()
    packed, fused = PackedUnet1D(unet), TritonUnet1D(unet)
    blocks = [b for level in packed.down + packed.up for b in level[:2]] + packed.mid
    out[name + "_supported"] = [supported(b.block1) and supported(b.block2) for b in blocks]
    for batch in (1, 3):
        with torch.no_grad():
            cache = unet.precompute(torch.tensor([5, 60]), torch.randn(batch, 24))
        sample = torch.randn(batch, 16, 10)
        for step in (0, 1):
            films = [f[step] for f in cache.films]
            launches.clear()
            expected, got = packed(sample, films), fused(sample, films)
            out[f"{name}_b{batch}_s{step}"] = {
                "max_error": float((got - expected).abs().max()),
                "scale": float(expected.abs().max()),
                "launches": len(launches),
                "grids": sorted(set(launches)),
            }

# The whole chunk through GraphedSampler(fuse="triton") equals predict_action_chunk.
torch.manual_seed(1)
config = PolicyConfig(
    encoder=EncoderConfig(num_keypoints=3, d_model=16, num_layers=1, num_heads=2, mlp_dim=32),
    head=HeadConfig(down_dims=(32, 64), n_groups=2, inference_steps=3),
)
policy = KeypointDiffusionPolicy(config).eval()
valid = torch.ones(2, 2, 3, dtype=torch.bool)
batch = {"proprio": torch.rand(2, 2, 7), "keypoints": torch.rand(2, 2, 3, 3), "valid": valid}
noise = torch.randn(2, 16, 10)
sampler = GraphedSampler(policy, batch, capture=False, fuse="triton")
out["chunk_error"] = float((sampler(batch, noise=noise) - policy.predict_action_chunk(batch, noise=noise)).abs().max())
print(json.dumps(out))
"""


def _interpret(job: BackgroundJob) -> dict:
    env = {**job.env, "TRITON_INTERPRET": "1"}
    done = job.run([sys.executable, "-c", CHECK], timeout_s=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# About a minute in Triton's interpreter: it runs beside the rest of the suite.
INTERPRETED = BackgroundJob("triton_interpreter", _interpret, __name__, cost_s=60)
pytestmark = pytest.mark.background_job


@pytest.fixture(scope="module")
def interpreted() -> dict:
    return INTERPRETED.result()


def test_fused_blocks_compute_the_packed_step(interpreted: dict) -> None:
    steps = {k: v for k, v in interpreted.items() if isinstance(v, dict)}
    assert len(steps) == 8
    for name, result in steps.items():
        assert result["max_error"] <= 1e-4 * max(1.0, result["scale"]), (name, result)


def test_each_residual_block_is_two_launches_and_unsupported_blocks_fall_back(interpreted: dict) -> None:
    # (32, 64, 128) with 2 groups: 16-64 channels per group, every block fused: 2 launches per
    # residual block (down 3x2, mid 2, up 2x2 = 12 blocks) + the final Conv1dBlock.
    assert all(interpreted["all_fused_supported"])
    assert interpreted["all_fused_b1_s0"]["launches"] == 2 * 12 + 1
    # Grids are (batch, groups).
    assert interpreted["all_fused_b3_s1"]["grids"] == [[3, 2]]
    # (16, 64): the 16-channel level has 8 channels per group, below a tl.dot tile: torch code there.
    # The final block runs at 16 channels as well: torch.
    supported = interpreted["mixed_supported"]
    assert not all(supported) and any(supported)
    assert interpreted["mixed_b1_s0"]["launches"] == 2 * sum(supported)


def test_the_triton_graph_sampler_gives_predict_action_chunks_chunk(interpreted: dict) -> None:
    assert interpreted["chunk_error"] <= 1e-4
