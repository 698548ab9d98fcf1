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


# The repeat's answer has no one left to receive it (the caller took the first): rclpy warns.
@pytest.mark.filterwarnings("ignore:failed to send response:RuntimeWarning")
def test_a_slow_answer_to_the_first_request_is_the_one_returned() -> None:
    """A live server slower than the 5 s retry: the caller asks again, but the answer to its first
    request (not the repeat's, which a non-idempotent service like a recorder's stop refuses) is
    the one returned."""
    import threading
    import time

    from rclpy.executors import SingleThreadedExecutor

    rclpy.init(args=[])
    release = threading.Event()
    executor = SingleThreadedExecutor()
    thread = threading.Thread(target=executor.spin, daemon=True)
    try:
        server = rclpy.create_node("slow_trigger_server")
        calls = []

        def answer(request, response):
            calls.append(1)
            release.wait(6.5 if len(calls) == 1 else 0.0)
            response.success, response.message = len(calls) == 1, f"call {len(calls)}"
            return response

        server.create_service(Trigger, "/slow_trigger_server/stop", answer)
        executor.add_node(server)
        thread.start()
        client = rclpy.create_node("slow_trigger_client")
        response = call_trigger(client, "/slow_trigger_server/stop", timeout_s=60)
        assert (response.success, response.message) == (True, "call 1")
        deadline = time.monotonic() + 30  # the repeat reaches the server once its first callback returned
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(calls) >= 2  # it did ask again while the first answer was pending
    finally:
        release.set()
        executor.shutdown()
        if thread.is_alive():
            thread.join(timeout=10)
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
