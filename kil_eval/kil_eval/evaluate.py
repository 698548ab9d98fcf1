"""The evaluation protocol (paper §IV-D): fixed configurations per setting, success rates with 95 %
confidence intervals, every episode on disk.

    python -m kil_eval.evaluate --tasks place_mug --settings in_distribution unseen_object scene_variation
    python -m kil_eval.evaluate --checkpoint runs/mug_im/checkpoint_last --tasks place_mug \\
        --keypoints perception --spec specs/place_mug/spec.yaml --method image --out results/kil_im
    python -m kil_eval.evaluate --checkpoint runs/mug_rgb/checkpoint_last --tasks place_mug --out results/rgb

Every controller sees the same configurations (10 per setting by default, fixed by seed). Success
rates get a Clopper-Pearson interval; multi-object tasks report task completion with a Wald
interval. Controllers: the scripted expert (no ``--checkpoint``), or a trained policy fed what it
was trained on — keypoints from the simulator's ground truth (``--keypoints oracle``, in the
spec's layout when ``--spec`` is given), keypoints perceived from the rendered camera frame
every 10 Hz tick as ``keypoint_node`` would (``--keypoints perception --spec S --method
image|instance|track --backend NAME``; instance matching uses the simulator's masks unless
``--instance-source sam3``), or, for an RGB checkpoint, the camera frame itself. The input's
keypoint layout must be the checkpoint's: a difference is refused before any episode runs.

With ``--out DIR`` it writes ``summary.json`` (per task and setting: successes, rate, interval;
keypoint pixel error against the simulator's ground truth, median and PCK@10px; timings),
``episodes.jsonl`` (one line per episode) and, with ``--gif``, a rollout animation per task and
setting (its first configuration, keypoints drawn, the outcome in the title).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kil_eval.failures import ARM_CONTACT_LIMIT_N, FAILURE_CLASSES, FailureMonitor, keypoint_fault
from kil_eval.intervals import clopper_pearson, wald
from kil_eval.specs import unknown_keypoints, with_camera
from kil_perception.pipeline import ExtractorConfig
from kil_sim.arms import ARMS
from kil_sim.arms import arm as arm_model
from kil_sim.camera import CameraConfig
from kil_sim.rollout import RolloutConfig, run_episode
from kil_sim.tasks import EVALUATION_SETTINGS, TASKS, evaluation_configurations

SUMMARY = "summary.json"
EPISODES = "episodes.jsonl"
PCK_PX = 10.0
#: Where the scene can be laid out: as simulated, or where one of the simulated arms reaches it.
LAYOUTS = ("simulated", *ARMS)


@dataclass
class SettingResult:
    """One task and setting: counts, rate (success rate, or mean completion for two-object
    tasks), its 95 % interval, the keypoint pixel error over every perceived frame (all
    keypoints; per object, the manipulated one apart from the fixture, in ``keypoint_objects``;
    per keypoint in ``keypoint_names``), the episodes' failure classes (``kil_eval.failures``), and
    how many episodes (``forceful_episodes``) and successes (``forceful_successes``) pressed on the
    gripper with more than ``contact_limit_n`` for 20 ms: what a simulated arm's controller stops as
    a collision (``kil_sim.arm_collision``) and the floating gripper pushes through, so
    ``successes - forceful_successes`` is the score an arm's collision detection would leave;
    ``forceful_phases`` counts what the gripper was doing when the contact first went over the
    limit (``FailureMonitor.phase``: approach, holding, after release)."""

    task: str
    setting: str
    episodes: int
    successes: int
    rate: float
    ci_low: float
    ci_high: float
    interval: str
    keypoint_median_px: float | None = None
    keypoint_pck10: float | None = None
    keypoint_frames: int = 0
    keypoint_objects: dict[str, dict] = field(default_factory=dict)
    keypoint_names: dict[str, dict] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    contact_limit_n: float = ARM_CONTACT_LIMIT_N
    forceful_episodes: int = 0
    forceful_successes: int = 0
    forceful_phases: dict[str, int] = field(default_factory=dict)


@dataclass
class EvaluationConfig:
    """What to evaluate and how.

    Attributes:
        name: the method's label in results and reports (e.g. "KIL-IM", "RGB", "expert").
        checkpoint: policy checkpoint directory ("" = the scripted expert).
        keypoints: "oracle" or "perception" (keypoint policies; RGB policies see the camera).
        spec: keypoint spec YAML (perception; optional for oracle: feeds the spec's layout).
        perception: how keypoints are extracted (``keypoints="perception"``); its device is
            ``device``'s, and instance matching takes the simulator's masks by default.
        tasks, settings, episodes: the protocol's grid (episodes = configurations per setting);
            no tasks = the checkpoint's task (place_mug for the expert). A checkpoint that knows
            its task refuses another.
        width, height: camera image size (px); the spec's reference images must have it.
        max_duration_s: episode time limit (s). device: torch device. gif: film the first
            configuration of each setting. seed: the policy's sampling seed.
        layout: "simulated" (the tasks where the simulator lays them out and the demonstrations
            were recorded), or an arm ("lite6", "ur5e"): each configuration moved where that arm
            reaches it (``ArmModel.scene_offset``), as ``sim_node robot:=...`` lays it out, so a
            checkpoint's offline score there separates the layout from the arm's path.
    """

    name: str = "expert"
    checkpoint: str = ""
    keypoints: str = "oracle"
    spec: str = ""
    perception: ExtractorConfig = field(default_factory=lambda: ExtractorConfig(instance_source="masks"))
    tasks: tuple[str, ...] = ()
    settings: tuple[str, ...] = ("in_distribution",)
    episodes: int = 10
    width: int = CameraConfig.width
    height: int = CameraConfig.height
    max_duration_s: float = 40.0
    device: str = "cpu"
    gif: bool = False
    seed: int = 0
    layout: str = "simulated"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tasks, self.settings = tuple(self.tasks), tuple(self.settings)
        for task in self.tasks:
            if task not in TASKS:
                raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
        for setting in self.settings:
            if setting not in EVALUATION_SETTINGS:
                raise ValueError(f"unknown setting {setting!r}; known: {', '.join(EVALUATION_SETTINGS)}")
        if self.keypoints not in ("oracle", "perception"):
            raise ValueError(f"keypoints must be oracle or perception, got {self.keypoints!r}")
        if self.keypoints == "perception" and not self.spec:
            raise ValueError("keypoints perception needs a spec")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.episodes < 1 or self.max_duration_s <= 0:
            raise ValueError(f"need episodes >= 1 and max_duration_s > 0, got {self.episodes}, {self.max_duration_s}")

    @property
    def camera(self) -> CameraConfig:
        return CameraConfig(width=self.width, height=self.height)


class InputMismatchError(ValueError):
    """The policy cannot be fed these inputs (keypoint layout, camera size); the text says why."""


def error_stats(errors: np.ndarray) -> dict:
    """Median pixel error and PCK@10px of the finite values of ``errors`` (None when there are none)."""
    flat = errors[np.isfinite(errors)]
    if not flat.size:
        return {"median_px": None, "pck10": None, "values": 0}
    return {"median_px": float(np.median(flat)), "pck10": float(np.mean(flat <= PCK_PX)), "values": int(flat.size)}


def object_roles(task: str) -> dict[str, str]:
    """Category -> "manipulated" or "fixture" for a task's objects."""
    spec = TASKS[task]
    return {spec.category: "manipulated", spec.fixture_category: "fixture"}


def errors_by(errors: np.ndarray, keys: list[str]) -> dict[str, dict]:
    """Per distinct key of the layout's K slots (in first-seen order): :func:`error_stats` of the
    columns of ``errors`` (F, K) whose slot has that key."""
    out = {}
    for key in dict.fromkeys(keys):
        columns = np.array([k == key for k in keys])
        out[key] = error_stats(errors[:, columns] if errors.size else np.zeros((0, 0)))
    return out


def errors_by_object(errors: np.ndarray, categories: list[str], task: str) -> dict[str, dict]:
    """Per object category of the layout: its role in the task and :func:`error_stats` of its
    keypoints over the frames of ``errors`` (F, K)."""
    roles = object_roles(task)
    return {c: {"role": roles.get(c, "other"), **stats} for c, stats in errors_by(errors, categories).items()}


def errors_by_keypoint(errors: np.ndarray, categories: list[str], names: list[str]) -> dict[str, dict]:
    """'category/name' -> :func:`error_stats` of that keypoint (instances together)."""
    return errors_by(errors, [f"{c}/{n}" for c, n in zip(categories, names, strict=True)])


def summarise(
    task: str,
    setting: str,
    completions: list[float],
    errors: list[np.ndarray],
    categories: list[str] | None = None,
    names: list[str] | None = None,
    failures: list[str] | None = None,
    contact_phases: list[str] | None = None,
) -> SettingResult:
    """A setting's row from its episodes' completions, perceived frames' pixel errors ((F, K)
    per episode, in the layout ``categories``/``names``), failure classes and, per episode, what
    the gripper was doing when its contact went over an arm's collision limit ("" where it did not:
    ``FailureMonitor.over_limit_phase``)."""
    phases = contact_phases or []
    if phases and len(phases) != len(completions):
        raise ValueError(f"summarise: {len(phases)} contact phases for {len(completions)} episodes")
    forceful = [bool(p) for p in phases] if phases else [False] * len(completions)
    if TASKS[task].multi_instance:
        low, high = wald(completions)
        rate, interval = sum(completions) / len(completions), "wald"
    else:
        low, high = clopper_pearson(sum(c >= 1.0 for c in completions), len(completions))
        rate, interval = sum(c >= 1.0 for c in completions) / len(completions), "clopper-pearson"
    frames = [e for e in errors if e.size]
    stacked = np.concatenate(frames) if frames else np.zeros((0, 0))
    overall = error_stats(stacked)
    counted = {kind: (failures or []).count(kind) for kind in FAILURE_CLASSES}
    return SettingResult(
        task,
        setting,
        len(completions),
        int(sum(c >= 1.0 for c in completions)),
        float(rate),
        float(low),
        float(high),
        interval,
        overall["median_px"],
        overall["pck10"],
        int(sum(len(e) for e in errors)),
        errors_by_object(stacked, categories, task) if categories and stacked.size else {},
        errors_by_keypoint(stacked, categories, names) if categories and names and stacked.size else {},
        {kind: n for kind, n in counted.items() if n},
        ARM_CONTACT_LIMIT_N,
        int(sum(forceful)),
        int(sum(f and c >= 1.0 for f, c in zip(forceful, completions, strict=True))),
        {phase: n for phase, n in Counter(p for p in phases if p).items()},
    )


class Evaluation:
    """Builds the controller of every episode for one :class:`EvaluationConfig` and runs the grid."""

    def __init__(self, config: EvaluationConfig) -> None:
        self.policy = None
        self.layout = None
        self.source = None
        trained_on = ""
        if config.checkpoint:
            from kil_interfaces.checkpoint_info import checkpoint_task

            trained_on = checkpoint_task(config.checkpoint)
            other = [t for t in config.tasks if trained_on and t != trained_on]
            if other:
                raise InputMismatchError(
                    f"checkpoint {config.checkpoint} was trained on {trained_on}; refusing to evaluate it on "
                    f"{', '.join(other)} (leave --tasks out to evaluate on {trained_on})"
                )
        self.config = config = replace(config, tasks=config.tasks or (trained_on or "place_mug",))
        if config.checkpoint:
            from kil_interfaces.keypoint_layout import read_layout
            from kil_policy.checkpoint import load_policy

            self.policy = load_policy(config.checkpoint, config.device)
            self.layout = read_layout(config.checkpoint)
            self.source = self._source()

    @property
    def images(self) -> bool:
        """The policy sees images (the RGB or S2 baseline), not keypoints."""
        return self.policy is not None and self.policy.config.uses_images

    def _source(self):
        from kil_eval.observations import CameraFrames, OracleKeypoints, PerceivedKeypoints, S2Frames

        c = self.config
        if self.policy.config.observation == "s2":
            return S2Frames(self.policy.config.mask_categories)
        if self.images:
            return CameraFrames()
        if c.keypoints == "perception":
            return PerceivedKeypoints(c.spec, replace(c.perception, device=c.device))
        return OracleKeypoints(c.spec or None, render=c.gif)

    def check_inputs(self, task: str) -> None:
        """Refuse, before any episode, inputs whose layout or camera the policy was not trained on.

        Raises:
            InputMismatchError: one line naming the checkpoint's layout and the input's.
        """
        from kil_interfaces.keypoint_layout import layout_of_message, mismatch
        from kil_perception.spec import KeypointSpec

        if self.policy is None or self.images:
            return
        spec: KeypointSpec | None = getattr(self.source, "spec", None)
        if spec is not None:
            scene = (TASKS[task].category, TASKS[task].fixture_category)
            strangers = [c.name for c in spec.categories if c.name not in scene]
            if strangers:
                raise InputMismatchError(
                    f"spec {spec.path} has categories {', '.join(c.name for c in spec.categories)}; "
                    f"{', '.join(strangers)} is not an object of the {task} scene ({', '.join(scene)})"
                )
            unknown = unknown_keypoints(task, spec) if self.config.keypoints == "oracle" else ""
            if unknown:  # the oracle has no ground truth for them: those slots would be silently empty
                raise InputMismatchError(f"--keypoints oracle: {unknown}")
            for category in spec.categories:
                for reference in category.references:
                    height, width = reference.image().shape[:2]
                    if (width, height) != (self.config.width, self.config.height):
                        raise InputMismatchError(
                            f"{spec.path}: reference image {reference.image_path.name} is {width}x{height}, the "
                            f"camera renders {self.config.width}x{self.config.height}; use the spec's size"
                        )
            actual = tuple(spec.layout())
            name = f"spec {spec.path}"
        else:
            world = evaluation_configurations(task, self.config.settings[0], 1)[0].make_world()
            actual = layout_of_message(self.source(world, 0))
            world.close()
            name = f"the simulator's {task} keypoints"
        expected = self.layout
        if expected is None:  # an older checkpoint: only the count is known
            k = self.policy.config.encoder.num_keypoints
            if k != len(actual):
                raise InputMismatchError(f"{self.config.checkpoint} expects {k} keypoints; {name} gives {len(actual)}")
            return
        problem = mismatch(expected, actual, f"checkpoint {self.config.checkpoint}", name)
        if problem:
            raise InputMismatchError(problem)

    def controller(self, film=None):
        """A controller for one episode (None: the task's scripted expert)."""
        if self.policy is None:
            return None
        from kil_eval.controllers import PolicyController
        from kil_policy.runner import PolicyRunner

        runner = PolicyRunner(
            self.policy, seed=self.config.seed, layout=self.layout, layout_source=self.config.checkpoint
        )
        return PolicyController(runner, self.source, film)

    def run(self, out: Path | None = None, progress: bool = True) -> list[SettingResult]:
        """Every task and setting; with ``out``, also writes the summary, episodes and GIFs."""
        from kil_eval.controllers import Film

        c = self.config
        rows, lines = [], []
        started = time.perf_counter()
        rollout = RolloutConfig(camera_hz=0, max_duration_s=c.max_duration_s, stop_on_success=True)
        for task in c.tasks:
            self.check_inputs(task)
            for setting in c.settings:
                completions, errors, failures, phases = [], [], [], []
                configs = evaluation_configurations(task, setting, c.episodes)
                if c.layout != "simulated":  # laid out where the arm reaches, as sim_node does for it
                    offset = arm_model(c.layout).scene_offset(task)
                    configs = [episode.shifted(offset) for episode in configs]
                bar = tqdm(
                    total=len(configs), desc=f"{c.name} {task}/{setting}", unit="ep", disable=not progress, leave=False
                )
                for episode in configs:
                    film = Film() if c.gif and out is not None and episode.index == 0 else None
                    controller = self.controller(film)
                    marks = self._marks()
                    monitor = FailureMonitor(TASKS[task])
                    result = run_episode(with_camera(episode, c.camera), controller, rollout, observer=monitor)
                    episode_errors, episode_valid = self._since(marks, "errors"), self._since(marks, "valid")
                    fault = ""
                    if episode_errors.size and self.source is not None:
                        moving = np.array([x == TASKS[task].category for x in self.source.categories])
                        valid = episode_valid if episode_valid.shape == episode_errors.shape else None
                        # Perception is judged on the frames before the object fell, if it did.
                        stamps = self._since(marks, "stamps")  # recorded with every frame's errors
                        fault = keypoint_fault(
                            episode_errors, valid, moving, c.width, monitor.thresholds, stamps, monitor.mishap_ns()
                        )
                    failure = monitor.classify(result.completion, result.ended, fault)
                    errors.append(episode_errors)
                    completions.append(result.completion)
                    failures.append(failure.kind)
                    lines.append(self._line(task, setting, episode, result, controller, episode_errors, marks, failure))
                    lines[-1]["peak_contact_n"] = round(monitor.peak_contact_n, 1)
                    lines[-1]["peak_contact_with"] = monitor.peak_contact_with
                    over = monitor.over_limit_s
                    lines[-1]["contact_over_limit_s"] = None if over is None else round(over, 2)
                    lines[-1]["contact_over_limit_phase"] = monitor.over_limit_phase
                    phases.append(monitor.over_limit_phase)
                    # The count and the successes move together: the bar counts finished episodes.
                    bar.set_postfix(success=f"{sum(x >= 1 for x in completions)}/{len(completions)}", refresh=False)
                    bar.update(1)
                    if film is not None:
                        self._write_gif(out, task, setting, film, result, failure.kind)
                categories = list(getattr(self.source, "categories", []) or [])
                names = list(getattr(self.source, "names", []) or [])
                bar.close()
                rows.append(summarise(task, setting, completions, errors, categories, names, failures, phases))
        if out is not None:
            self._write(out, rows, lines, time.perf_counter() - started)
        return rows

    def _marks(self) -> dict[str, int]:
        """How many per-frame records the source holds so far (an episode's are those after)."""
        return {name: len(getattr(self.source, name, [])) for name in ("errors", "valid", "seconds", "stamps")}

    def _since(self, marks: dict[str, int], name: str) -> np.ndarray:
        """(F, K) per-frame records ``name`` of the source since ``marks`` ((0, 0) when none)."""
        records = getattr(self.source, name, None)
        if not records or len(records) == marks[name]:
            return np.zeros((0, 0))
        return np.stack(records[marks[name] :])

    def _line(self, task, setting, episode, result, controller, errors, marks, failure) -> dict:
        overall = error_stats(errors)
        categories = list(getattr(self.source, "categories", []) or [])
        by_object = errors_by_object(errors, categories, task) if errors.size and categories else {}
        seconds = getattr(self.source, "seconds", [])[marks["seconds"] :]
        predict = getattr(controller, "predict_s", [])
        return {
            "method": self.config.name,
            "task": task,
            "setting": setting,
            "index": episode.index,
            "seed": episode.seed,
            "success": bool(result.success),
            "completion": float(result.completion),
            "duration_s": round(result.duration_s, 3),
            "ended": result.ended,
            "failure": failure.kind,
            "failure_detail": failure.detail,
            "control_steps": result.control_steps,
            "keypoint_median_px": overall["median_px"],
            "keypoint_pck10": overall["pck10"],
            "keypoint_objects": {
                category: {k: stats[k] for k in ("role", "median_px", "pck10")} for category, stats in by_object.items()
            },
            "perceive_ms": round(1000 * float(np.median(seconds)), 2) if seconds else None,
            "predict_ms": round(1000 * float(np.median(predict)), 2) if predict else None,
        }

    def _write_gif(self, out: Path, task: str, setting: str, film, result, failure: str) -> None:
        from kil_eval.animation import write_gif

        outcome = "success" if result.success else f"failure: {failure}"
        title = f"{self.config.name} | {task} | {setting} #0 | {outcome}"
        write_gif(film.frames, out / f"rollout_{task}_{setting}.gif", title)

    def _write(self, out: Path, rows: list[SettingResult], lines: list[dict], seconds: float) -> None:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / EPISODES, "w") as handle:
            for line in lines:
                handle.write(json.dumps(line) + "\n")
        c = self.config
        summary = {
            "name": c.name,
            "config": {k: v for k, v in asdict(c).items() if k != "extra"} | {"tasks": list(c.tasks)},
            "observation": "expert"
            if self.policy is None
            else (self.policy.config.observation if self.images else f"keypoints ({c.keypoints})"),
            "checkpoint": str(Path(c.checkpoint).resolve()) if c.checkpoint else None,
            "loss_csv": _loss_csv(c.checkpoint),
            "results": [asdict(r) for r in rows],
            "gifs": sorted(p.name for p in out.glob("rollout_*.gif")),
            "wall_s": round(seconds, 1),
            **c.extra,
        }
        (out / SUMMARY).write_text(json.dumps(summary, indent=1))


