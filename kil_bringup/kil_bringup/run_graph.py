"""Start a rollout's node graph as processes, without ``ros2 launch`` (not on PyPI).

    python -m kil_bringup.run_graph --robot sim --task place_mug --spec spec.yaml --checkpoint runs/x/checkpoint_last

Each node runs as ``python -m <package>.<executable> --ros-args ...`` from ``kil_bringup.graph``;
Ctrl-C (or one node exiting) stops them all.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

from kil_bringup.graph import CAMERAS, ROBOTS, NodeSpec, rollout_graph


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_bringup.run_graph", description=__doc__.split("\n\n")[0])
    parser.add_argument("--robot", choices=ROBOTS, default="sim")
    parser.add_argument("--camera", choices=CAMERAS)
    parser.add_argument("--task", default="place_mug")
    parser.add_argument("--spec", default="", help="keypoint spec YAML (no keypoint_node without it)")
    parser.add_argument("--checkpoint", required=True, help="policy checkpoint directory")
    parser.add_argument("--calibration", default="")
    parser.add_argument("--backend", default="effnet_lite0")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--method", default="image", help="keypoint extraction: image, instance (SAM3), track")
    parser.add_argument("--inference", default="packed", help="policy UNet: packed, compiled, module")
    args = parser.parse_args(argv)
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
            method=args.method,
            inference=args.inference,
        )
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    processes = start(nodes)
    print("started: " + ", ".join(n.name for n in nodes), flush=True)
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop(processes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
