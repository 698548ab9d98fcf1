"""One rank of the DDP test (started by torch.distributed.run): trains, then saves its own weights."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from kil_policy.train import parse_config, train

if __name__ == "__main__":
    out = Path(sys.argv[1])
    config = parse_config(None, sys.argv[2:])
    result = train(config)
    # Every rank dumps the weights it ended with; the test compares them.
    weights = {k: v.contiguous() for k, v in result.policy.state_dict().items()}
    save_file(weights, out / f"rank{os.environ['RANK']}.safetensors")
    dist.destroy_process_group()