def _loss_csv(checkpoint: str) -> str | None:
    """The training run's loss.csv beside the checkpoint directory, if any."""
    if not checkpoint:
        return None
    path = Path(checkpoint).resolve().parent / "loss.csv"
    return str(path) if path.is_file() else None


def format_table(rows: list[SettingResult]) -> str:
    lines = [f"{'task':22s} {'setting':16s} {'rate':>6s}  95% CI"]
    for r in rows:
        interval = f"[{100 * r.ci_low:.0f}, {100 * r.ci_high:.0f}] ({r.interval})"
        keypoints = "" if r.keypoint_median_px is None else f"  keypoints: median {r.keypoint_median_px:.1f} px"
        forceful = (
            f"  {r.forceful_successes} of {r.successes} successes over an arm's {r.contact_limit_n:g} N contact limit"
            if r.forceful_successes
            else ""
        )
        lines.append(f"{r.task:22s} {r.setting:16s} {100 * r.rate:5.0f}%  {interval}{keypoints}{forceful}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_eval.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="", help="policy checkpoint directory (none: the scripted expert)")
    parser.add_argument("--name", help="the method's label in results (default: expert, KIL or RGB)")
    parser.add_argument("--device", default="cpu", help="torch device for the policy and perception")
    parser.add_argument("--max-duration", type=float, default=40.0, help="episode time limit (s)")
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=[],
        choices=["all", *TASKS],
        help="tasks (all: every one; default: the checkpoint's task, place_mug for the expert)",
    )
    parser.add_argument(
        "--settings", nargs="+", default=["in_distribution"], choices=list(EVALUATION_SETTINGS), help="settings"
    )
    parser.add_argument("--episodes", type=int, default=10, help="configurations per setting (10 in the protocol)")
    parser.add_argument(
        "--keypoints", choices=["oracle", "perception"], default="oracle", help="keypoint policy inputs"
    )
    parser.add_argument("--spec", default="", help="keypoint spec YAML (perception; oracle in the spec's layout)")
    parser.add_argument("--method", default="image", help="image, instance or track (--keypoints perception)")
    parser.add_argument("--backend", default="effnet_lite0", help="feature backend (--keypoints perception)")
    parser.add_argument("--model", default="", help="backend model id or local path")
    parser.add_argument("--instance-source", default="masks", help="masks (the simulator's) or sam3")
    parser.add_argument("--tracker", default="lk", help="lk or cotracker3 (--method track)")
    parser.add_argument("--track-init", default="image", help="image or instance matching starts the tracks")
    parser.add_argument(
        "--redetect-every",
        type=int,
        default=0,
        help="--method track: every N-th frame with a lost track, matching restarts it (0: never, the paper)",
    )
    parser.add_argument(
        "--mask-guard",
        action="store_true",
        help="--method track --track-init instance: a track that leaves its object's instance mask is matched "
        "again there or moves with its object; depth read on the object (off: the paper's tracking)",
    )
    parser.add_argument("--min-score", type=float, default=0.0, help="weaker matches are invalid (0: off)")
    parser.add_argument(
        "--colour", default="rgb", choices=["rgb", "luminance"], help="what the feature backend sees (perception)"
    )
    parser.add_argument(
        "--feature-scale", type=float, default=1.0, help="frames resized by this before the backend (perception)"
    )
    parser.add_argument(
        "--layout-check",
        type=float,
        default=0.0,
        help="image matching: each object's keypoints matched together, keeping their reference layout, with this "
        "weight (0: each keypoint's own argmax, the paper's)",
    )
    parser.add_argument("--width", type=int, default=CameraConfig.width, help="camera image width (px)")
    parser.add_argument("--height", type=int, default=CameraConfig.height, help="camera image height (px)")
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="simulated",
        help="where the scene is laid out: as simulated, or where an arm reaches it (as sim_node robot:=lite6|ur5e)",
    )
    parser.add_argument("--out", type=Path, help="write summary.json, episodes.jsonl (and GIFs) here")
    parser.add_argument("--gif", action="store_true", help="film the first configuration of each setting (--out)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    name = args.name or ("expert" if not args.checkpoint else "policy")
    tasks = list(TASKS) if "all" in args.tasks else args.tasks
    try:
        perception = ExtractorConfig(
            method=args.method,
            backend=args.backend,
            model=args.model,
            instance_source=args.instance_source,
            tracker=args.tracker,
            track_init=args.track_init,
            redetect_every=args.redetect_every,
            mask_guard=args.mask_guard,
            min_score=args.min_score,
            colour=args.colour,
            feature_scale=args.feature_scale,
            layout_check=args.layout_check,
        )
        config = EvaluationConfig(
            name=name,
            checkpoint=args.checkpoint,
            keypoints=args.keypoints,
            spec=args.spec,
            perception=perception,
            tasks=tasks,
            settings=args.settings,
            episodes=args.episodes,
            width=args.width,
            height=args.height,
            max_duration_s=args.max_duration,
            device=args.device,
            gif=args.gif,
            layout=args.layout,
        )
        evaluation = Evaluation(config)
        rows = evaluation.run(args.out, progress=not args.json)
    except ValueError as error:  # bad settings, a checkpoint that does not fit, mismatched inputs
        parser.exit(2, f"error: {error}\n")
    if args.json:
        inputs = {"keypoints": args.keypoints} | ({"method": args.method, "backend": args.backend} if args.spec else {})
        print(json.dumps({"name": name, **inputs, "results": [asdict(r) for r in rows]}))
    else:
        print(format_table(rows))
        if args.out:
            print(f"results: {args.out / SUMMARY}, {args.out / EPISODES}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
