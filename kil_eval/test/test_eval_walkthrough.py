"""The README's "your own task" walkthrough runs as written, at toy size: the bash block between the
walkthrough marker and the end of its fence, with the sizes overridden by the environment."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from kil_interfaces.background_jobs import BackgroundJob

ROOT = Path(__file__).resolve().parents[2]


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- walkthrough -->\n```bash\n(.*?)\n```", text, re.S)
    assert match, "README.md has no walkthrough block"
    return match.group(1)


def _walk(job: BackgroundJob) -> subprocess.CompletedProcess:
    sizes = {"EPISODES": "2", "WIDTH": "160", "HEIGHT": "120", "STEPS": "3", "EVAL_EPISODES": "1"}
    return job.run(["bash", "-euo", "pipefail", "-c", walkthrough()], timeout_s=1800, env=job.env | sizes)


# About two minutes: it runs beside the rest of the suite.
WALKTHROUGH = BackgroundJob("readme_walkthrough", _walk, __name__, cost_s=120)


@pytest.mark.background_job
def test_the_readme_walkthrough_runs_at_toy_size() -> None:
    block = walkthrough()
    assert "python -m kil_policy.train" in block and "python -m kil_eval.evaluate" in block
    done = WALKTHROUGH.result()
    tmp_path = WALKTHROUGH.workdir
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "pour_bottle: bottle (mouth" in done.stdout  # the --list line
    assert "keypoints extracted from 2 bags (instance, effnet_lite0)" in done.stdout  # the quality table
    assert "(2 extracted now, the rest cached)" in done.stdout  # extract_bags did the work ...
    assert (tmp_path / "work/extraction/episode_0000_keypoints.gif").is_file()
    caches = sorted((tmp_path / "work/demos/episode_0000").glob("kil_keypoints_*.npz"))
    assert len(caches) == 1, caches  # ... and training read its cache (same key), extracting nothing again
    summary = json.loads((tmp_path / "work/results/kil/summary.json").read_text())
    assert [r["task"] for r in summary["results"]] == ["pour_bottle"] * 3  # the checkpoint's task
    report = (tmp_path / "work/report/report.md").read_text()
    assert "# KIL on pour_bottle" in report and "| KIL-IN |" in report
    assert (tmp_path / "work/frame.png").is_file()
