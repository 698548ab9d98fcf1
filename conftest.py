"""Test-session set-up shared by every package's tests (run with pytest from the repo root)."""

from __future__ import annotations

import os

from kil_interfaces.testing import claim_ros_domain


def pytest_configure(config) -> None:
    # Each test run claims its own DDS domain (a lock per domain: no other run on this machine
    # holds it), so parallel runs and leftover processes of an earlier run never cross-talk; child
    # processes inherit it. Discovery stays on loopback.
    os.environ["ROS_DOMAIN_ID"] = str(claim_ros_domain())
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
