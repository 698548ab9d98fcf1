"""Every command README.md shows still exists: each ``python -m MODULE`` runs with ``--help``,
each ``ros2 run PACKAGE EXECUTABLE`` is a console script of that package, each ``ros2 launch
PACKAGE FILE`` a launch file of it. A renamed module cannot leave the documentation behind."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kil_interfaces.background_jobs import BackgroundJob

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_M = sorted(set(re.findall(r"python -m ([A-Za-z_][\w.]*)", README)) - {"pytest", "venv", "pip"})
ROS2_RUN = sorted(set(re.findall(r"ros2 run (\w+) (\w+)", README)))
ROS2_LAUNCH = sorted(set(re.findall(r"ros2 launch (\w+) ([\w.]+\.launch\.py)", README)))


def _helps(job: BackgroundJob) -> dict[str, subprocess.CompletedProcess]:
    """``python -m MODULE --help`` for every README module, three at a time."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = pool.map(lambda module: job.run([sys.executable, "-m", module, "--help"], 240, cwd=ROOT), PYTHON_M)
        return dict(zip(PYTHON_M, runs, strict=True))


# Each module imports its stack (torch for most): about a minute, beside the rest of the suite.
HELPS = BackgroundJob("readme_help", _helps, __name__, cost_s=60)


def test_readme_shows_commands() -> None:
    assert len(PYTHON_M) >= 10 and ROS2_LAUNCH  # the pattern still finds the README's commands


@pytest.mark.background_job
def test_every_python_m_command_runs_with_help() -> None:
    results = HELPS.result()
    broken = {
        module: (done.stdout + done.stderr)[-600:]
        for module, done in results.items()
        if done.returncode != 0 or "usage" not in done.stdout.lower()
    }
    assert not broken, f"README commands that do not run with --help: {broken}"


@pytest.mark.parametrize(("package", "executable"), ROS2_RUN)
def test_ros2_run_commands_name_console_scripts(package: str, executable: str) -> None:
    setup = (ROOT / package / "setup.py").read_text()
    assert re.search(rf'"{executable} = {package}\.\w+:main"', setup), f"{package}/setup.py has no {executable}"


@pytest.mark.parametrize(("package", "launch_file"), ROS2_LAUNCH)
def test_ros2_launch_commands_name_launch_files(package: str, launch_file: str) -> None:
    assert (ROOT / package / "launch" / launch_file).is_file()
