"""Test-session set-up shared by every package's tests (run with pytest from the repo root)."""

from __future__ import annotations

import os

import pytest

from kil_interfaces.testing import RUN_MARKER, claim_ros_domain, reap_leftovers


def pytest_configure(config) -> None:
    # Each test run claims its own DDS domain (a lock per domain: no other run on this machine
    # holds it), so parallel runs and leftover processes of an earlier run never cross-talk; child
    # processes inherit it. Discovery stays on loopback.
    os.environ["ROS_DOMAIN_ID"] = str(claim_ros_domain())
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    # Every process a test starts inherits this marker, so one left running is found after the test.
    os.environ[RUN_MARKER] = str(os.getpid())


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    """A test must stop every process it started (nodes, launchers, recorders): one left spinning
    takes CPU from every later test. Leftovers are killed and the test errors, naming them."""
    yield
    leftovers = reap_leftovers(os.environ[RUN_MARKER], exclude=os.getpid())
    if leftovers:
        named = "; ".join(f"{pid}: {command[:160]}" for pid, command in leftovers.items())
        pytest.fail(f"the test left {len(leftovers)} process(es) running (killed now): {named}", pytrace=False)
