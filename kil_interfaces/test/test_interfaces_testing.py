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


def test_a_process_left_running_is_found_through_its_orphaned_child_and_killed() -> None:
    """The per-test guard: a launcher that started a node and exited leaves the node an orphan;
    it is found by the run marker, zombies and other runs' processes are not, and it is killed."""
    import os
    import subprocess
    import sys
    import time

    from kil_interfaces.testing import RUN_MARKER, processes_of_run, reap_leftovers

    marker = f"guard-test-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, RUN_MARKER: marker}
    # The launcher prints its child's pid and exits: the child (a sleeping "node") is orphaned.
    launcher = (
        "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid)"
    )
    orphan = int(subprocess.run([sys.executable, "-c", launcher], env=env, capture_output=True, text=True).stdout)
    other_run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env={**env, RUN_MARKER: "x"})
    zombie = subprocess.Popen(["true"], env=env)  # exits at once and stays unreaped until wait()
    try:
        time.sleep(1.0)
        found = processes_of_run(marker)
        assert orphan in found and "time.sleep(120)" in found[orphan]
        assert other_run.pid not in found and zombie.pid not in found
        killed = reap_leftovers(marker, grace_s=0.5)
        assert list(killed) == [orphan]
        deadline = time.monotonic() + 30
        while orphan in processes_of_run(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert orphan not in processes_of_run(marker)
        assert other_run.poll() is None  # another run's process is left alone
    finally:
        other_run.kill()
        other_run.wait()
        zombie.wait()
