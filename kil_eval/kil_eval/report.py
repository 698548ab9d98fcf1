"""A report of evaluation results in the layout of the paper's Table I.

    python -m kil_eval.report results/kil_im results/rgb --out report/

Each RESULTS argument is a directory written by ``python -m kil_eval.evaluate --out`` (its
``summary.json`` and ``episodes.jsonl``). Writes into ``--out``:

- ``report.md``: per task a table of methods x settings (successes/episodes, rate, 95 %
  interval), each failure class's episode count, the keypoint pixel error per object against the
  simulator's ground truth during the rollouts (median, PCK@10px), timings, links to the
  figures, and the notes given with ``--notes``;
- ``success.png``: success rate per method and setting with the interval as whiskers;
- ``loss.png``: each policy's training loss curve (from the ``loss.csv`` beside its checkpoint);
- ``gifs/``: the rollout animations, one per method, task and setting.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from kil_eval.evaluate import EPISODES, SUMMARY
from kil_eval.failures import FAILURE_CLASSES, SUCCESS
from kil_eval.paper_results import paper_successes

SETTING_TITLES = {
    "in_distribution": "In-distribution",
    "unseen_object": "Unseen object",
    "scene_variation": "Scene variation",
    "generated_object": "Generated object (not in the paper)",
}


@dataclass
class MethodResults:
    """One evaluated method: its summary and episodes, and the directory they came from."""

    directory: Path
    summary: dict
    episodes: list[dict]

    @property
    def name(self) -> str:
        return self.summary["name"]

    def row(self, task: str, setting: str) -> dict | None:
        return next((r for r in self.summary["results"] if r["task"] == task and r["setting"] == setting), None)


def load_results(directory: Path) -> MethodResults:
    """Read an evaluation output directory.

    Raises:
        FileNotFoundError / ValueError: naming the directory and the file.
    """
    summary_path = directory / SUMMARY
    if not summary_path.is_file():
        raise FileNotFoundError(f"{directory}: no {SUMMARY} (write one with python -m kil_eval.evaluate --out DIR)")
    try:
        summary = json.loads(summary_path.read_text())
        episodes_path = directory / EPISODES
        episodes = (
            [json.loads(line) for line in episodes_path.read_text().splitlines()] if episodes_path.is_file() else []
        )
    except json.JSONDecodeError as error:
        raise ValueError(f"{directory}: unreadable results ({error})") from None
    if "results" not in summary or "name" not in summary:
        raise ValueError(f"{summary_path}: not an evaluation summary (no 'name'/'results')")
    return MethodResults(directory, summary, episodes)


def cell(row: dict | None) -> str:
    """'7/10 (70 %, CI 35-93 %)' for a success rate; completion for two-object tasks."""
    if row is None:
        return "–"
    interval = f"{100 * row['ci_low']:.0f}–{100 * row['ci_high']:.0f} %"
    if row["interval"] == "wald":
        return f"{100 * row['rate']:.0f} % completion (CI {interval}, n={row['episodes']})"
    return f"{row['successes']}/{row['episodes']} ({100 * row['rate']:.0f} %, CI {interval})"


def _tasks_and_settings(methods: list[MethodResults]) -> tuple[list[str], list[str]]:
    tasks, settings = [], []
    for method in methods:
        for row in method.summary["results"]:
            if row["task"] not in tasks:
                tasks.append(row["task"])
            if row["setting"] not in settings:
                settings.append(row["setting"])
    order = list(SETTING_TITLES)
    return tasks, sorted(settings, key=lambda s: order.index(s) if s in order else len(order))


def success_table(methods: list[MethodResults], task: str, settings: list[str]) -> list[str]:
    """Methods x settings; each cell ours, then the paper's Table I cell (real robot) where it
    has one."""
    head = "| method | " + " | ".join(SETTING_TITLES.get(s, s) for s in settings) + " |"
    lines = [head, "|---" * (len(settings) + 1) + "|"]
    for method in methods:
        cells = []
        for setting in settings:
            paper = paper_successes(method.name, task, setting)
            cells.append(cell(method.row(task, setting)) + (f" · paper {paper}/10" if paper is not None else ""))
        lines.append(f"| {method.name} | " + " | ".join(cells) + " |")
    return lines


def pattern_lines(methods: list[MethodResults], task: str, settings: list[str]) -> list[str]:
    """Per setting, whether our methods rank as the paper's Table I cells do for this task, and
    which pairs do not: reversed, tied here where the paper's cells differ by 2 or more, or 30
    points or more apart here where the paper ties them."""
    lines = []
    for setting in settings:
        ours = {m.name: m.row(task, setting) for m in methods}
        pairs = []
        names = [n for n, row in ours.items() if row is not None and paper_successes(n, task, setting) is not None]
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                paper = paper_successes(a, task, setting) - paper_successes(b, task, setting)
                here = ours[a]["rate"] - ours[b]["rate"]
                if here == 0 and abs(paper) >= 2:
                    pairs.append(
                        f"{a} and {b} tie here ({100 * here + 100 * ours[b]['rate']:.0f} %), the paper has "
                        f"{paper_successes(a, task, setting)} vs {paper_successes(b, task, setting)}/10"
                    )
                elif paper == 0 and abs(here) >= 0.3:
                    higher, lower = (a, b) if here > 0 else (b, a)
                    pairs.append(
                        f"{a} and {b} tie in the paper ({paper_successes(a, task, setting)}/10 each), {higher} above "
                        f"{lower} here ({100 * ours[higher]['rate']:.0f} vs {100 * ours[lower]['rate']:.0f} %)"
                    )
                elif paper * here < 0:
                    pairs.append(
                        f"{a} {'above' if paper > 0 else 'below'} {b} in the paper "
                        f"({paper_successes(a, task, setting)} vs {paper_successes(b, task, setting)}/10), "
                        f"{'below' if paper > 0 else 'above'} it here "
                        f"({100 * ours[a]['rate']:.0f} vs {100 * ours[b]['rate']:.0f} %)"
                    )
        if len(names) < 2:
            continue
        title = SETTING_TITLES.get(setting, setting)
        lines.append(
            f"- {title}: " + ("the paper's order holds." if not pairs else "differs: " + "; ".join(pairs) + ".")
        )
    return lines


def _error_cell(stats: dict | None) -> str:
    if not stats or stats.get("median_px") is None:
        return "–"
    return f"{stats['median_px']:.1f} px / {100 * stats['pck10']:.0f} %"


def keypoint_table(methods: list[MethodResults], task: str, settings: list[str]) -> list[str]:
    """Per method and object (the manipulated one first, then the fixture): median pixel error /
    PCK@10px per setting. A fixture's keypoints sit at the same pixels in every episode, so one
    median over all keypoints would hide the moving object's error."""
    rows = []
    order = {"manipulated": 0, "fixture": 1}
    for method in methods:
        objects: dict[str, str] = {}
        for setting in settings:
            row = method.row(task, setting) or {}
            for category, stats in (row.get("keypoint_objects") or {}).items():
                objects.setdefault(category, stats.get("role", "other"))
        for category in sorted(objects, key=lambda c: (order.get(objects[c], 2), c)):
            cells = [
                _error_cell(((method.row(task, s) or {}).get("keypoint_objects") or {}).get(category)) for s in settings
            ]
            if any(c != "–" for c in cells):
                rows.append(f"| {method.name} | {category} ({objects[category]}) | " + " | ".join(cells) + " |")
    if not rows:
        return []
    head = "| method | object | " + " | ".join(SETTING_TITLES.get(s, s) for s in settings) + " |"
    return [head, "|---" * (len(settings) + 2) + "|", *rows]


