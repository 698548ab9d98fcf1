"""Simulator throughput: simulated seconds per wall second, offline, on this machine.

    python -m kil_sim.bench --json [--task place_mug] [--episodes 3]

Measures scripted-expert episodes (the demonstration generator's loop) with no camera and with the
camera at 15 Hz (colour + depth); ``python -m kil_eval.bench`` adds writing the episode bag. As a
baseline in the same run it renders the same frames with ``mujoco.Renderer`` (separate
colour and depth passes, the straightforward way) and reports the per-frame times of both. The
``arms`` entry times the simulated Lite6 / UR5e per command (``arm_costs``).
"""

from __future__ import annotations

import os

# The mujoco.Renderer baseline picks its GL backend when mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "egl")

import argparse
import json
import platform
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import mujoco

from kil_sim.rollout import EpisodeSink, RolloutConfig, run_episode
from kil_sim.scene import CAMERA_NAME
from kil_sim.tasks import sample_configuration
from kil_sim.world import SimWorld


class _DiscardingSink:
    """Receives (and so renders) camera frames without keeping them."""

    def on_camera(self, frame, stamp_ns: int) -> None:
        pass

    def on_state(self, state) -> None:
        pass

    def on_action(self, chunk) -> None:
        pass


def episode_throughput(
    task: str,
    count: int,
    camera_hz: float,
    make_sink: Callable[[int, SimWorld], AbstractContextManager[EpisodeSink]] | None = None,
) -> dict:
    """Simulated seconds per wall second of ``count`` expert episodes.

    Args:
        make_sink: (episode index, world) -> a context manager giving the episode's sink (closed,
            and so timed, with the episode); default: frames are rendered and discarded.
    """
    sim_s = wall_s = 0.0
    for k in range(count):
        config = sample_configuration(task, "train", k)
        world = config.make_world()
        start = time.perf_counter()
        with make_sink(k, world) if make_sink is not None else nullcontext(_DiscardingSink()) as sink:
            result = run_episode(config, config=RolloutConfig(camera_hz=camera_hz), sink=sink, world=world)
        wall_s += time.perf_counter() - start
        sim_s += result.duration_s
        world.close()
    return {"sim_s": round(sim_s, 2), "wall_s": round(wall_s, 2), "realtime_factor": round(sim_s / wall_s, 2)}


def print_results(results: dict, as_json: bool) -> None:
    """One JSON object, or a line per entry."""
    if as_json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key}: {value}")


def machine() -> dict:
    """What the numbers were measured on."""
    return {"cpu_count": os.cpu_count(), "python": platform.python_version(), "mujoco": mujoco.__version__}


def _render_times(task: str, frames: int) -> dict:
    world = sample_configuration(task, "train", 0).make_world()
    camera = world.config.camera
    world.render()  # warm-up: GL context creation
    start = time.perf_counter()
    for _ in range(frames):
        world.step(1 / 15)
        world.render()
    ours = (time.perf_counter() - start) / frames
    renderer = mujoco.Renderer(world.model, camera.height, camera.width)
    renderer.update_scene(world.data, CAMERA_NAME)
    renderer.render()
    start = time.perf_counter()
    for _ in range(frames):
        world.step(1 / 15)
        renderer.disable_depth_rendering()
        renderer.update_scene(world.data, CAMERA_NAME)
        renderer.render()
        renderer.enable_depth_rendering()
        renderer.update_scene(world.data, CAMERA_NAME)
        renderer.render()
    baseline = (time.perf_counter() - start) / frames
    renderer.close()
    world.close()
    return {
        "frames": frames,
        "single_pass_ms": round(1000 * ours, 2),
        "mujoco_renderer_two_pass_ms": round(1000 * baseline, 2),
        "speedup": round(baseline / ours, 2),
    }


def arm_costs(task: str = "place_shoe", index: int = 0) -> dict:
    """Per-command costs of the simulated arms on the scripted expert's path of one configuration
    (a task both arms reach): the arm's joint step + forward kinematics (every physics tick of
    sim_node), the UR5e adapter's inverse kinematics (``ur5e_node``, per servo target) and the
    simulated Lite6 controller's inverse kinematics (per ``set_servo_cartesian``); and what they add
    per simulated second at the graph's rates (physics 100 Hz; servo 125 Hz UR5e, 200 Hz Lite6)."""
    import numpy as np

    from kil_control.ur5e import nearest_solution
    from kil_interfaces.rotations import quat_to_matrix
    from kil_sim.arms import arm
    from kil_sim.simulated_arm import SimulatedArm

    poses: list = []
    run_episode(
        sample_configuration(task, "in_distribution", index),
        config=RolloutConfig(camera_hz=0.0, stop_on_success=True),
        observer=lambda world, _ns: poses.append(world.commanded_tcp_pose()),
    )
    targets = []
    for position, quaternion in poses:
        target = np.eye(4)
        target[:3, :3], target[:3, 3] = quat_to_matrix(quaternion), position
        targets.append(target)
    out: dict = {"task": task, "index": index, "poses": len(targets)}
    rates = {"ur5e": 125.0, "lite6": 200.0}
    for name in ("ur5e", "lite6"):
        model = arm(name)
        simulated = SimulatedArm(model, *poses[0])
        start = time.perf_counter()
        for _ in range(1000):
            simulated.step(0.01)
            simulated.tcp_pose()
        step_ms = time.perf_counter() - start  # 1000 ticks: seconds per tick x 1000 = ms per tick
        seed, solved = simulated.joints, 0
        start = time.perf_counter()
        for target in targets:
            if name == "ur5e":
                solution = nearest_solution(target @ np.linalg.inv(model.tool), seed)
            else:
                solution = model.inverse(target, seed)
            solved += solution is not None
            seed = solution if solution is not None else seed
        ik_ms = 1000 * (time.perf_counter() - start) / len(targets)
        out[name] = {
            "step_and_fk_ms": round(step_ms, 4),
            "ik_per_command_ms": round(ik_ms, 3),
            "solved": solved,
            "ik_solver": "closed form (ur5e_node)" if name == "ur5e" else "damped least squares (simulated xarm_api)",
            "cpu_share_per_simulated_s": round((100 * step_ms + rates[name] * ik_ms) / 1000, 3),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_sim.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="place_mug")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--frames", type=int, default=60, help="frames for the renderer comparison")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = {
        "task": args.task,
        "machine": machine(),
        "resolution": "640x480",
        "no_camera": episode_throughput(args.task, args.episodes, 0.0),
        "camera_15hz": episode_throughput(args.task, args.episodes, 15.0),
        "render_per_frame": _render_times(args.task, args.frames),
        "arms": arm_costs(),
    }
    print_results(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
