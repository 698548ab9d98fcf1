"""Demonstration-generation throughput: the simulator's expert episodes while writing episode bags.

    python -m kil_eval.bench --json [--task place_mug] [--episodes 3]

Measures, in the same run, scripted-expert episodes with the camera at 15 Hz without recording
(``kil_sim.bench``'s loop) and with every frame, state and action written to an episode bag as
``python -m kil_eval.record_demos`` does; the target is at least twice real time while recording.
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import contextmanager
from pathlib import Path

from kil_eval.bag_sink import BagSink
from kil_interfaces.conversion import MessageTypes
from kil_interfaces.typestore import kil_typestore
from kil_sim.bench import episode_throughput, machine, print_results
from kil_teleop.recording import DEMONSTRATION_TOPICS, EpisodeWriter

TARGET_REALTIME_FACTOR = 2.0


def recording_throughput(task: str, episodes: int, camera_hz: float, out: Path) -> dict:
    """``episode_throughput`` with each episode written to a bag under ``out``."""
    typestore = kil_typestore()
    types = MessageTypes.rosbags(typestore)

    @contextmanager
    def bag(k: int, world):
        writer = EpisodeWriter(out / f"episode_{k:04d}", DEMONSTRATION_TOPICS, typestore)
        try:
            yield BagSink(writer, types, world.camera_intrinsics)
        finally:
            writer.close()

    return episode_throughput(task, episodes, camera_hz, bag)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_eval.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="place_mug")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "task": args.task,
            "machine": machine(),
            "resolution": "640x480",
            "camera_15hz": episode_throughput(args.task, args.episodes, 15.0),
            "camera_15hz_recording": recording_throughput(args.task, args.episodes, 15.0, Path(tmp)),
            "target_realtime_factor_recording": TARGET_REALTIME_FACTOR,
        }
    print_results(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
