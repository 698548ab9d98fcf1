"""Test-session set-up shared by every package's tests (run with pytest from the repo root)."""

from __future__ import annotations

import faulthandler
import os
import sys
from pathlib import Path

import pytest

from kil_interfaces import background_jobs
from kil_interfaces.testing import RUN_MARKER, claim_ros_domain, describe_processes, reap_leftovers

#: Fast DDS profile of the test session (see pytest_configure).
LOOPBACK_UDP_PROFILE = Path(__file__).resolve().parent / "kil_bringup" / "dds" / "fastdds_loopback_udp.xml"


def pytest_configure(config) -> None:
    # Each test run claims its own DDS domain (a lock per domain: no other run on this machine
    # holds it), so parallel runs and leftover processes of an earlier run never cross-talk; child
    # processes inherit it.
    os.environ["ROS_DOMAIN_ID"] = str(claim_ros_domain())
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    # Discovery and data on loopback only, over UDP without Fast DDS's shared memory: tests SIGKILL
    # nodes on purpose (fault injection, a recorder killed mid-episode), and a process killed while
    # it holds a shared-memory port's lock can leave every later participant of the domain blocked
    # in native code; a CI run once hung that way until its time limit. The profile does what
    # ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST does less shared memory; with LOCALHOST rmw_fastrtps
    # would add shared memory back, hence SUBNET (the profile keeps it on 127.0.0.1).
    os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(LOOPBACK_UDP_PROFILE)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"
    # Every process a test starts inherits this marker, so one left running is found after the test.
    os.environ[RUN_MARKER] = str(os.getpid())


#: Past pytest-timeout's limit (pyproject.toml) by this much, a test is taken to be stuck in C code,
#: where pytest-timeout's signal cannot reach it: every thread's stack is dumped and the run ends.
HANG_MARGIN_S = float(os.environ.get("KIL_HANG_MARGIN_S", "240"))


def _uncaptured_stderr(config) -> int:
    """The run's own stderr (pytest's fd capture redirects fd 2 to a temporary file while a test runs,
    which would take the dump with it when the process exits)."""
    capture = config.pluginmanager.getplugin("capturemanager")
    err = getattr(getattr(capture, "_global_capturing", None), "err", None)
    saved = getattr(err, "targetfd_save", None)
    return saved if isinstance(saved, int) else sys.__stderr__.fileno()


@pytest.fixture(autouse=True)
def _a_hang_ends_the_run_with_its_stacks(request):
    """A test blocked in native code (DDS, a C extension) never returns to Python, so pytest-timeout's
    SIGALRM cannot end it; this C-level watchdog dumps every thread's stack and exits instead of
    letting the run sit until CI's own limit."""
    limit = float(request.config.getini("timeout") or 0)
    marker = request.node.get_closest_marker("timeout")
    if marker and marker.args:
        limit = float(marker.args[0])
    if limit <= 0:
        yield
        return
    faulthandler.dump_traceback_later(limit + HANG_MARGIN_S, exit=True, file=_uncaptured_stderr(request.config))
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    """A test must stop every process it started (nodes, launchers, recorders): one left spinning
    takes CPU from every later test. Leftovers are killed and the test errors, naming them."""
    yield
    leftovers = reap_leftovers(os.environ[RUN_MARKER], exclude=os.getpid())
    if leftovers:
        named = describe_processes(leftovers)
        pytest.fail(f"the test left {len(leftovers)} process(es) running (killed now): {named}", pytrace=False)


#: pytest-timeout's limit for a test that reads a background job's result.
READER_TIMEOUT_S = 1800

#: The background jobs this session started (kil_interfaces.background_jobs).
_JOBS = pytest.StashKey[list]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    """Only a test marked background_job may read a scheduled job (kil_interfaces.background_jobs);
    set before any fixture of the test runs, module-scoped ones included."""
    background_jobs.reader_marked = item.get_closest_marker("background_job") is not None


def pytest_collection_modifyitems(session, config, items) -> None:
    """Tests that read a background job's result run last (stable order otherwise), so the jobs
    have the rest of the suite's time to finish (see kil_interfaces.background_jobs)."""
    items.sort(key=lambda item: item.get_closest_marker("background_job") is not None)
    for item in items:
        # A reader may wait for jobs queued before its own (when few tests run beside them).
        if item.get_closest_marker("background_job") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(READER_TIMEOUT_S))


def pytest_collection_finish(session) -> None:
    """Start the jobs of the modules whose marked tests are selected (``background_jobs.WIDTH`` at
    a time, the longest first)."""
    modules = {item.module.__name__ for item in session.items if item.get_closest_marker("background_job")}
    wanted = [job for job in background_jobs.JOBS if job.module in modules]
    session.config.stash[_JOBS] = wanted
    if not session.config.option.collectonly:
        background_jobs.start(wanted)


def pytest_sessionfinish(session, exitstatus) -> None:
    background_jobs.stop(session.config.stash.get(_JOBS, []))
