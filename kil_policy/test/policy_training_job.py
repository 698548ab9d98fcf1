"""The learning run of test_policy_training.py, in a process of its own (a background job):
writes the synthetic demonstrations, trains, and saves what the trained policy, still in memory,
predicts for the first held-out windows (the reload test compares the checkpoint against it)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from policy_synthetic import write_episodes
from torch.utils.data import default_collate

from kil_policy.data import WindowDataset, load_episodes
from kil_policy.train import parse_config, train

#: Seed of the sampling noise for the in-memory prediction (the reload test uses the same).
PREDICTION_SEED = 3


def held_out_batch(root: Path) -> dict:
    """The first four held-out windows, collated: what both sides of the reload comparison predict."""
    dataset = WindowDataset(load_episodes([root / "held_out"], min_length=16), 2, 16)
    return default_collate([dataset[i] for i in range(4)])


if __name__ == "__main__":
    root = Path(sys.argv[1])
    write_episodes(root / "train", count=20, seed=0)
    write_episodes(root / "held_out", count=6, seed=99)
    config = parse_config(None, [f"data=[{root / 'train'}]", f"out={root / 'run'}", *sys.argv[2:]])
    result = train(config)
    batch = held_out_batch(root)
    torch.set_num_threads(1)  # the reload test predicts with one thread too: the same sums in the same order
    chunk = result.policy.predict_action_chunk(batch, generator=torch.Generator().manual_seed(PREDICTION_SEED))
    torch.save(chunk, root / "in_memory_prediction.pt")
