"""Rehearse the control path on a simulated arm: the scripted expert (or a trained policy) through
interpolator_node, the robot's adapter and the simulated vendor driver, over a task's evaluation
configurations.

    python -m kil_bringup.rehearse --robot ur5e --task place_mug --episodes 10 [--first 0]
    python -m kil_bringup.rehearse --robot lite6 --task pour_bottle --setting unseen_object --json out.json
    python -m kil_bringup.rehearse --robot ur5e --checkpoint runs/x/checkpoint_last [--spec spec.yaml]

The graph is :func:`kil_bringup.graph.expert_graph` (sim_node with ``controller:=expert`` and
``robot:=<arm>``, ``<arm>_node``, interpolator_node), or with ``--checkpoint`` the rollout graph
(:func:`kil_bringup.graph.rollout_graph` with ``use_sim``: policy_node fed the simulator's
ground-truth keypoints, or keypoint_node with ``--spec``), started as processes; ``--robot sim``
is the floating gripper, for the same run without an arm. A controller stop that outlives an
episode (a collision: C31 on the Lite6, a protective stop on the UR5e) is cleared before the next
one, as the operator would (``run_graph.ControllerFaults``). Episode i is sim_node's
configuration i of the setting (``~/reset``), the same configurations the offline evaluation and
``kil_sim.reachability`` use; each outcome comes from ``/kil/episode_outcome``. Prints one line
per episode and a summary (JSON with ``--json``); a configuration sim_node refuses (beyond the
arm's reach) is reported with the reason and skipped. Exit status 0 when every episode succeeded,
1 when one failed or was refused, 2 when a node exited or an episode gave no outcome within
``--episode-timeout``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kil_bringup.graph import ROBOTS, SCENE_LAYOUTS, expert_graph, rollout_graph
from kil_bringup.run_graph import ControllerFaults, EpisodeInputsReset, check_layout, describe, start, stop
from kil_interfaces.checkpoint_info import task_mismatch

#: sim_node's configuration settings but train (kil_bringup imports no kil_sim; a test pins the two).
SETTINGS = ("in_distribution", "unseen_object", "scene_variation", "generated_object")


class RefusedError(Exception):
    """sim_node refused the configuration (e.g. beyond the arm's reach); the message says why."""


class Rehearsal:
    """A node on the simulator's clock that resets sim_node to a configuration and waits for the
    episode's outcome."""

    def __init__(self, robot: str = "sim", graph: Sequence[str] | None = None) -> None:
        import rclpy
        from rclpy.parameter import Parameter
        from rclpy.qos import DurabilityPolicy, QoSProfile

        from kil_interfaces.msg import EpisodeOutcome
        from kil_interfaces.srv import ResetEpisode

        rclpy.init(args=[])
        self.node = rclpy.create_node(
            "rehearse", parameter_overrides=[Parameter("use_sim_time", Parameter.Type.BOOL, True)]
        )
        self.outcomes: list = []
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(EpisodeOutcome, "kil/episode_outcome", self.outcomes.append, latched)
        self.reset_client = self.node.create_client(ResetEpisode, "sim_node/reset")
        # (with --checkpoint: keypoint_node's tracks, policy history; ``graph``: the nodes started)
        self.inputs = EpisodeInputsReset(self.node, graph)
        self.faults = ControllerFaults(self.node, robot)
        self._request_type = ResetEpisode.Request

    def episode(self, task: str, setting: str, index: int, timeout_s: float, alive) -> object | None:
        """Reset to configuration ``index`` and return its EpisodeOutcome (None: none in time).
        A controller stop left by the last episode (a collision) is cleared once the scene is
        reset, as the operator would (``run_graph.ControllerFaults``)."""
        import rclpy

        from kil_interfaces.conversion import time_to_ns

        deadline = time.monotonic() + timeout_s
        while not self.reset_client.wait_for_service(timeout_sec=1.0):
            if time.monotonic() > deadline or not alive():
                return None
        request = self._request_type()
        request.task, request.setting, request.index = task, setting, index
        future = self.reset_client.call_async(request)
        while not future.done():
            rclpy.spin_once(self.node, timeout_sec=0.1)
            if time.monotonic() > deadline or not alive():
                return None
        if not future.result().success:
            raise RefusedError(future.result().message)
        cleared = self.faults.clear(self.outcomes[-1] if self.outcomes else None)
        if cleared:
            print(f"operator: {cleared}", flush=True)
        self.inputs.call()
        started = self.node.get_clock().now().nanoseconds
        while time.monotonic() < deadline and alive():
            rclpy.spin_once(self.node, timeout_sec=0.1)
            for outcome in self.outcomes:
                if (outcome.setting, outcome.index) == (setting, index) and time_to_ns(outcome.header.stamp) >= started:
                    return outcome
        return None

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.try_shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_bringup.rehearse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--robot", choices=[r for r in ROBOTS], default="ur5e", help="lite6, ur5e, or sim (floating)")
    parser.add_argument("--task", default="place_mug", help="simulated task")
    parser.add_argument("--setting", choices=SETTINGS, default="in_distribution", help="configuration setting")
    parser.add_argument("--episodes", type=int, default=10, help="this many configurations of the setting")
    parser.add_argument("--first", type=int, default=0, help="the first configuration's index")
    parser.add_argument("--real-time-factor", type=float, default=1.0, help="simulated seconds per wall second")
    parser.add_argument("--max-episode", type=float, default=40.0, help="simulated episode time limit (s)")
    parser.add_argument("--episode-timeout", type=float, default=300.0, help="wall seconds to wait per episode")
    parser.add_argument("--checkpoint", default="", help="run this policy instead of the scripted expert")
    parser.add_argument("--spec", default="", help="with --checkpoint: keypoint_node's spec ('' = ground truth)")
    parser.add_argument(
        "--backend", help="with --spec: keypoint_node's feature backend (default: the checkpoint's, else effnet_lite0)"
    )
    parser.add_argument("--width", type=int, default=320, help="with --checkpoint: camera width (px)")
    parser.add_argument("--height", type=int, default=240, help="with --checkpoint: camera height (px)")
    parser.add_argument("--max-input-age", type=float, default=2.0, help="with --checkpoint: policy_node's limit (s)")
    parser.add_argument(
        "--scene-layout",
        choices=SCENE_LAYOUTS,
        default="arm",
        help="arm: each task laid out where the arm reaches it (default); simulated: as for the floating gripper, "
        "where a checkpoint trained in the simulator saw it (configurations beyond the arm's reach are refused)",
    )
    parser.add_argument("--json", type=Path, help="write the outcomes and the summary here")
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.first < 0:
        parser.error("--episodes must be >= 1 and --first >= 0")
    if args.checkpoint:
        problem = task_mismatch(args.checkpoint, args.task) or check_layout(args.spec, args.checkpoint)
        if problem:
            parser.exit(2, f"error: {problem}\n")
    try:
        if args.checkpoint:
            nodes = rollout_graph(
                args.robot,
                task=args.task,
                spec=args.spec,
                checkpoint=args.checkpoint,
                backend=args.backend,
                max_input_age_s=args.max_input_age,
                keypoints="perception" if args.spec else "oracle",
                image_size=(args.width, args.height),
                max_episode_s=args.max_episode,
                real_time_factor=args.real_time_factor,
                use_sim=args.robot != "sim",
                scene_layout=args.scene_layout,
            )
        else:
            nodes = expert_graph(
                args.robot,
                args.task,
                real_time_factor=args.real_time_factor,
                max_episode_s=args.max_episode,
                scene_layout=args.scene_layout,
            )
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    processes = start(nodes)
    print("started: " + ", ".join(n.name for n in nodes), flush=True)
    rehearsal = Rehearsal(args.robot, [n.name for n in nodes])
    results, status = [], 0
    alive = lambda: all(p.poll() is None for p in processes)  # noqa: E731
    try:
        for index in range(args.first, args.first + args.episodes):
            try:
                outcome = rehearsal.episode(args.task, args.setting, index, args.episode_timeout, alive)
            except RefusedError as refusal:
                print(f"episode {args.task} {args.setting} #{index}: refused: {refusal}", flush=True)
                results.append({"index": index, "success": False, "refused": str(refusal)})
                continue
            if outcome is None:
                why = "a node exited" if not alive() else f"no outcome within {args.episode_timeout:.0f} s"
                print(f"stopping: episode {index}: {why}", flush=True)
                status = 2
                break
            print(describe(outcome), flush=True)
            results.append(
                {
                    "index": index,
                    "success": bool(outcome.success),
                    "duration_s": outcome.duration,
                    "reason": outcome.reason,
                }
            )
    except KeyboardInterrupt:
        status = 130
    finally:
        rehearsal.close()
        stop(processes)
    successes = sum(r["success"] for r in results)
    refused = sum("refused" in r for r in results)
    summary = {
        "robot": args.robot,
        "checkpoint": args.checkpoint,
        "task": args.task,
        "setting": args.setting,
        "episodes": len(results),
        "successes": successes,
        "refused": refused,
    }
    who = "policy" if args.checkpoint else "expert"
    line = f"{args.robot} {args.task} {args.setting}: {successes}/{len(results)} {who} episodes succeeded"
    print(line + (f" ({refused} configurations refused)" if refused else ""), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": summary, "episodes": results}, indent=2))
    if status == 0 and successes < len(results):
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
