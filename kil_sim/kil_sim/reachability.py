"""Can a Lite6 or a UR5e, mounted at the simulator's robot base, do the simulated tasks?

The scripted expert runs each evaluation configuration (no camera) and every commanded TCP pose
on the 10 Hz control clock is solved with the arm's inverse kinematics (``kil_sim.arms``), seeded
by the previous tick's joints so that the path stays on one branch. A configuration fails when a
pose has no solution within the joint limits (out of reach: the distance from the shoulder is
given) or when the joints would move faster than the arm's maximum joint speed between two
ticks. Poses whose solution puts a link capsule into the table (``ArmModel.table_clearance``) are
counted and named (``into_table``) but do not fail a configuration: the capsules' radii are
estimates.

    python -m kil_sim.reachability --robot lite6 --tasks place_mug pour_bottle [--episodes 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

from kil_interfaces.rotations import quat_to_matrix
from kil_sim.arms import ARMS, ArmModel, arm
from kil_sim.rollout import RolloutConfig, run_episode
from kil_sim.tasks import EVALUATION_SETTINGS, TABLE_SETTINGS, TASKS, EpisodeConfig, evaluation_configurations


@dataclass
class PathCheck:
    """One configuration's expert path on one arm."""

    task: str
    setting: str
    index: int
    poses: int = 0
    unreachable: int = 0
    too_fast: int = 0
    expert_success: bool = False
    first_problem: str = ""
    first_unreachable: str = ""
    into_table: int = 0
    """Poses whose solution puts a link capsule into the table (the capsules' radii are estimates,
    so this is reported, not counted against reachability)."""
    first_into_table: str = ""
    max_joint_speed: list[float] = field(default_factory=list)

    @property
    def reachable(self) -> bool:
        return self.poses > 0 and self.unreachable == 0 and self.too_fast == 0


def check_path(poses: list[tuple[np.ndarray, np.ndarray]], model: ArmModel, dt: float, check: PathCheck) -> None:
    """Solve every (position, quaternion xyzw) pose in order; fill ``check``'s counts."""
    previous = None
    speeds = np.zeros(len(model.table))
    shoulder = model.shoulder()
    for k, (position, quaternion) in enumerate(poses):
        target = np.eye(4)
        target[:3, :3], target[:3, 3] = quat_to_matrix(quaternion), position
        q = model.inverse(target, previous)
        check.poses += 1
        if q is None:
            check.unreachable += 1
            if not check.first_unreachable:
                distance = float(np.linalg.norm(model.wrist_centre(target) - shoulder))
                reach = f", reach {model.wrist_reach_m:.3f} m" if np.isfinite(model.wrist_reach_m) else ""
                check.first_unreachable = (
                    f"tick {k}: TCP ({position[0]:.3f}, {position[1]:.3f}, {position[2]:.3f}) m has no {model.name} "
                    f"solution within the joint limits (wrist centre {distance:.3f} m from the shoulder{reach})"
                )
                check.first_problem = check.first_problem or check.first_unreachable
            continue
        clearance, link = model.table_clearance(q)
        if clearance < 0.0:  # solved, but a link capsule would reach into the table
            check.into_table += 1
            if not check.first_into_table:
                check.first_into_table = (
                    f"tick {k}: TCP ({position[0]:.3f}, {position[1]:.3f}, {position[2]:.3f}) m puts the "
                    f"{model.name}'s link {link} {-100 * clearance:.1f} cm into the table"
                )
        if previous is not None:
            speed = np.abs(q - previous) / dt
            speeds = np.maximum(speeds, speed)
            fast = np.flatnonzero(speed > model.max_speed)
            if fast.size:
                check.too_fast += 1
                if not check.first_problem:
                    j = int(fast[0])
                    check.first_problem = (
                        f"tick {k}: {model.joint_names[j]} would turn at {speed[j]:.2f} rad/s "
                        f"(max {model.max_speed[j]:.2f}) at TCP ({position[0]:.3f}, {position[1]:.3f}, "
                        f"{position[2]:.3f}) m"
                    )
        previous = q
    check.max_joint_speed = [round(float(s), 3) for s in speeds]


def check_configuration(configuration: EpisodeConfig, model: ArmModel, setting: str = "") -> PathCheck:
    """The scripted expert's path on one configuration (run without a camera), checked on ``model``."""
    rollout = RolloutConfig(camera_hz=0.0, stop_on_success=True)
    poses: list[tuple[np.ndarray, np.ndarray]] = []

    def record(world, _stamp_ns: int) -> None:
        poses.append(world.commanded_tcp_pose())

    result = run_episode(configuration, config=rollout, observer=record)
    check = PathCheck(configuration.task, setting or configuration.setting, configuration.index)
    check.expert_success = result.success
    check_path(poses, model, 1.0 / rollout.control_hz, check)
    return check


def check_task(
    task: str,
    robot: str,
    episodes: int = 10,
    settings=TABLE_SETTINGS,
    progress: bool = True,
    offset_m: tuple[float, float] | None = None,
) -> list[PathCheck]:
    """The expert's path of each evaluation configuration of ``task`` checked on ``robot``, the
    scene moved by ``offset_m`` (default: the arm's layout of the task, ``ArmModel.scene_offset``)."""
    model = arm(robot)
    offset = model.scene_offset(task) if offset_m is None else offset_m
    configurations = [(s, c.shifted(offset)) for s in settings for c in evaluation_configurations(task, s, episodes)]
    return [
        check_configuration(configuration, model, setting)
        for setting, configuration in tqdm(configurations, desc=f"{task} on {robot}", disable=not progress)
    ]


def summarise(checks: list[PathCheck]) -> dict:
    """Per task and setting: configurations, reachable, the expert's successes, a first problem."""
    out: dict = {}
    for check in checks:
        row = out.setdefault(check.task, {}).setdefault(
            check.setting, {"configurations": 0, "reachable": 0, "expert_success": 0, "problems": []}
        )
        row["configurations"] += 1
        row["reachable"] += int(check.reachable)
        row["expert_success"] += int(check.expert_success)
        if check.first_problem:
            row["problems"].append(f"#{check.index}: {check.first_problem}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", required=True, choices=sorted(ARMS), help="the arm")
    parser.add_argument("--tasks", nargs="+", default=["place_mug"], choices=sorted(TASKS), help="tasks to check")
    parser.add_argument("--episodes", type=int, default=10, help="configurations per setting")
    parser.add_argument("--settings", nargs="+", default=list(TABLE_SETTINGS), choices=EVALUATION_SETTINGS)
    parser.add_argument("--json", default="", help="write every configuration's check here")
    parser.add_argument(
        "--offset", nargs=2, type=float, metavar=("DX", "DY"), help="move the scene by DX DY (m; default: the arm's)"
    )
    args = parser.parse_args(argv)
    offset = tuple(args.offset) if args.offset else None
    checks = [
        c for task in args.tasks for c in check_task(task, args.robot, args.episodes, args.settings, True, offset)
    ]
    summary = summarise(checks)
    print(f"| task | setting | reachable by {args.robot} | expert success (floating gripper) | first problem |")
    print("|---|---|---|---|---|")
    for task, settings in summary.items():
        for setting, row in settings.items():
            problem = row["problems"][0] if row["problems"] else ""
            print(f"| {task} | {setting} | {row['reachable']}/{row['configurations']} | "
                  f"{row['expert_success']}/{row['configurations']} | {problem} |")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"robot": args.robot, "summary": summary, "checks": [asdict(c) for c in checks]}, f, indent=2)
    return 0 if all(c.reachable for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
