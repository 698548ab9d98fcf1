"""Benchmark the simulated arm graphs live: the real-time factor they reach with the camera on, and
the UR5e adapter's command latency.

    python -m kil_bringup.bench_arms --json [--robots sim ur5e lite6] [--seconds 20]

For each robot the expert graph of a rehearsal (:func:`kil_bringup.graph.expert_graph`: sim_node
with ``controller:=expert``, the adapter and the simulated vendor driver, interpolator_node) runs
with the camera at ``--camera-hz`` (15 Hz, 320x240 by default) and sim_node asked for
``--requested-rtf`` (2x by default); ``sim`` (the floating gripper, the same camera and
controller) is the baseline measured in the same run. ``real_time_factor`` is what sim_node
reports on /diagnostics (simulated seconds per wall second, median over the window after
``--warmup``). sim_node advances physics by the elapsed wall time x the factor on a wall-clock
tick (``state_rate_hz``: the vendor controller's rate with a simulated arm, 100 Hz for ``sim``),
so the factor itself is met unless a tick stalls; what a higher factor costs shows in two ratios:
``control_rate_kept``, the servo targets received per simulated second over interpolator_node's
``rate_hz``, and ``camera_rate_kept``, the frames per simulated second over the camera's rate
(1.0: all of them; /clock, and so every node on simulated time, moves in steps of factor x one
tick, so above 1x the controllers see a coarser stream than in real time). Where a thin stream
comes from shows in two rates taken from the nodes' own counters on /diagnostics (which, unlike
the messages this process counts, are not lost when it falls behind):
``physics_ticks_per_sim_s`` (sim_node's ticks: each moves /clock, so no node on simulated time
runs more often) and ``setpoints_per_sim_s`` (interpolator_node's servo targets).

UR5e command latency: the wall time from a ``/kil/servo_target`` to the next
``/forward_position_controller/commands``, both received by this process (so it includes one DDS
hop each way; a refused target sends no command and is not counted). The Lite6 adapter's commands
are service calls, which this process cannot observe: no latency row for it. These are
measurements, never assertions: CI runs on a loaded machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from kil_bringup.graph import ROBOTS, expert_graph
from kil_bringup.run_graph import start, stop

_NS = 1e9


class _Listener:
    """Collects sim_node's reported real-time factor and the UR5e adapter's in/out stamps."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import CameraInfo
        from std_msgs.msg import Float64MultiArray

        rclpy.init(args=[])
        self.node = rclpy.create_node("bench_arms")
        self.rtf: list[tuple[float, float]] = []  # (wall s, reported factor)
        # (wall s, simulated s, count) from the nodes' own counters on /diagnostics: unlike the
        # messages this process receives, they cannot be lost when it falls behind
        self.ticks: list[tuple[float, float, int]] = []
        self.setpoints: list[tuple[float, int]] = []
        self.targets: list[int] = []
        self.commands: list[int] = []
        self.frames: list[int] = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.node.create_subscription(PoseStamped, "/kil/servo_target", lambda _m: self._stamp(self.targets), 50)
        self.node.create_subscription(
            Float64MultiArray, "/forward_position_controller/commands", lambda _m: self._stamp(self.commands), 50
        )
        # one camera_info per rendered frame (the images themselves are not needed to count them)
        self.node.create_subscription(CameraInfo, "/camera/color/camera_info", lambda _m: self._stamp(self.frames), 50)

    @staticmethod
    def _stamp(into: list[int]) -> None:
        into.append(time.monotonic_ns())

    def _on_diagnostics(self, msg) -> None:
        now = time.monotonic()
        for status in msg.status:
            values = {v.key: v.value for v in status.values}
            if status.name.startswith("sim_node") and "real_time_factor" in values:
                self.rtf.append((now, float(values["real_time_factor"])))
                if "physics_ticks" in values:
                    self.ticks.append((now, float(values["sim_time_s"]), int(values["physics_ticks"])))
            elif status.name.startswith("interpolator_node") and "setpoints" in values:
                self.setpoints.append((now, int(values["setpoints"])))

    def spin(self, seconds: float, alive) -> bool:
        import rclpy

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not alive():
                return False
            rclpy.spin_once(self.node, timeout_sec=0.05)
        return True

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.try_shutdown()


def latencies_ms(targets: list[int], commands: list[int]) -> list[float]:
    """For each command, ms since the latest target received before it (targets, commands: sorted
    receive stamps in ns). A command with no earlier target is skipped."""
    out, i = [], -1
    for command in commands:
        while i + 1 < len(targets) and targets[i + 1] <= command:
            i += 1
        if i >= 0:
            out.append((command - targets[i]) / 1e6)
    return out


