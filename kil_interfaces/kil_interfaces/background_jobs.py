"""Slow, self-contained parts of the test suite run beside it instead of in turn.

The suite is serial (its node tests load the CPU on purpose and a 2-core machine does not mix them
with parallel workers), and most of it waits on DDS with a core to spare. A few tests spend minutes
in child processes of their own (the quick demo, the README walkthrough, a training run): each
declares that work as a :class:`BackgroundJob` at import time; the session (``conftest.py``)
starts the jobs its selected tests need when collection ends, :data:`WIDTH` at a time, the
longest first (a job's processes are mostly single-threaded and the foreground tests often wait,
so one job at a time left a core idle), and moves the tests that read them (marked
``background_job``) to the end of the run, where :meth:`BackgroundJob.result` waits for the result.

A job's processes run at a lower CPU priority with one thread each, in a DDS domain and under a run
marker of their own (so the per-test leftover guard leaves them alone, and they never see a
foreground test's nodes); processes a job leaves running are killed and make its result an error
that names them. Where no session started it, :meth:`~BackgroundJob.result` runs the job in the
calling thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kil_interfaces.testing import RUN_MARKER, claim_ros_domain, describe_processes, reap_leftovers

#: Every job declared so far, in declaration order.
JOBS: list[BackgroundJob] = []

#: Whether the running test is marked ``background_job`` (set per test by ``conftest.py``): a test
#: that reads a job the session scheduled must be, or it would run before the job and wait for it.
reader_marked = True

#: ``nice`` increment of a job's processes: the serial suite's tests keep the CPU they ask for.
NICENESS = 10

#: How many jobs run at once.
WIDTH = 2


class BackgroundJobError(RuntimeError):
    """A background job failed; the message carries its traceback."""


class BackgroundJob:
    """Work for a test that runs in child processes and can start before the test does.

    Args:
        name: short name, unique in the session (temporary directory and run marker).
        body: ``body(job) -> result``; starts its processes with :meth:`run` (or passes
            ``job.env`` and ``job.workdir`` itself) and returns what the tests check.
        module: ``__name__`` of the test module that declares the job (the session starts it
            only when a selected test of that module is marked ``background_job``).
        cost_s: roughly how long it runs on an idle machine (s): longer jobs start first.
    """

    def __init__(self, name: str, body: Callable[[BackgroundJob], Any], module: str, cost_s: float = 60.0) -> None:
        if not name or any(c in name for c in "/ "):
            raise ValueError(f"background job name must be non-empty without '/' or spaces, got {name!r}")
        if any(job.name == name for job in JOBS):
            raise ValueError(f"background job {name!r} is declared twice")
        if cost_s <= 0:
            raise ValueError(f"background job {name!r}: cost_s must be > 0, got {cost_s}")
        self.name, self.body, self.module, self.cost_s = name, body, module, cost_s
        self.workdir: Path | None = None
        self.env: dict[str, str] = {}
        self._lock = threading.Lock()
        self._started = False
        self._scheduled = False
        self._done = threading.Event()
        self._result: Any = None
        self._error: str | None = None
        JOBS.append(self)

    @property
    def marker(self) -> str:
        """The run marker of this job's processes (see :data:`kil_interfaces.testing.RUN_MARKER`)."""
        return f"{os.getpid()}-job-{self.name}"

    def claim(self) -> bool:
        """Mark the job started; False when it already was (by the session or another caller)."""
        with self._lock:
            if self._started:
                return False
            self._started = True
            return True

    def execute(self, background: bool) -> None:
        """Run the body now (after :meth:`claim`), keeping its result or error for :meth:`result`."""
        self.workdir = Path(tempfile.mkdtemp(prefix=f"kil-job-{self.name}-"))
        self.env = dict(os.environ)
        if background:
            self.env[RUN_MARKER] = self.marker
            self.env["ROS_DOMAIN_ID"] = str(claim_ros_domain())
            # One thread per process (torch's default is one per core): the cores belong to the
            # suite and to the other job, and a thread that lost its core stalls the others.
            self.env["OMP_NUM_THREADS"] = "1"
        try:
            self._result = self.body(self)
        except BaseException:
            self._error = traceback.format_exc()
        finally:
            if background:
                left = reap_leftovers(self.marker, grace_s=5.0)
                if left and self._error is None:
                    named = describe_processes(left)
                    self._error = f"the job left {len(left)} process(es) running (killed now): {named}"
            self._done.set()

    def run(self, command: Sequence[str], timeout_s: float, **kwargs) -> subprocess.CompletedProcess:
        """``subprocess.run`` in the job's environment and directory, at the job's priority,
        capturing text output."""
        kwargs.setdefault("cwd", self.workdir)
        kwargs.setdefault("env", self.env)
        return subprocess.run(
            ["nice", "-n", str(NICENESS), *command], capture_output=True, text=True, timeout=timeout_s, **kwargs
        )

    def result(self, timeout_s: float = 3600.0) -> Any:
        """The body's return value, waiting for it up to ``timeout_s`` (the job runs here and now
        when nothing started it).

        Raises:
            BackgroundJobError: the body raised (its traceback in the message), left processes
                running, or did not finish within ``timeout_s``; or the session scheduled the job
                and the calling test is not marked ``background_job``.
        """
        if self._scheduled and not reader_marked:
            raise BackgroundJobError(
                f"background job {self.name!r} is read by a test not marked background_job: mark it "
                "(@pytest.mark.background_job) so that it runs at the end of the session, after the job"
            )
        if self.claim():
            self.execute(background=False)
        if not self._done.wait(timeout_s):
            raise BackgroundJobError(f"background job {self.name!r} did not finish within {timeout_s:.0f} s")
        if self._error is not None:
            raise BackgroundJobError(f"background job {self.name!r} failed:\n{self._error}")
        return self._result

    def cleanup(self) -> None:
        """Remove the job's temporary directory (after the session)."""
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start(jobs: Sequence[BackgroundJob], width: int = WIDTH) -> list[threading.Thread]:
    """Run ``jobs`` in ``width`` daemon threads, longest ``cost_s`` first (each unless a caller
    started it already); the threads."""
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    for job in jobs:
        job._scheduled = True
    queue = sorted(jobs, key=lambda job: -job.cost_s)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                job = queue.pop(0)
            if job.claim():
                job.execute(background=True)

    threads = [
        threading.Thread(target=worker, name=f"kil-background-jobs-{k}", daemon=True)
        for k in range(min(width, len(jobs)))
    ]
    for thread in threads:
        thread.start()
    return threads


def stop(jobs: Sequence[BackgroundJob]) -> None:
    """Kill what the jobs still run (a session that ended before reading them) and remove their
    directories."""
    for job in jobs:
        reap_leftovers(job.marker, grace_s=0.0)
        job.cleanup()
