"""Load a KIL export with the `lerobot` package itself and compare it with the files (run by
tools/lerobot_check.sh in LeRobot's own venv; not part of CI, see the README's LeRobot section).

    python tools/lerobot_check.py DATASET

Prints one JSON object: the lerobot version, frames and episodes as LeRobot counts them, the
largest differences between LeRobot's items and the parquet rows, and the decoded frames' shape.
Exits 1 when a count or a value differs.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from lerobot.datasets.lerobot_dataset import LeRobotDataset


def main(root: Path) -> int:
    info = json.loads((root / "meta/info.json").read_text())
    dataset = LeRobotDataset("local/kil_export", root=root, video_backend="pyav")
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    rows = [r for path in files for r in pq.read_table(path).to_pylist()]
    rows.sort(key=lambda r: r["index"])
    worst = {"action": 0.0, "observation.state": 0.0, "observation.keypoints": 0.0}
    shape = None
    for i, row in enumerate(rows):
        item = dataset[i]
        for key in worst:
            if key in row:
                worst[key] = max(worst[key], float(np.abs(item[key].numpy() - np.asarray(row[key])).max()))
        if "observation.images.color" in item:
            shape = list(item["observation.images.color"].shape)
    report = {
        "lerobot": version("lerobot"),
        "frames": dataset.num_frames,
        "episodes": dataset.num_episodes,
        "info_frames": info["total_frames"],
        "info_episodes": info["total_episodes"],
        "max_abs_difference": worst,
        "image_shape_chw": shape,
    }
    print(json.dumps(report, indent=2))
    ok = dataset.num_frames == info["total_frames"] == len(rows) and dataset.num_episodes == info["total_episodes"]
    return 0 if ok and all(v < 1e-6 for v in worst.values()) else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