def per_simulated_second(counts: list[tuple[float, int]], ticks: list[tuple[float, float, int]], begin: float):
    """Counter increase per simulated second over the reports after ``begin`` (wall s): counts are
    (wall s, count) reports, ticks sim_node's (wall s, simulated s, physics ticks); the simulated
    time of a count is that of the sim_node report nearest in wall time. None when fewer than two
    reports fall in the window."""
    counts = [c for c in counts if c[0] >= begin]
    ticks = [t for t in ticks if t[0] >= begin]
    if len(counts) < 2 or len(ticks) < 2:
        return None
    nearest = lambda wall: min(ticks, key=lambda t: abs(t[0] - wall))[1]  # noqa: E731
    simulated = nearest(counts[-1][0]) - nearest(counts[0][0])
    return (counts[-1][1] - counts[0][1]) / simulated if simulated > 0 else None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(robot: str, args: argparse.Namespace) -> dict:
    """One robot's graph: start, warm up, measure for ``args.seconds``, stop."""
    nodes = expert_graph(
        robot,
        args.task,
        image_size=(args.width, args.height),
        camera_rate_hz=args.camera_hz,
        max_episode_s=1e4,
        real_time_factor=args.requested_rtf,
    )
    processes = start(nodes, stdout=None if args.verbose else subprocess.DEVNULL)
    listener = _Listener()
    alive = lambda: all(p.poll() is None for p in processes)  # noqa: E731
    try:
        ok = listener.spin(args.warmup, alive)
        begin = time.monotonic()
        listener.targets.clear()
        listener.commands.clear()
        listener.frames.clear()
        ok = ok and listener.spin(args.seconds, alive)
    finally:
        listener.close()
        stop(processes)
    if not ok:
        raise RuntimeError(f"{robot}: a node of the graph exited (run with --verbose to see its output)")
    factors = [f for t, f in listener.rtf if t >= begin]
    factor = statistics.median(factors) if factors else None
    rate_hz = next(float(n.parameters["rate_hz"]) for n in nodes if n.name == "interpolator_node")
    targets_per_s = len(listener.targets) / args.seconds
    row: dict = {
        "robot": robot,
        "real_time_factor": factor,
        "real_time_factor_samples": len(factors),
        "servo_targets_per_s": targets_per_s,
        # 1.0: the control path keeps its rate in simulated time (rate_hz per simulated second)
        "control_rate_kept": targets_per_s / (rate_hz * factor) if factor else None,
        "servo_rate_hz": rate_hz,
        # from the nodes' own counters (/diagnostics): where the stream thins, if it does
        "physics_ticks_per_sim_s": per_simulated_second([(w, n) for w, _s, n in listener.ticks], listener.ticks, begin),
        "setpoints_per_sim_s": per_simulated_second(listener.setpoints, listener.ticks, begin),
        "camera_frames_per_s": len(listener.frames) / args.seconds,
        "camera_rate_kept": len(listener.frames) / args.seconds / (args.camera_hz * factor)
        if factor and args.camera_hz
        else None,
    }
    if robot == "ur5e":
        lat = latencies_ms(listener.targets, listener.commands)
        row["commands_per_s"] = len(listener.commands) / args.seconds
        if lat:
            row["command_latency_ms"] = {
                "p50": _percentile(lat, 0.5),
                "p95": _percentile(lat, 0.95),
                "max": max(lat),
                "count": len(lat),
            }
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_bringup.bench_arms", description=__doc__.split("\n\n")[0])
    parser.add_argument("--robots", nargs="+", default=["sim", "ur5e", "lite6"], choices=sorted(ROBOTS))
    parser.add_argument("--task", default="place_mug", help="the expert's task (one both arms reach)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per robot (s, wall)")
    parser.add_argument("--warmup", type=float, default=8.0, help="wall seconds before measuring (start-up)")
    parser.add_argument("--requested-rtf", type=float, default=2.0, help="real_time_factor asked of sim_node")
    parser.add_argument("--camera-hz", type=float, default=15.0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: a line per robot)")
    parser.add_argument("--verbose", action="store_true", help="show the nodes' output")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or args.requested_rtf <= 0 or args.camera_hz < 0:
        parser.error("--seconds and --requested-rtf must be > 0, --warmup and --camera-hz >= 0")
    rows = []
    for robot in args.robots:
        try:
            rows.append(measure(robot, args))
        except RuntimeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        if not args.json:
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "benchmark": "simulated arm graphs, live",
        "task": args.task,
        "camera": f"{args.width}x{args.height} at {args.camera_hz} Hz",
        "requested_real_time_factor": args.requested_rtf,
        "seconds": args.seconds,
        "robots": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