def failure_table(methods: list[MethodResults], task: str, settings: list[str]) -> list[str]:
    """Episodes per failure class (``kil_eval.failures``), per method and setting."""
    kinds = [k for k in FAILURE_CLASSES if k != SUCCESS]
    seen = [
        k
        for k in kinds
        if any(((m.row(task, s) or {}).get("failures") or {}).get(k) for m in methods for s in settings)
    ]
    if not seen:
        return []
    head = "| method | setting | " + " | ".join(seen) + " |"
    lines = [head, "|---" * (len(seen) + 2) + "|"]
    for method in methods:
        for setting in settings:
            row = method.row(task, setting)
            if row is None or "failures" not in row:
                continue
            counts = row["failures"]
            lines.append(
                f"| {method.name} | {SETTING_TITLES.get(setting, setting)} | "
                + " | ".join(str(counts.get(k, 0)) for k in seen)
                + " |"
            )
    return lines


def contact_table(methods: list[MethodResults], task: str, settings: list[str]) -> list[str]:
    """Per method and setting, the episodes and successes whose contact on the gripper went over
    an arm's collision limit (``SettingResult.forceful_*``); none when no episode did (or the
    results predate the count)."""
    rows = [
        (method.name, setting, row)
        for method in methods
        for setting in settings
        if (row := method.row(task, setting)) is not None and "forceful_episodes" in row
    ]
    if not any(row["forceful_episodes"] for _, _, row in rows):
        return []
    limit = f"{rows[0][2].get('contact_limit_n', 0):g} N"
    lines = [f"| method | setting | episodes over {limit} | first over it while | successes over {limit} | "
             "successes within it |", "|---" * 6 + "|"]  # fmt: skip
    for name, setting, row in rows:
        within = row["successes"] - row["forceful_successes"]
        phases = ", ".join(f"{phase} {n}" for phase, n in sorted((row.get("forceful_phases") or {}).items())) or "–"
        lines.append(
            f"| {name} | {SETTING_TITLES.get(setting, setting)} | {row['forceful_episodes']}/{row['episodes']} | "
            f"{phases} | {row['forceful_successes']}/{row['successes']} | {within}/{row['episodes']} |"
        )
    return lines


