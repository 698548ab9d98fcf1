"""The whole method on one task, stage by stage: record demonstrations, annotate the spec, extract
keypoints from the bags, train the KIL policy (per extraction method) and the RGB baseline,
evaluate each with its inputs in the loop, and write the report. ``kil_eval.demo`` runs it at
CPU size, ``kil_eval.study`` over a grid.

Every stage reuses what an earlier run finished (demonstrations resume, extracted keypoints are
cached beside the bags, a finished training or evaluation with the same settings is kept), prints
a progress bar while it works and one summary line when it is done.

After recording and annotation each method's stages (extract, train, evaluate) depend on nothing
but the demonstrations, so with ``jobs`` > 1 the methods run in that many processes at once, the
CPU's threads divided among them: at the demo's sizes a training step is too small to keep two
threads busy (one 2-thread process: 463 KIL samples/s; two 1-thread processes: 2 x 304 = 608,
``python -m kil_policy.bench``'s training rows), so the methods together finish sooner. Each
process writes its progress to ``logs/<method>.log``; the summary lines are printed here.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from tqdm import tqdm

from kil_eval.evaluate import SUMMARY, Evaluation, EvaluationConfig
from kil_eval.orphaned import exit_when_orphaned
from kil_eval.record_demos import record
from kil_eval.report import write_report
from kil_eval.specs import make_spec
from kil_perception.pipeline import ExtractorConfig
from kil_sim.camera import CameraConfig
from kil_sim.tasks import TABLE_SETTINGS, TASKS

#: The compared methods (paper §IV-C, §IV-F): KIL with image matching (IM), instance matching
#: (IN, the simulator's masks standing in for SAM3) or tracking (T, Lucas-Kanade started by image
#: matching), the RGB diffusion baseline and S2 (task-object mask + relative depth, the
#: simulator's masks standing in for Grounded-SAM2).
METHODS: dict[str, dict] = {
    "KIL-IM": {"method": "image"},
    "KIL-IN": {"method": "instance", "instance_source": "masks"},
    # Tracks start from instance matching, as in the paper (§III-B: "To initialize the tracker, we use
    # the instance matching method"), in the simulator's masks as KIL-IN; Lucas-Kanade, since
    # CoTracker3's weights cannot be downloaded here ("tracker": "cotracker3" where they can).
    "KIL-T": {"method": "track", "tracker": "lk", "track_init": "instance", "instance_source": "masks"},
    "RGB": {},
    "S2": {},
}
#: The baselines that see images, and their ``PolicyConfig.observation``.
IMAGE_METHODS = {"RGB": "rgb", "S2": "s2"}
SETTINGS = TABLE_SETTINGS


@dataclass
class TrainingSize:
    """How big and how long a policy is trained (``kil_policy.train`` overrides)."""

    steps: int = 3000
    batch_size: int = 64
    lr: float = 3e-4
    warmup_steps: int = 200
    down_dims: tuple[int, ...] = (64, 128, 256)
    d_model: int = 128
    num_layers: int = 4
    image_size: tuple[int, int] = (72, 96)
    image_backbone: str = "resnet18"
    image_crop: float = 0.9
    image_pool: str = "gap"
    proprio_rotation: str = "euler"

    def overrides(self, observation: str = "keypoints", mask_categories: tuple[str, ...] = ()) -> list[str]:
        """``kil_policy.train`` overrides for a policy observing ``observation`` (keypoints, rgb or
        s2, whose mask shows ``mask_categories``)."""
        dims = ",".join(str(d) for d in self.down_dims)
        out = [
            f"steps={self.steps}",
            f"batch_size={self.batch_size}",
            f"lr={self.lr}",
            f"warmup_steps={self.warmup_steps}",
            f"policy.head.down_dims=[{dims}]",
            f"checkpoint_every={max(1, self.steps)}",
            f"log_every={max(1, min(50, self.steps // 20))}",
            f"policy.proprio_rotation={self.proprio_rotation}",
        ]
        if observation != "keypoints":
            out += [
                f"policy.observation={observation}",
                f"policy.image_size=[{self.image_size[0]},{self.image_size[1]}]",
                f"policy.image_backbone={self.image_backbone}",
                f"policy.image_crop={self.image_crop}",
                f"policy.image_pool={self.image_pool}",
            ]
            if mask_categories:
                out.append(f"policy.mask_categories=[{','.join(mask_categories)}]")
        else:
            out += [f"policy.encoder.d_model={self.d_model}", f"policy.encoder.num_layers={self.num_layers}",
                    f"policy.encoder.mlp_dim={4 * self.d_model}"]  # fmt: skip
        return out


@dataclass
class PipelineConfig:
    """One task's pipeline.

    Attributes:
        task: the simulated task. out: working directory (stages write below it).
        demos: demonstrations recorded by the scripted expert. camera_hz, width, height: the
            camera of the recordings and of the evaluation (the spec is annotated at this size).
        methods: names from ``METHODS``. backend / model: perception's feature backend;
            min_score: weaker matches are invalid (``ExtractorConfig.min_score``; 0 = off);
            feature_scale: frames resized by this before the backend (``ExtractorConfig``);
            mask_guard: tracks started by instance matching (KIL-T) are kept on their objects'
            instance masks (``ExtractorConfig.mask_guard``; other methods are unaffected).
            layout_check: image matching (KIL-IM) matches each object's keypoints together,
            keeping their reference layout, with this weight (``ExtractorConfig.layout_check``;
            0 = the paper's per-keypoint argmax; methods without image matching are unaffected).
        settings, episodes: the evaluation grid (configurations per setting).
        max_duration_s: episode time limit in evaluation (s).
        kil, rgb: training sizes (rgb: of both image baselines, RGB and S2, as in the paper).
            device: torch device. gif: film one episode per setting.
        notes: extra lines for the report (what was scaled down, and why).
        jobs: methods run at once after recording (processes; the CPU's threads divided among
            them); 1 = one after the other in this process. The demonstrations are recorded in
            as many processes, at most one per CPU thread (``record_demos.record``'s ``jobs``).
    """

    task: str = "place_mug"
    out: Path = Path("outputs/pipeline")
    demos: int = 50
    camera_hz: float = 10.0
    width: int = 320
    height: int = 240
    methods: tuple[str, ...] = ("KIL-IM", "RGB")
    backend: str = "effnet_lite0"
    model: str = ""
    min_score: float = 0.0
    feature_scale: float = 1.0
    mask_guard: bool = False
    layout_check: float = 0.0
    settings: tuple[str, ...] = SETTINGS
    episodes: int = 10
    max_duration_s: float = 25.0
    kil: TrainingSize = field(default_factory=TrainingSize)
    rgb: TrainingSize = field(default_factory=lambda: TrainingSize(steps=1500, batch_size=32, down_dims=(64, 128, 256)))
    device: str = "cpu"
    gif: bool = True
    notes: str = ""
    jobs: int = 1

    def __post_init__(self) -> None:
        # Absolute, so that a finished stage is found again whether the run was started with a
        # relative or an absolute --out (the paths are part of the stored training config).
        self.out = Path(self.out).resolve()
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
        if self.demos < 1 or self.episodes < 1:
            raise ValueError(f"demos and episodes must be >= 1, got {self.demos}, {self.episodes}")
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")

    @property
    def camera(self) -> CameraConfig:
        return CameraConfig(width=self.width, height=self.height)

    @property
    def demos_dir(self) -> Path:
        return self.out / "demos"

    @property
    def spec_path(self) -> Path:
        return self.out / "spec" / "spec.yaml"

    def run_dir(self, method: str) -> Path:
        return self.out / "runs" / method

    def results_dir(self, method: str) -> Path:
        return self.out / "results" / method


def uses_image_matching(method: str) -> bool:
    """A KIL method whose keypoints come from image matching (alone, or starting its tracks)."""
    settings = ExtractorConfig(**METHODS[method]) if method not in IMAGE_METHODS else None
    return settings is not None and not settings.uses_instances


def task_categories(task: str) -> tuple[str, ...]:
    """The categories of a task's objects: the manipulated one and the fixture (S2's prompts)."""
    spec = TASKS[task]
    return (spec.category, spec.fixture_category)


def stage(name: str, text: str, started: float) -> None:
    """The one summary line of a finished stage."""
    print(f"[{name}] {text} ({time.perf_counter() - started:.0f} s)", flush=True)


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


class Pipeline:
    """Runs :class:`PipelineConfig`'s stages; each method returns what it produced."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        #: Seconds from the start of the methods' stages until each method's evaluation ended.
        self.method_seconds: dict[str, float] = {}
        self._methods_started = time.perf_counter()

    def record(self) -> list[Path]:
        c, started = self.config, time.perf_counter()
        masks = any(METHODS[m].get("instance_source") == "masks" or m == "S2" for m in c.methods)
        jobs = max(1, min(c.jobs, len(os.sched_getaffinity(0))))  # an episode records on one core
        bags = record(c.task, c.demos, c.demos_dir, c.camera_hz, c.width, c.height, masks=masks, jobs=jobs)
        stage(
            "record", f"{len(bags)} {c.task} demonstrations in {c.demos_dir} ({_size_mb(c.demos_dir):.0f} MB)", started
        )
        return bags

    def spec(self) -> Path:
        c, started = self.config, time.perf_counter()
        from kil_perception.spec import load_spec

        if c.spec_path.is_file():
            spec = load_spec(c.spec_path)
            height, width = spec.categories[0].references[0].image().shape[:2]
            if (width, height) == (c.width, c.height):
                stage("spec", f"{c.spec_path} kept ({spec.num_keypoints} keypoints)", started)
                return c.spec_path
        path = make_spec(c.task, c.spec_path.parent, c.camera)
        spec = load_spec(path)
        layout = ", ".join(f"{x.name} x{x.instances}: {'/'.join(x.keypoint_names)}" for x in spec.categories)
        stage("spec", f"{path} annotated with python -m kil_perception.annotate ({layout})", started)
        return path

    def extraction(self, method: str) -> dict:
        """``keypoint_extraction`` settings of a KIL method."""
        c = self.config
        common = {"spec": str(c.spec_path), "backend": c.backend, "model": c.model, "device": c.device}
        guard = (
            {"mask_guard": True} if c.mask_guard and ExtractorConfig(**METHODS[method]).tracks_from_instances else {}
        )
        layout = {"layout_check": c.layout_check} if c.layout_check > 0 and uses_image_matching(method) else {}
        return common | {"min_score": c.min_score, "feature_scale": c.feature_scale} | METHODS[method] | guard | layout

    def extract(self, method: str, bags: list[Path]) -> int:
        """Keypoints of every bag for a KIL method (cached beside the bags); returns the frame count."""
        from kil_policy.keypoint_cache import ExtractionConfig, extract_bag_keypoints

        started = time.perf_counter()
        settings = ExtractionConfig(**self.extraction(method))
        frames = 0
        for bag in tqdm(bags, desc=f"extract {method}", unit="bag", leave=False):
            frames += len(extract_bag_keypoints(bag, settings))
        stage("extract", f"{method}: keypoints of {frames} frames from {len(bags)} bags ({settings.backend})", started)
        return frames

    def train(self, method: str) -> Path:
        """Train (or keep a finished training of) one method; returns its checkpoint."""
        from kil_policy.train import parse_config, train

        c, started = self.config, time.perf_counter()
        observation = IMAGE_METHODS.get(method, "keypoints")
        size = c.rgb if method in IMAGE_METHODS else c.kil
        run = c.run_dir(method)
        shown = task_categories(c.task) if observation == "s2" else ()
        overrides = [f"data=[{c.demos_dir}]", f"task={c.task}", f"out={run}", f"device={c.device}"]
        overrides += size.overrides(observation, shown)
        if method not in IMAGE_METHODS:
            overrides += [f"keypoint_extraction.{k}={v}" for k, v in self.extraction(method).items()]
        config = parse_config(None, overrides)
        last = run / "checkpoint_last"
        if _finished_training(last, config):
            stage("train", f"{method}: {last} kept ({size.steps} steps)", started)
            return last
        result = train(config)
        loss = f"loss {result.rows[0][1]:.3f} -> {result.rows[-1][1]:.3f}" if result.rows else ""
        stage("train", f"{method}: {size.steps} steps, {loss}; checkpoint {result.checkpoint}", started)
        return result.checkpoint

    def evaluate(self, method: str, checkpoint: Path) -> Path:
        """Evaluate one method with its inputs in the loop; returns its results directory."""
        c, started = self.config, time.perf_counter()
        out = c.results_dir(method)
        extraction = self.extraction(method) if method not in IMAGE_METHODS else {}
        config = EvaluationConfig(
            name=method,
            checkpoint=str(checkpoint),
            keypoints="perception" if method not in IMAGE_METHODS else "oracle",
            spec=extraction.pop("spec", ""),
            perception=ExtractorConfig(**extraction) if extraction else ExtractorConfig(instance_source="masks"),
            tasks=(c.task,),
            settings=c.settings,
            episodes=c.episodes,
            width=c.width,
            height=c.height,
            max_duration_s=c.max_duration_s,
            device=c.device,
            gif=c.gif,
            extra={"training": asdict(c.rgb if method in IMAGE_METHODS else c.kil)},
        )
        summary = out / SUMMARY
        if summary.is_file() and _same_evaluation(summary, config, checkpoint):
            stage("evaluate", f"{method}: {summary} kept", started)
            return out
        rows = Evaluation(config).run(out)
        text = ", ".join(f"{r.setting} {r.successes}/{r.episodes}" for r in rows)
        stage("evaluate", f"{method}: {text}; {out}", started)
        return out

    def report(self, results: list[Path], title: str) -> Path:
        started = time.perf_counter()
        path = write_report(results, self.config.out / "report", self.config.notes, title)
        stage("report", f"{path}", started)
        return path

    def method(self, method: str, bags: list[Path], evaluation_niceness: int = 0) -> tuple[Path, Path]:
        """One method's stages after recording: extract (KIL), train, evaluate; returns its
        results directory and checkpoint. ``evaluation_niceness`` > 0 lowers this process's CPU
        priority by that much before the evaluation (``os.nice``; see :data:`EVALUATION_NICENESS`)."""
        if method not in IMAGE_METHODS:
            self.extract(method, bags)
        checkpoint = self.train(method)
        if evaluation_niceness > 0:
            print(f"[methods] {method}: evaluating at niceness {os.nice(evaluation_niceness)}", flush=True)
        return self.evaluate(method, checkpoint), checkpoint

    def methods(self) -> tuple[list[Path], dict[str, Path]]:
        """Every stage up to the evaluations; returns the results directories and each method's
        checkpoint (both in the order of ``config.methods``)."""
        bags = self.record()
        self.spec()
        methods = self.config.methods
        jobs = min(self.config.jobs, len(methods))
        self._methods_started = time.perf_counter()
        if jobs == 1:
            done = {}
            for method in methods:
                done[method] = self.method(method, bags)
                self.method_seconds[method] = time.perf_counter() - self._methods_started
        else:
            done = self._in_processes(bags, jobs)
        return [done[m][0] for m in methods], {m: done[m][1] for m in methods}

    def _in_processes(self, bags: list[Path], jobs: int) -> dict[str, tuple[Path, Path]]:
        """Each method in its own process, ``jobs`` at a time, the CPU's threads divided among them."""
        c = self.config
        threads = max(1, len(os.sched_getaffinity(0)) // jobs)
        logs = c.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        print(
            f"[methods] {', '.join(c.methods)}: {jobs} at a time, {threads} torch thread(s) each; "
            f"progress in {logs}/<method>.log",
            flush=True,
        )
        done: dict[str, tuple[Path, Path]] = {}
        failed: dict[str, str] = {}
        context = multiprocessing.get_context("spawn")  # no forked torch/MuJoCo/EGL state in the workers
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {
                pool.submit(_method_in_process, c, method, bags, threads, logs / f"{method}.log", os.getpid()): method
                for method in c.methods
            }
            pending = set(futures)
            bar = tqdm(total=len(futures), desc="methods", unit="method", leave=False, dynamic_ncols=True)
            while pending:
                finished, pending = wait(
                    pending, timeout=2.0 if sys.stderr.isatty() else 30.0, return_when=FIRST_COMPLETED
                )
                bar.set_postfix_str(
                    " | ".join(f"{futures[f]}: {_progress(logs / f'{futures[f]}.log')}" for f in pending)
                )
                for future in finished:
                    method = futures[future]
                    log_file = logs / f"{method}.log"
                    summaries = _stage_lines(log_file)
                    if summaries:
                        bar.write("\n".join(summaries))
                    self.method_seconds[method] = time.perf_counter() - self._methods_started
                    try:
                        done[method] = future.result()
                    except Exception as error:  # the others go on: their finished stages are kept
                        text = log_file.read_text(errors="replace") if log_file.is_file() else ""
                        tail = "\n".join(text.replace("\r", "\n").splitlines()[-15:])
                        failed[method] = (
                            f"method {method} failed ({type(error).__name__}: {error}); {log_file} ends:\n{tail}"
                        )
                        bar.write(f"[methods] {method} failed: {error} (log {log_file})")
                    bar.update(1)
            bar.close()
        if failed:
            raise RuntimeError("\n".join(failed.values()))
        return done

    def run(self, title: str) -> tuple[Path, dict[str, Path]]:
        """Every stage; returns the report and each method's checkpoint."""
        results, checkpoints = self.methods()
        return self.report(results, title), checkpoints


#: How much a worker lowers its CPU priority once its training is done. An offline evaluation steps
#: its own simulator, so its results do not depend on how fast it runs; it yields the CPU to the
#: other methods' trainings still running beside it, which the demo's end waits for.
EVALUATION_NICENESS = 10


def _method_in_process(
    config: PipelineConfig, method: str, bags: list[Path], threads: int, log_file: Path, parent: int
) -> tuple[Path, Path]:
    """A worker process: one method's stages with ``threads`` torch threads, its output (Python's
    and the libraries') to ``log_file``; it stops when the process ``parent`` that started it is
    gone (:func:`exit_when_orphaned`)."""
    exit_when_orphaned(parent)
    import torch

    torch.set_num_threads(threads)
    handle = open(log_file, "w", buffering=1)
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    sys.stdout = sys.stderr = handle
    return Pipeline(config).method(method, bags, evaluation_niceness=EVALUATION_NICENESS)


#: A stage's summary line (:func:`stage`).
_STAGE_LINE = re.compile(r"^\[(extract|train|evaluate)\] ")


#: A progress bar's description and percentage, as tqdm writes them.
_BAR = re.compile(r"([^\r\n|]*?):\s+(\d+)%\|")


def _progress(log_file: Path) -> str:
    """The last progress bar a worker wrote ("train 45%"), or "starting"."""
    try:
        with open(log_file, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return "starting"
    found = _BAR.findall(tail)
    return f"{found[-1][0].strip()} {found[-1][1]}%" if found else "starting"


def _stage_lines(log_file: Path) -> list[str]:
    """The summary lines a worker wrote to its log."""
    if not log_file.is_file():
        return []
    lines = log_file.read_text(errors="replace").replace("\r", "\n").splitlines()
    return [line for line in lines if _STAGE_LINE.match(line)]


def _finished_training(last: Path, config) -> bool:
    """A checkpoint of this very configuration that reached its last step."""
    from kil_policy.config import to_dict

    path = last / "config.yaml"
    if not path.is_file():
        return False
    stored = yaml.safe_load(path.read_text())
    wanted = {k: v for k, v in to_dict(config).items() if k != "policy"}
    policy = to_dict(config.policy)
    policy["encoder"]["num_keypoints"] = stored.get("policy", {}).get("encoder", {}).get("num_keypoints")
    return stored.get("step") == config.steps and stored.get("train") == wanted and stored.get("policy") == policy


def _same_evaluation(summary: Path, config: EvaluationConfig, checkpoint: Path) -> bool:
    """The summary is of this configuration and newer than the checkpoint's weights."""
    stored = json.loads(summary.read_text())
    wanted = {k: v for k, v in asdict(config).items() if k != "extra"} | {"tasks": list(config.tasks)}
    wanted = json.loads(json.dumps(wanted))  # tuples -> lists, as stored
    weights = Path(checkpoint) / "model.safetensors"
    newer = weights.is_file() and summary.stat().st_mtime > weights.stat().st_mtime
    return newer and stored.get("config") == wanted
