"""`make demo DEMO=quick`: every stage of the main job at toy size, so it cannot rot unnoticed —
record, spec, extract, train KIL (instance matching), RGB and S2, evaluate the three with inputs in
the loop (the three methods at once, in processes), report, and one live episode of the node
graph; a rerun reuses the finished stages."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kil_eval.pipeline import EVALUATION_NICENESS
from kil_interfaces.background_jobs import BackgroundJob
from kil_policy.train import cpu_summary


def _demo(job: BackgroundJob, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return job.run([sys.executable, "-m", "kil_eval.demo", "--quick", "--out", str(out), *extra], timeout_s=1800)


def _twice(job: BackgroundJob) -> tuple[Path, subprocess.CompletedProcess, str, subprocess.CompletedProcess]:
    """The quick demo, its report's text, then its rerun without the live episode (which must reuse
    every stage, and rewrites the report)."""
    out = job.workdir / "demo"
    first = _demo(job, out)
    report = out / "report" / "report.md"
    text = report.read_text() if report.is_file() else ""
    return out, first, text, _demo(job, out, "--no-live")


# About two minutes: it runs beside the rest of the suite.
QUICK_DEMO = BackgroundJob("quick_demo", _twice, __name__, cost_s=115)


@pytest.mark.background_job
def test_quick_demo_runs_every_stage_and_reuses_them() -> None:
    tmp_path, done, text, again = QUICK_DEMO.result()
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    lines = done.stdout.splitlines()
    for prefix in ("[record] 2 place_mug", "[spec]", "[extract] KIL-IN", "[train] KIL-IN", "[train] RGB",
                   "[train] S2", "[evaluate] KIL-IN", "[evaluate] RGB", "[evaluate] S2", "[report]",
                   "[live] episode place_mug"):  # fmt: skip
        assert any(line.startswith(prefix) for line in lines), f"no '{prefix}' line in:\n{done.stdout}"
    # The three methods ran at once (the demo's default), each with its own log.
    assert any(line.startswith("[methods] KIL-IN, RGB, S2: 3 at a time") for line in lines), done.stdout
    for method in ("KIL-IN", "RGB", "S2"):
        log = (tmp_path / "logs" / f"{method}.log").read_text()
        assert f"[train] {method}" in log
        # Each evaluated at a lower priority than the other methods' trainings beside it.
        niceness = re.search(rf"^\[methods\] {method}: evaluating at niceness (\d+)$", log, flags=re.MULTILINE)
        assert niceness and int(niceness.group(1)) >= EVALUATION_NICENESS, log[-2000:]
    report = tmp_path / "report" / "report.md"
    assert lines[-1] == f"report: {report}"
    assert "| KIL-IN |" in text and "| RGB |" in text and "| S2 |" in text
    assert "One episode of the live node graph" in text and "why episodes failed" in text
    # The live graph extracts as the checkpoint was trained (KIL-IN: instance matching in the sim's masks).
    assert "method instance, in the simulator's instance masks" in text
    assert "## Wall time" in text and "3 at once in separate processes" in text
    ended = text.split("## Wall time", 1)[1]
    assert all(f"{m} " in ended and " min" in ended for m in ("KIL-IN", "RGB", "S2")), ended
    assert cpu_summary() in ended  # the time depends on the CPU: the report says which
    assert (tmp_path / "report" / "success.png").is_file() and list((tmp_path / "report" / "gifs").glob("*.gif"))
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    for prefix in ("[spec]", "[train] KIL-IN", "[train] RGB", "[train] S2", "[evaluate] KIL-IN", "[evaluate] S2"):
        line = next(line for line in again.stdout.splitlines() if line.startswith(prefix))
        assert " kept" in line, line