def _median(values: list[float | None]) -> float | None:
    """The median of the values given (None: not measured), or None when there are none."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def timing_lines(methods: list[MethodResults]) -> list[str]:
    lines = [
        "| method | observation | perception per frame | policy per chunk | episodes | wall time |",
        "|---" * 6 + "|",
    ]
    for method in methods:
        perceive = _median([e.get("perceive_ms") for e in method.episodes])
        predict = _median([e.get("predict_ms") for e in method.episodes])
        perceive_text = "–" if perceive is None else f"{perceive:.0f} ms"
        predict_text = "–" if predict is None else f"{predict:.0f} ms"
        lines.append(
            f"| {method.name} | {method.summary.get('observation', '')} | {perceive_text} | {predict_text} | "
            f"{len(method.episodes)} | {method.summary.get('wall_s', 0):.0f} s |"
        )
    return lines


def plot_success(methods: list[MethodResults], tasks: list[str], settings: list[str], path: Path) -> Path:
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(5.0, 1.6 * len(settings) * len(methods)) * len(tasks), 3.8))
    axes = [axes] if len(tasks) == 1 else list(axes)
    width = 0.8 / max(1, len(methods))
    for ax, task in zip(axes, tasks, strict=True):
        for m, method in enumerate(methods):
            xs, rates, low, high = [], [], [], []
            for s, setting in enumerate(settings):
                row = method.row(task, setting)
                if row is None:
                    continue
                xs.append(s - 0.4 + width * (m + 0.5))
                rates.append(100 * row["rate"])
                low.append(100 * (row["rate"] - row["ci_low"]))
                high.append(100 * (row["ci_high"] - row["rate"]))
            ax.bar(xs, rates, width, yerr=[low, high], capsize=3, label=method.name)
        ax.set_xticks(range(len(settings)), [SETTING_TITLES.get(s, s) for s in settings])
        ax.set_ylim(0, 105)
        ax.set_ylabel("success rate (%)")
        ax.set_title(f"{task} (95 % CI)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_losses(methods: list[MethodResults], path: Path) -> Path | None:
    curves = []
    for method in methods:
        loss_csv = method.summary.get("loss_csv")
        if loss_csv and Path(loss_csv).is_file():
            with open(loss_csv) as handle:
                rows = list(csv.DictReader(handle))
            curves.append((method.name, [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows]))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, steps, losses in curves:
        ax.plot(steps, losses, lw=1, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("diffusion loss (MSE)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(result_dirs: list[Path], out: Path, notes: str = "", title: str = "KIL evaluation") -> Path:
    """Write the report into ``out``; returns the path of ``report.md``."""
    methods = [load_results(Path(d)) for d in result_dirs]
    if not methods:
        raise ValueError("no results given")
    out.mkdir(parents=True, exist_ok=True)
    tasks, settings = _tasks_and_settings(methods)
    lines = [f"# {title}", ""]
    if notes:
        lines += [notes.strip(), ""]
    for task in tasks:
        lines += [
            f"## {task}: success (Table I layout)",
            "",
            "Each cell: ours (simulation), then the paper's Table I cell for the same method, task and setting "
            "(real robot, 10 rollouts).",
            "",
            *success_table(methods, task, settings),
            "",
        ]
        pattern = pattern_lines(methods, task, settings)
        if pattern:
            lines += [f"How the methods rank against the paper's on {task}:", "", *pattern, ""]
        failures = failure_table(methods, task, settings)
        if failures:
            lines += [
                f"### {task}: why episodes failed",
                "",
                "Each failed episode's class, read from the simulator's state (`kil_eval.failures`): the first that "
                "applies of left the scene, keypoints lost or jumped (perceived keypoints of the manipulated object "
                "off or missing on over a quarter of the frames), dropped, knocked over, imprecise placement, held "
                "at the time limit, imprecise grasp (closed near the object, never lifted it), time-out without a "
                "grasp.",
                "",
                *failures,
                "",
            ]
        contact = contact_table(methods, task, settings)
        if contact:
            lines += [
                f"### {task}: contact an arm's controller would have stopped",
                "",
                "The simulated gripper floats (a mocap body) and pushes through what would stop an arm: episodes "
                "whose net contact force on the gripper stayed over the limit for 20 ms (watched after every "
                "physics step), the collision rule of the simulated Lite6 and UR5e controllers "
                "(`kil_sim.arm_collision`; C31 on a Lite6, a protective stop on a UR5e), and the successes left "
                "within it: how often the policy presses that hard, not which episodes an arm would complete "
                "(`python -m kil_bringup.rehearse` measures that).",
                "",
                *contact,
                "",
            ]
        keypoints = keypoint_table(methods, task, settings)
        if keypoints:
            lines += [
                f"### {task}: keypoint pixel error during the rollouts, per object (median / PCK@10px)",
                "",
                "Every perceived frame against the simulator's ground truth, keypoints visible in that frame only; "
                "the fixture stays where it is, so its error is reported apart from the manipulated object's.",
                "",
                *keypoints,
                "",
            ]
    plot_success(methods, tasks, settings, out / "success.png")
    lines += ["![success rates with 95 % intervals](success.png)", ""]
    if plot_losses(methods, out / "loss.png"):
        lines += ["## Training", "", "![training loss](loss.png)", ""]
    lines += ["## Timing", "", *timing_lines(methods), ""]
    gifs = []
    for method in methods:
        for gif in method.summary.get("gifs", []):
            source = method.directory / gif
            if source.is_file():
                target = out / "gifs" / f"{method.name}_{gif}".replace(" ", "_")
                target.parent.mkdir(exist_ok=True)
                shutil.copyfile(source, target)
                gifs.append((method.name, gif, target.relative_to(out)))
    if gifs:
        lines += ["## Rollouts (first configuration of each setting)", ""]
        lines += [
            f"- {name}, {gif.removeprefix('rollout_').removesuffix('.gif')}: ![{name}]({path})"
            for name, gif, path in gifs
        ]
        lines.append("")
    lines += ["## Sources", ""]
    lines += [f"- {m.name}: `{m.directory}` (checkpoint `{m.summary.get('checkpoint')}`)" for m in methods]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_eval.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="evaluation output directories")
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    parser.add_argument("--notes", type=Path, help="markdown file inserted under the title (set-up, what was scaled)")
    parser.add_argument("--title", default="KIL evaluation")
    args = parser.parse_args(argv)
    try:
        report = write_report(args.results, args.out, args.notes.read_text() if args.notes else "", args.title)
    except (OSError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
