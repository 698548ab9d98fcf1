"""Test-session set-up shared by every package's tests (run with pytest from the repo root)."""

from __future__ import annotations

import os


def pytest_configure(config) -> None:
    # Each test run gets its own DDS domain, so parallel runs and leftover processes of an
    # earlier run never cross-talk; child processes inherit it. Discovery stays on loopback.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    os.environ["ROS_DOMAIN_ID"] = str(1 + (os.getpid() * 7 + int(worker or 0)) % 100)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
