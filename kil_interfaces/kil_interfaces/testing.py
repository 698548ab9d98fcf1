"""Helpers for tests that talk to running nodes over DDS (every package's node tests use them)."""

from __future__ import annotations

import time


def call_trigger(node, service: str, timeout_s: float = 60.0):
    """Call a ``std_srvs/Trigger`` service from ``node`` and return its response, retrying while no
    answer comes (a restarted or killed node's endpoints linger in discovery until their lease
    ends, so a first request can go to a server that is gone).

    Raises:
        AssertionError: no answer within ``timeout_s``.
    """
    import rclpy
    from std_srvs.srv import Trigger

    client = node.create_client(Trigger, service)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if not client.wait_for_service(timeout_sec=1.0):
                continue
            future = client.call_async(Trigger.Request())
            rclpy.spin_until_future_complete(node, future, timeout_sec=min(5.0, max(0.1, deadline - time.monotonic())))
            if future.result() is not None:
                return future.result()
            client.remove_pending_request(future)
        raise AssertionError(f"{service} did not answer within {timeout_s} s")
    finally:
        node.destroy_client(client)
