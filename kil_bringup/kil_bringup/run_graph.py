"""Start a rollout's node graph as processes, without ``ros2 launch`` (not on PyPI).

    python -m kil_bringup.run_graph --robot sim --task place_mug --spec spec.yaml --checkpoint runs/x/checkpoint_last
    python -m kil_bringup.run_graph --robot sim --keypoints oracle --checkpoint runs/oracle/checkpoint_last --episodes 1
    python -m kil_bringup.run_graph --robot ur5e --sim --spec spec.yaml --checkpoint runs/x/checkpoint_last --episodes 2

Each node runs as ``python -m <package>.<executable> --ros-args ...`` from ``kil_bringup.graph``;
Ctrl-C (or one node exiting) stops them all. Before anything starts, the spec's keypoint layout is
checked against the checkpoint's, and keypoint_node extracts keypoints as the checkpoint's were
extracted (method, backend, scale: its ``keypoint_extraction``; a flag that differs is refused);
an RGB or S2 checkpoint sees the camera directly. With ``--episodes N`` (simulator only) it waits until the policy
publishes its first action chunk, resets the simulated episode (so that start-up time does not
count) to configuration 0 of its setting, after each outcome to the next configuration (1, 2, ...),
clearing keypoint_node's tracks, policy_node's observation history and interpolator_node's plan
after each reset (their ``~/reset``) and clearing a simulated arm's controller stop that outlived
the episode (a collision) as an operator would (:class:`ControllerFaults`), prints each episode's outcome from
``/kil/episode_outcome`` and stops after the N-th
(exit status 0 when every episode succeeded, 1 otherwise or when sim_node refused a configuration,
2 when a node failed or ``--timeout`` passed first).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from kil_bringup.graph import (
    CAMERAS,
    FUSIONS,
    INFERENCE_MODES,
    KEYPOINTS,
    METHODS,
    PRECISIONS,
    RELIABILITY,
    ROBOTS,
    NodeSpec,
    rollout_graph,
)
from kil_interfaces.checkpoint_info import checkpoint_task, task_mismatch


def start(nodes: list[NodeSpec], stdout=None) -> list[subprocess.Popen]:
    """Start every node; returns the processes (caller stops them with :func:`stop`)."""
    return [
        subprocess.Popen([sys.executable, "-m", node.module, *node.ros_args()], stdout=stdout, stderr=subprocess.STDOUT)
        for node in nodes
    ]


def stop(processes: list[subprocess.Popen], timeout_s: float = 10.0) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()


def check_layout(spec: str, checkpoint: str) -> str | None:
    """Why the spec cannot feed the checkpoint (one line naming both layouts), or None."""
    from kil_interfaces.keypoint_layout import layout_of_spec_file, mismatch, read_layout

    if not spec or not checkpoint:
        return None
    try:
        expected = read_layout(checkpoint)
        actual = layout_of_spec_file(spec)
    except ValueError as error:
        return str(error)
    if expected is None:
        return None
    return mismatch(expected, actual, f"checkpoint {checkpoint}", f"spec {spec}")


#: Nodes whose state belongs to one episode, cleared (``~/reset``, std_srvs/Trigger) when the
#: simulator starts the next: keypoint_node's tracks (KIL-T), policy_node's observation history,
#: interpolator_node's plan (left running, the last episode's plan drove the gripper of the arm
#: just placed home for 0.9 s: its poses refused, its gripper commands followed).
EPISODE_STATE_NODES = ("keypoint_node", "policy_node", "interpolator_node")


class EpisodeInputsReset:
    """Clears the episode state of the graph's perception, policy and interpolator after a simulator
    reset: a track started in the previous scene would follow objects that have just been moved,
    and the last episode's plan would drive the arm just placed home.

    Args:
        node: the caller's node (services relative to its namespace).
        graph: the names of the nodes the caller started (None: any of ``EPISODE_STATE_NODES``
            that is up, for a graph started elsewhere). Only those are asked: a node of that name
            in another graph of the DDS domain, or one killed moments ago whose endpoints still
            linger in discovery, is none of this graph's business.
    """

    def __init__(self, node, graph: Sequence[str] | None = None) -> None:
        from std_srvs.srv import Trigger

        self._request = Trigger.Request()
        names = [n for n in EPISODE_STATE_NODES if graph is None or n in graph]
        self.clients = {name: node.create_client(Trigger, f"{name}/reset") for name in names}

    def call(self) -> list[str]:
        """Ask every node that is up (without waiting for its answer); returns their names."""
        ready = [name for name, client in self.clients.items() if client.service_is_ready()]
        for name in ready:
            self.clients[name].call_async(self._request)
        return ready


def _call_service(node, name: str, kind, fields: dict, timeout_s: float):
    """Call service ``name`` (type ``kind``, request ``fields``) and spin ``node`` until it
    answers; the answer, or RuntimeError when it is not up or does not answer within ``timeout_s``."""
    import rclpy

    client = node.create_client(kind, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise RuntimeError(f"{name} is not available within {timeout_s:.0f} s")
        request = kind.Request()
        for key, value in fields.items():
            setattr(request, key, value)
        future = client.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=timeout_s)
        answer = future.result()
    finally:
        node.destroy_client(client)
    if answer is None:
        raise RuntimeError(f"{name} did not answer within {timeout_s:.0f} s")
    return answer


def clear_controller_fault(node, robot: str, timeout_s: float = 10.0) -> str:
    """What an operator does after a collision stopped the simulated arm, before the next episode
    (sim_node's ~/reset does not clear it, as a real reset would not): the Lite6's xarm_api calls
    ``clean_error``, ``set_mode`` 1, ``set_state`` 0, or the UR5e dashboard client's
    ``unlock_protective_stop``, each answered before the next (services relative to ``node``'s
    namespace, where the simulated graph puts them). Returns what was done; raises RuntimeError
    with the service's answer when one refuses or does not answer within ``timeout_s``."""
    if robot == "lite6":
        from xarm_msgs.srv import Call, SetInt16

        calls = [("ufactory/clean_error", Call, {}), ("ufactory/set_mode", SetInt16, {"data": 1})]
        calls.append(("ufactory/set_state", SetInt16, {"data": 0}))
    elif robot == "ur5e":
        from std_srvs.srv import Trigger

        calls = [(UNLOCK_PROTECTIVE_STOP, Trigger, {})]
    else:
        return "no controller to clear (floating gripper)"
    done = []
    for name, kind, fields in calls:
        answer = _call_service(node, name, kind, fields, timeout_s)
        refused = answer.ret != 0 if hasattr(answer, "ret") else not answer.success
        if refused:
            raise RuntimeError(f"{name} refused: {answer.message}")
        done.append(name.rsplit("/", 1)[-1] + "".join(f" {v}" for v in fields.values()))
    return "cleared the controller's stop: " + ", ".join(done)


#: The simulated (and ur_robot_driver's) dashboard service that ends a UR5e protective stop.
UNLOCK_PROTECTIVE_STOP = "dashboard_client/unlock_protective_stop"


class ControllerFaults:
    """Watches a simulated arm's controller for a stop that outlived its episode (a collision,
    C31 or a protective stop; on the Lite6 any error in ``ufactory/robot_states``) and clears it
    before the next episode, as the operator would (:func:`clear_controller_fault`)."""

    def __init__(self, node, robot: str) -> None:
        self.node, self.robot = node, robot
        self.error = 0  # the Lite6 controller's last reported error code
        if robot == "lite6":
            from xarm_msgs.msg import RobotMsg

            node.create_subscription(RobotMsg, "ufactory/robot_states", self._on_state, 10)

    def _on_state(self, msg) -> None:
        self.error = int(msg.err)

    def clear(self, last_outcome=None) -> str | None:
        """Clear a stop if there is one; what was done, or None. ``last_outcome``: the
        EpisodeOutcome of the episode that just ended; one that ended in a collision ("collision:")
        stopped the controller whether or not its ``robot_states`` saying so has been taken yet (at
        200 Hz they queue behind the outcome: a Lite6 rehearsal ran a whole episode faulted when
        this looked at the error code alone). The UR5e's unlock is always asked for and answers
        whether there was a stop (harmless without one, and unlike
        ``io_and_status_controller/safety_mode`` it cannot arrive after the episode's outcome)."""
        collided = last_outcome is not None and str(last_outcome.reason).startswith("collision:")
        if self.robot == "lite6" and (self.error or collided):
            done = clear_controller_fault(self.node, self.robot)
            self.error = 0
            return done
        if self.robot == "ur5e":
            from std_srvs.srv import Trigger

            answer = _call_service(self.node, UNLOCK_PROTECTIVE_STOP, Trigger, {}, 10.0)
            return answer.message if answer.message.startswith("protective stop unlocked") else None
        return None


class OutcomeListener:
    """Runs a simulated rollout's episodes: once the policy publishes its first action chunk, resets
    sim_node to configuration 0 of its setting, and after each outcome to the next (1, 2, ...), up
    to ``episodes``; after each reset the perception, policy and interpolator state is cleared
    (:class:`EpisodeInputsReset`). A node of its own, spun by :meth:`spin_once`."""

    def __init__(
        self, namespace: str = "", episodes: int = 1, robot: str = "sim", graph: Sequence[str] | None = None
    ) -> None:
        import rclpy
        from rclpy.parameter import Parameter
        from rclpy.qos import DurabilityPolicy, QoSProfile

        from kil_interfaces.msg import ActionChunk, EpisodeOutcome
        from kil_interfaces.srv import ResetEpisode

        rclpy.init(args=[])  # (not sys.argv: run_graph's own flags are not ROS arguments)
        # On the simulator's /clock, like the graph's nodes: outcomes are stamped in simulated time.
        # In the graph's namespace, with its /clock (moved into the namespace by the graph).
        self.node = rclpy.create_node(
            "run_graph_outcomes",
            namespace="/" + namespace,
            parameter_overrides=[Parameter("use_sim_time", Parameter.Type.BOOL, True)],
            cli_args=["--ros-args", "-r", "/clock:=clock"] if namespace else None,
        )
        self.episodes = episodes
        self.outcomes: list = []
        self.refusals: list[str] = []  # sim_node's answers to resets it refused
        self.chunks = 0
        self.started_ns: int | None = None  # when the current episode was reset, on the node clock
        self.resets = 0  # resets sent (configuration index of the next one)
        self._reset = None  # the pending reset's future
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(EpisodeOutcome, "kil/episode_outcome", self._on_outcome, latched)
        self.node.create_subscription(ActionChunk, "kil/action_chunk", self._on_chunk, 10)
        self.client = self.node.create_client(ResetEpisode, "sim_node/reset")
        self.inputs = EpisodeInputsReset(self.node, graph)
        self.faults = ControllerFaults(self.node, robot)
        self._request_type = ResetEpisode.Request

    def _on_chunk(self, _msg) -> None:
        self.chunks += 1

    def _on_outcome(self, msg) -> None:
        from kil_interfaces.conversion import time_to_ns

        if self._reset is None and self.started_ns is not None and time_to_ns(msg.header.stamp) >= self.started_ns:
            self.outcomes.append(msg)

    @property
    def finished(self) -> bool:
        return len(self.outcomes) + len(self.refusals) >= self.episodes

    def spin_once(self, timeout_s: float) -> None:
        """Process callbacks; reset to the next configuration when the policy is producing chunks
        and the previous episode has ended."""
        import rclpy

        rclpy.spin_once(self.node, timeout_sec=timeout_s)
        if self._reset is not None and self._reset.done():
            answer = self._reset.result()
            self._reset = None
            if answer.success:
                cleared = self.faults.clear(self.outcomes[-1] if self.outcomes else None)
                if cleared:
                    print(f"operator: {cleared}", flush=True)
                cleared = self.inputs.call()
                print(f"episode reset and started: {answer.message} (state cleared: {', '.join(cleared)})", flush=True)
            else:
                self.refusals.append(answer.message)
                print(f"sim_node refused configuration {self.resets - 1}: {answer.message}", flush=True)
        ended = len(self.outcomes) + len(self.refusals) == self.resets
        if self.chunks and self._reset is None and ended and not self.finished and self.client.service_is_ready():
            request = self._request_type()
            request.index = self.resets  # empty task and setting: sim_node's own
            self.started_ns = self.node.get_clock().now().nanoseconds
            self._reset = self.client.call_async(request)
            self.resets += 1

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.try_shutdown()


def describe(outcome) -> str:
    result = "success" if outcome.success else "failure"
    return (
        f"episode {outcome.task} {outcome.setting} #{outcome.index}: {result} after {outcome.duration:.1f} s "
        f"(completion {outcome.completion:.2f}; {outcome.reason})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_bringup.run_graph", description=__doc__.split("\n\n")[0])
    parser.add_argument("--robot", choices=ROBOTS, default="sim", help="sim (MuJoCo), lite6 or ur5e")
    parser.add_argument(
        "--sim",
        action="store_true",
        help="rehearse: the simulator's arm behind a simulated vendor driver in place of the real one (lite6, ur5e)",
    )
    parser.add_argument("--camera", choices=CAMERAS, help="camera driver (default: sim for the sim, else femto_bolt)")
    parser.add_argument(
        "--task", default="", help="task the simulator loads (sim only; default: the checkpoint's task, else place_mug)"
    )
    parser.add_argument("--spec", default="", help="keypoint spec YAML for keypoint_node (--keypoints perception)")
    parser.add_argument("--checkpoint", required=True, help="policy checkpoint directory")
    parser.add_argument(
        "--calibration",
        default="",
        help="camera extrinsics YAML published on /tf_static (real robots; '' = TF from elsewhere)",
    )
    parser.add_argument("--namespace", default="", help="run every node in this namespace, frames prefixed by it")
    parser.add_argument(
        "--backend", help="keypoint_node's feature backend (default: the checkpoint's, else effnet_lite0)"
    )
    parser.add_argument("--device", default="cpu", help="torch device of perception and policy")
    parser.add_argument(
        "--method", choices=METHODS, help="keypoint extraction method (default: the checkpoint's, else image)"
    )
    parser.add_argument(
        "--feature-scale",
        type=float,
        help="keypoint_node's frames resized by this before the backend (default: the checkpoint's, else 1)",
    )
    parser.add_argument(
        "--mask-categories",
        default="",
        help="S2 on a real robot: the instance-mask values' categories, e.g. '1:mug,2:tray' (sim: its own)",
    )
    parser.add_argument("--inference", default="packed", choices=INFERENCE_MODES, help="policy_node's UNet execution")
    parser.add_argument(
        "--precision", default="fp32", choices=PRECISIONS, help="policy_node's precision (--inference graph only)"
    )
    parser.add_argument(
        "--fuse-kernels", default="none", choices=FUSIONS, help="policy_node's kernel fusion (--inference graph only)"
    )
    parser.add_argument(
        "--keypoints", default="perception", choices=KEYPOINTS, help="keypoint_node, or the sim's ground truth (oracle)"
    )
    parser.add_argument(
        "--image-reliability", default="reliable", choices=RELIABILITY, help="QoS reliability of the image topics"
    )
    parser.add_argument("--width", type=int, help="simulated camera width (px; the spec's reference size)")
    parser.add_argument("--height", type=int, help="simulated camera height (px)")
    parser.add_argument("--max-input-age", type=float, default=0.5, help="policy_node's max_input_age_s (s)")
    parser.add_argument(
        "--cpu-threads",
        type=int,
        help="keypoint_node's and policy_node's torch CPU threads (default 1; 0: one per core)",
    )
    parser.add_argument("--max-episode", type=float, default=40.0, help="simulated episode time limit (s)")
    parser.add_argument(
        "--real-time-factor",
        type=float,
        default=1.0,
        help="simulated seconds per wall second (sim; <1 on slow machines)",
    )
    parser.add_argument("--episodes", type=int, default=0, help="stop after this many episode outcomes (0: run on)")
    parser.add_argument("--timeout", type=float, default=0.0, help="stop after this many seconds (0: no limit)")
    args = parser.parse_args(argv)
    if (args.width is None) != (args.height is None):
        parser.error("give --width and --height together")
    mismatch = task_mismatch(args.checkpoint, args.task)
    if mismatch:
        parser.exit(2, f"error: {mismatch}\n")
    args.task = args.task or checkpoint_task(args.checkpoint) or "place_mug"
    try:
        nodes = rollout_graph(
            args.robot,
            args.camera,
            args.task,
            args.spec,
            args.checkpoint,
            args.calibration,
            args.backend,
            args.device,
            args.max_input_age,
            method=args.method,
            feature_scale=args.feature_scale,
            inference=args.inference,
            precision=args.precision,
            fuse_kernels=args.fuse_kernels,
            keypoints=args.keypoints,
            image_size=(args.width, args.height) if args.width else None,
            max_episode_s=args.max_episode,
            image_reliability=args.image_reliability,
            real_time_factor=args.real_time_factor,
            namespace=args.namespace,
            use_sim=args.sim,
            mask_categories=args.mask_categories,
            cpu_threads=args.cpu_threads,
        )
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    if args.episodes > 0 and not (args.robot == "sim" or args.sim):
        parser.error("--episodes needs the simulator (--robot sim, or --sim): it reports the outcomes")
    problem = check_layout(args.spec if args.keypoints == "perception" else "", args.checkpoint)
    if problem:
        parser.exit(2, f"error: {problem}\n")
    names = [n.name for n in nodes]
    listener = OutcomeListener(nodes[0].namespace, args.episodes, args.robot, names) if args.episodes > 0 else None
    processes = start(nodes)
    print("started: " + ", ".join(names), flush=True)
    status, started, printed = 0, time.monotonic(), 0
    try:
        while True:
            if listener is not None:
                listener.spin_once(0.2)
                for outcome in listener.outcomes[printed:]:
                    print(describe(outcome), flush=True)
                printed = len(listener.outcomes)
                if listener.finished:
                    break
            else:
                time.sleep(0.2)
            if not all(p.poll() is None for p in processes):
                failed = [n.name for n, p in zip(nodes, processes, strict=True) if p.poll() is not None]
                print(f"stopping: {', '.join(failed)} exited", flush=True)
                status = 2
                break
            if args.timeout and time.monotonic() - started > args.timeout:
                print(f"stopping: no outcome within --timeout {args.timeout:.0f} s", flush=True)
                status = 2
                break
    except KeyboardInterrupt:
        pass
    finally:
        stop(processes)
        if listener is not None:
            failed = listener.refusals or not all(o.success for o in listener.outcomes)
            if status == 0 and (listener.outcomes or listener.refusals) and failed:
                status = 1
            listener.close()
    return status


if __name__ == "__main__":
    raise SystemExit(main())
