"""The node-test helper every package uses: a Trigger call answered, and a missing service named."""

from __future__ import annotations

import pytest
import rclpy
from std_srvs.srv import Trigger

from kil_interfaces.testing import call_trigger


def test_call_trigger_returns_the_answer_and_names_a_silent_service() -> None:
    rclpy.init(args=[])
    try:
        node = rclpy.create_node("call_trigger_test")
        calls = []

        def answer(request, response):
            calls.append(1)
            response.success, response.message = True, "done"
            return response

        node.create_service(Trigger, "/call_trigger_test/ok", answer)
        response = call_trigger(node, "/call_trigger_test/ok", timeout_s=30)
        assert (response.success, response.message, len(calls)) == (True, "done", 1)
        with pytest.raises(AssertionError, match=r"/call_trigger_test/missing did not answer within 1\.5 s"):
            call_trigger(node, "/call_trigger_test/missing", timeout_s=1.5)
        node.destroy_node()
    finally:
        rclpy.shutdown()


def test_a_claimed_ros_domain_is_never_handed_out_again() -> None:
    """This run's domain (claimed by conftest) and a second claim differ, and another process
    claiming three domains gets none of them."""
    import json
    import os
    import subprocess
    import sys

    from kil_interfaces.testing import claim_ros_domain

    ours = {int(os.environ["ROS_DOMAIN_ID"]), claim_ros_domain()}
    assert len(ours) == 2 and all(1 <= d <= 100 for d in ours)
    code = "import json; from kil_interfaces.testing import claim_ros_domain as c; print(json.dumps([c(), c(), c()]))"
    other = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert len(set(other)) == 3 and not set(other) & ours
