"""Record scripted demonstrations of a task as rosbag2 episodes.

    python -m kil_eval.record_demos --task place_mug --episodes 50 --out demos/place_mug

Writes ``episode_0000`` ... (one bag per episode, the topics of DESIGN.md plus the simulator's
ground-truth keypoints on ``/kil/keypoints/oracle``) and
``calibration.yaml`` (camera extrinsics, the format of the real setup) into ``--out``. Episode k
starts from the task's ``train`` configuration k (training variants, seeds disjoint from the
evaluation configurations). Only successful demonstrations are kept: a failed attempt is
discarded and retried from another configuration. Interrupting (Ctrl-C) keeps every finished
episode; running the same command again resumes after the last one (the unfinished episode is
kept under ``interrupted/`` and recorded again).
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kil_eval.bag_sink import MASK_TOPIC, ORACLE_TOPIC, BagSink
from kil_eval.orphaned import exit_when_orphaned
from kil_interfaces.calibration import save_extrinsics
from kil_interfaces.conversion import MessageTypes
from kil_interfaces.typestore import kil_typestore
from kil_sim.camera import CameraConfig
from kil_sim.oracle import oracle_keypoints
from kil_sim.rollout import RolloutConfig, run_episode
from kil_sim.scene import SceneConfig
from kil_sim.tasks import TASKS, sample_configuration
from kil_teleop.recording import (
    DEMONSTRATION_TOPICS,
    EpisodeWriter,
    episode_name,
    list_episodes,
    recover_partial_episodes,
)

#: Retries use configurations index + ATTEMPT_STRIDE * attempt, outside the normal index range.
ATTEMPT_STRIDE = 100_000
MAX_ATTEMPTS = 5


def record(
    task: str,
    episodes: int,
    out: Path,
    camera_hz: float = 15.0,
    width: int = 640,
    height: int = 480,
    compress: bool = True,
    progress: bool = True,
    masks: bool = False,
    check_interrupt: Callable[[], None] | None = None,
    jobs: int = 1,
) -> list[Path]:
    """Record until ``out`` holds ``episodes`` successful episodes; returns their paths.

    Episode k is always recorded from the same configuration (``train`` configuration k, or a retry's),
    whatever the order or process it is recorded in, so the result does not depend on ``jobs``; a
    missing episode (an interrupted run's) is recorded again.

    Args:
        check_interrupt: called before every recorded state and frame and between episodes; it
            raises KeyboardInterrupt to stop (see :class:`DeferredInterrupt`).
        masks: also record the simulator's instance masks (``/camera/instance_mask``, with the
            mask values' categories in the bag's ``instance_categories`` custom data), for
            instance matching without SAM3.
        jobs: episodes recorded at once, each in its own process (one core each: an episode is
            simulated and rendered on one thread).
    """
    if task not in TASKS:
        raise SystemExit(f"error: unknown task {task!r}; known: {', '.join(TASKS)}")
    if jobs < 1:
        raise ValueError(f"record: jobs must be >= 1, got {jobs}")
    out.mkdir(parents=True, exist_ok=True)
    recovered = recover_partial_episodes(out, _typestore())  # what an interrupted run left, kept
    settings = _Recording(task, out, camera_hz, width, height, compress, masks)
    scene = settings.scene()
    save_extrinsics(out / "calibration.yaml", scene.camera.extrinsics(scene.base_frame))
    complete = {path.name for path in list_episodes(out)}
    missing = [k for k in range(episodes) if episode_name(k) not in complete]
    bar = tqdm(total=episodes, initial=episodes - len(missing), desc=f"{task} demos", unit="ep", disable=not progress)
    for path, _ in recovered:
        bar.write(f"an unfinished episode of an earlier run was kept as {path} (recorded again here)")
    if jobs == 1 or len(missing) < 2:
        for index in missing:
            if check_interrupt is not None:
                check_interrupt()
            for line in _record_episode(settings, index, check_interrupt):
                bar.write(line)
            bar.update(1)
    else:
        _record_in_processes(settings, missing, min(jobs, len(missing)), bar, check_interrupt)
    bar.close()
    return list_episodes(out)[:episodes]


@dataclass(frozen=True)
class _Recording:
    """What every episode of one :func:`record` call shares (picklable, for the worker processes)."""

    task: str
    out: Path
    camera_hz: float
    width: int
    height: int
    compress: bool
    masks: bool

    def scene(self) -> SceneConfig:
        return SceneConfig(camera=CameraConfig(width=self.width, height=self.height))


@functools.cache
def _typestore():
    return kil_typestore()


def _record_episode(settings: _Recording, index: int, check_interrupt: Callable[[], None] | None) -> list[str]:
    """Record episode ``index`` (retrying failed attempts from other configurations); returns the
    lines to show (the failed attempts)."""
    typestore = _typestore()
    scene = settings.scene()
    types = MessageTypes.rosbags(typestore)
    rollout = RolloutConfig(camera_hz=settings.camera_hz, instance_masks=settings.masks)
    topics = {**DEMONSTRATION_TOPICS, ORACLE_TOPIC: "kil_interfaces/msg/KeypointArray"}
    if settings.masks:
        topics[MASK_TOPIC] = "sensor_msgs/msg/Image"
    notes = []
    for attempt in range(MAX_ATTEMPTS):
        config = sample_configuration(settings.task, "train", index + ATTEMPT_STRIDE * attempt, scene=scene)
        metadata = {
            "task": settings.task,
            "setting": "train",
            "configuration": str(config.index),
            "seed": str(config.seed),
            "variants": ",".join(o.model.variant for o in config.objects),
            "instance_categories": ",".join(f"{i + 1}:{o.model.category}" for i, o in enumerate(config.objects)),
        }
        with EpisodeWriter(
            settings.out / episode_name(index), topics, typestore, settings.compress, metadata
        ) as writer:
            world = config.make_world()
            oracle = partial(oracle_keypoints, world)
            sink = BagSink(writer, types, world.camera_intrinsics, oracle)
            if check_interrupt is not None:
                sink = _CheckedSink(sink, check_interrupt)
            result = run_episode(
                config,
                config=rollout,
                sink=sink,
                world=world,
                rng=np.random.default_rng(config.seed),
            )
            world.close()
            writer.set_metadata("success", str(result.success).lower())
            writer.set_metadata("duration_s", f"{result.duration_s:.2f}")
            if not result.success:
                writer.abort()
                name, completion = episode_name(index), result.completion
                notes.append(f"{name}: attempt {attempt} failed (completion {completion:.2f}); retrying")
                continue
        return notes
    raise RuntimeError(
        f"{settings.task}: {MAX_ATTEMPTS} failed attempts at {episode_name(index)}; the expert is broken"
    )


def _record_in_processes(
    settings: _Recording,
    indices: list[int],
    jobs: int,
    bar: tqdm,
    check_interrupt: Callable[[], None] | None,
) -> None:
    """Episodes ``indices`` recorded ``jobs`` at a time in worker processes (spawned: no forked
    MuJoCo/EGL state). A failed episode stops the rest (those started finish) and is raised here."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_worker_started, initargs=(os.getpid(),)
    ) as pool:
        futures = [pool.submit(_record_episode_in_worker, settings, index) for index in indices]
        try:
            for future in as_completed(futures):
                for line in future.result():
                    bar.write(line)
                bar.update(1)
                if check_interrupt is not None:
                    check_interrupt()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


