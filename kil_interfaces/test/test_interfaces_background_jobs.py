"""Background jobs of the test session (kil_interfaces.background_jobs, conftest.py): a job runs in a
DDS domain and under a run marker of its own, its failures and leftover processes reach the test that
reads it, and a session starts the jobs when collection ends and runs their readers last."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kil_interfaces import background_jobs
from kil_interfaces.background_jobs import BackgroundJob, BackgroundJobError
from kil_interfaces.testing import RUN_MARKER

ROOT = Path(__file__).resolve().parents[2]
# These tests read jobs they start themselves: marked as every reader must be (they run last).
pytestmark = pytest.mark.background_job
PRINT_ENV = (
    "import os; print(os.environ['ROS_DOMAIN_ID'], os.environ['KIL_TEST_RUN'], os.nice(0), "
    "os.environ.get('OMP_NUM_THREADS', '-'))"
)


def _name(tag: str) -> str:
    return f"{tag}-{os.getpid()}-{time.monotonic_ns()}"


def test_a_started_job_runs_apart_from_the_session_and_reports_its_result() -> None:
    job = BackgroundJob(_name("env"), lambda j: j.run([sys.executable, "-c", PRINT_ENV], 60), __name__)
    background_jobs.start([job])
    done = job.result(timeout_s=120)
    domain, marker, niceness, threads = done.stdout.split()
    assert done.returncode == 0, done.stderr
    assert threads == "1"  # one thread per process: the cores are the suite's and the other job's
    assert domain != os.environ["ROS_DOMAIN_ID"]  # never sees the foreground tests' nodes
    assert marker == job.marker != os.environ[RUN_MARKER]  # the per-test leftover guard leaves it alone
    assert int(niceness) == os.nice(0) + background_jobs.NICENESS
    background_jobs.stop([job])
    assert not job.workdir.exists()


def test_a_job_that_was_never_started_runs_when_read() -> None:
    job = BackgroundJob(_name("here"), lambda j: j.run([sys.executable, "-c", PRINT_ENV], 60), __name__)
    domain, marker, _, _ = job.result(timeout_s=120).stdout.split()
    assert (domain, marker) == (os.environ["ROS_DOMAIN_ID"], os.environ[RUN_MARKER])
    job.cleanup()


def test_a_failing_body_reaches_the_reader_with_its_traceback() -> None:
    def fails(job: BackgroundJob) -> None:
        raise ValueError("the demo's report is missing")

    job = BackgroundJob(_name("fails"), fails, __name__)
    background_jobs.start([job])
    with pytest.raises(BackgroundJobError, match=r"(?s)failed:.*ValueError: the demo's report is missing"):
        job.result(timeout_s=120)
    job.cleanup()


def test_a_process_the_job_leaves_running_is_killed_and_named() -> None:
    def leaves(job: BackgroundJob) -> int:
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], env=job.env)
        return sleeper.pid

    job = BackgroundJob(_name("leaves"), leaves, __name__)
    background_jobs.start([job])
    with pytest.raises(BackgroundJobError, match=r"left 1 process\(es\) running \(killed now\): \d+: .*time\.sleep"):
        job.result(timeout_s=120)
    job.cleanup()


def test_a_scheduled_job_read_by_an_unmarked_test_is_refused(monkeypatch) -> None:
    job = BackgroundJob(_name("unmarked"), lambda j: 7, __name__)
    background_jobs.start([job])
    monkeypatch.setattr(background_jobs, "reader_marked", False)
    with pytest.raises(BackgroundJobError, match=r"read by a test not marked background_job: mark it"):
        job.result(timeout_s=120)
    monkeypatch.setattr(background_jobs, "reader_marked", True)
    assert job.result(timeout_s=120) == 7
    job.cleanup()


def test_names_are_checked() -> None:
    BackgroundJob(_name("once"), lambda j: None, __name__)
    name = _name("twice")
    BackgroundJob(name, lambda j: None, __name__)
    with pytest.raises(ValueError, match="declared twice"):
        BackgroundJob(name, lambda j: None, __name__)
    with pytest.raises(ValueError, match="without '/'"):
        BackgroundJob("a/b", lambda j: None, __name__)


def test_two_jobs_run_at_once_and_the_longest_starts_first(tmp_path: Path) -> None:
    """Each of two jobs waits for the other to have started: both finish only when they run side
    by side. One at a time, the job declared as longer starts first."""

    def meet(mine: str, theirs: str):
        def body(job: BackgroundJob) -> bool:
            (tmp_path / mine).write_text("started")
            deadline = time.monotonic() + 60
            while not (tmp_path / theirs).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            return (tmp_path / theirs).exists()

        return body

    a = BackgroundJob(_name("meet-a"), meet("a", "b"), __name__)
    b = BackgroundJob(_name("meet-b"), meet("b", "a"), __name__)
    background_jobs.start([a, b], width=2)
    assert a.result(timeout_s=120) and b.result(timeout_s=120)
    background_jobs.stop([a, b])

    started: list[str] = []
    short = BackgroundJob(_name("short"), lambda j: started.append("short"), __name__, cost_s=5)
    long = BackgroundJob(_name("long"), lambda j: started.append("long"), __name__, cost_s=500)
    for thread in background_jobs.start([short, long], width=1):
        thread.join(timeout=60)
    assert started == ["long", "short"]
    background_jobs.stop([short, long])
    with pytest.raises(ValueError, match="cost_s must be > 0"):
        BackgroundJob(_name("free"), lambda j: None, __name__, cost_s=0)


SLOW_MODULE = """
import pytest
from kil_interfaces.background_jobs import BackgroundJob, BackgroundJobError


def _work(job):
    (job.workdir.parent / "{flag}").write_text("started")
    return 42


JOB = BackgroundJob("{name}", _work, __name__)


@pytest.mark.background_job
def test_reads_the_job():
    assert JOB.result() == 42


def test_plain_one_in_the_same_module():
    pass


def test_an_unmarked_reader_is_refused():
    with pytest.raises(BackgroundJobError, match="not marked background_job"):
        JOB.result()
"""

LATER_MODULE = """
import tempfile, time
from pathlib import Path


def test_later_module_runs_while_the_job_already_did_its_work():
    flag = Path(tempfile.gettempdir()) / "{flag}"
    deadline = time.monotonic() + 60
    while not flag.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert flag.exists()  # the job started before its reader ran
"""


def test_a_session_starts_the_jobs_at_collection_and_runs_their_readers_last(tmp_path: Path) -> None:
    flag, name = _name("flag"), _name("session")
    (tmp_path / "test_a_slow.py").write_text(SLOW_MODULE.format(flag=flag, name=name))
    (tmp_path / "test_b_later.py").write_text(LATER_MODULE.format(flag=flag))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-v"]
    command += ["-o", "markers=background_job: reads a job", "--rootdir", str(tmp_path), str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    try:
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        order = [line.split("::")[1].split()[0] for line in done.stdout.splitlines() if " PASSED" in line]
        assert order == [
            "test_plain_one_in_the_same_module",
            "test_an_unmarked_reader_is_refused",
            "test_later_module_runs_while_the_job_already_did_its_work",
            "test_reads_the_job",
        ], done.stdout
    finally:
        (Path(tempfile.gettempdir()) / flag).unlink(missing_ok=True)