_worker_interrupt: DeferredInterrupt | None = None


def _worker_started(parent: int) -> None:
    """A recording worker: Ctrl-C (sent to the whole process group) stops it at its next state or
    frame, leaving the episode under ``.partial/`` as the single-process recorder does; it ends by
    itself when the process that started it is gone."""
    global _worker_interrupt
    _worker_interrupt = DeferredInterrupt()
    signal.signal(signal.SIGINT, _worker_interrupt)
    exit_when_orphaned(parent)


def _record_episode_in_worker(settings: _Recording, index: int) -> list[str]:
    return _record_episode(settings, index, None if _worker_interrupt is None else _worker_interrupt.check)


class _CheckedSink:
    """A sink that asks ``check`` before passing each state, frame and action on."""

    def __init__(self, sink: BagSink, check: Callable[[], None]) -> None:
        self.sink, self.check = sink, check

    def on_camera(self, frame, stamp_ns: int) -> None:
        self.check()
        self.sink.on_camera(frame, stamp_ns)

    def on_state(self, state) -> None:
        self.check()
        self.sink.on_state(state)

    def on_action(self, chunk) -> None:
        self.sink.on_action(chunk)


class DeferredInterrupt:
    """SIGINT handler that only sets a flag; :meth:`check` raises KeyboardInterrupt at a safe point.
    A Ctrl-C raised inside a native call (MuJoCo making its EGL context) would otherwise surface
    as a ``ctypes.ArgumentError`` instead of a clean stop. A second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_eval.record_demos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, choices=sorted(TASKS), help="task to demonstrate")
    parser.add_argument("--episodes", type=int, default=50, help="number of successful episodes (default 50)")
    parser.add_argument("--out", type=Path, required=True, help="output directory of episode bags")
    parser.add_argument("--camera-hz", type=float, default=15.0, help="camera frame rate (default 15)")
    parser.add_argument("--width", type=int, default=640, help="image width (default 640)")
    parser.add_argument("--height", type=int, default=480, help="image height (default 480)")
    parser.add_argument("--no-compress", action="store_true", help="store MCAP chunks uncompressed")
    parser.add_argument("--masks", action="store_true", help="also record the instance masks (/camera/instance_mask)")
    parser.add_argument(
        "--jobs", type=int, default=1, help="episodes recorded at once, in separate processes (default 1)"
    )
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    # Ctrl-C must stop cleanly (also when started from a shell that ignores SIGINT in background
    # jobs): it is noted and acted on at the next state or frame.
    interrupt = DeferredInterrupt()
    signal.signal(signal.SIGINT, interrupt)
    try:
        paths = record(
            args.task,
            args.episodes,
            args.out,
            args.camera_hz,
            args.width,
            args.height,
            not args.no_compress,
            masks=args.masks,
            check_interrupt=interrupt.check,
            jobs=args.jobs,
        )
    except KeyboardInterrupt:
        print(f"\ninterrupted: {len(list_episodes(args.out))} complete episode(s) kept in {args.out}", file=sys.stderr)
        return 130
    print(f"{len(paths)} episodes in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
