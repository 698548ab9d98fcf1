"""The paper's comparison over a grid (Table I protocol), for a GPU machine: tasks x methods x
settings, one report.

    python -m kil_eval.study --tasks place_mug pour_bottle place_shoe --methods KIL-IM KIL-IN KIL-T RGB \\
        --device cuda --out outputs/study
    python -m kil_eval.study --paper --device cuda --out outputs/table1      # the paper's sizes
    python -m kil_eval.study --demo-size --tasks place_mug pour_bottle place_shoe --methods KIL-IN RGB S2 \
        --device cpu --out outputs/table1_cpu                                 # make demo's sizes, per task

Per task it runs ``kil_eval.pipeline``'s stages (demonstrations, spec, keypoints per method,
training, evaluation with inputs in the loop), reusing whatever an earlier run finished, and then
writes one ``report/report.md`` over every task and method. ``--paper`` selects the paper's
protocol and sizes (Table VIII: 640x480 camera, 50 demonstrations, 10 configurations per setting,
KIL head [128, 256, 512] for 250k steps at batch 128, RGB and S2 head [256, 512, 1024] on 224x224
frames for 100k steps at batch 64); ``--demo-size`` takes ``make demo``'s CPU sizes (320x240, its
training sizes, its time limit); otherwise the flags set steps, demonstrations and episodes. A task
whose stages finished is reused, so an interrupted study resumes where it stopped. KIL-IN uses the simulator's
instance masks, recorded in the bags, where the paper used SAM3.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from kil_eval.demo import full_config
from kil_eval.pipeline import METHODS, SETTINGS, Pipeline, PipelineConfig, TrainingSize, stage
from kil_eval.report import write_report
from kil_sim.tasks import EVALUATION_SETTINGS, TASKS


def paper_sizes() -> tuple[TrainingSize, TrainingSize]:
    """The paper's training (Table VIII): KIL (250k steps at batch 128), and the RGB and S2 baselines
    (100k steps at batch 64)."""
    kil = TrainingSize(steps=250_000, batch_size=128, lr=1e-4, warmup_steps=500, down_dims=(128, 256, 512))
    rgb = TrainingSize(
        steps=100_000, batch_size=64, lr=1e-4, warmup_steps=500, down_dims=(256, 512, 1024), image_size=(224, 224)
    )
    return kil, rgb


def with_steps(size: TrainingSize, steps: int | None) -> TrainingSize:
    """``size`` trained ``steps`` steps where a flag gave them (its other sizes and learning rate
    kept), else ``size`` as it is."""
    return size if steps is None else replace(size, steps=steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_eval.study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["place_mug"], choices=sorted(TASKS), help="simulated tasks")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), help="compared methods")
    parser.add_argument(
        "--settings", nargs="+", default=list(SETTINGS), choices=list(EVALUATION_SETTINGS),
        help="settings (default: Table I's three; generated_object: objects nobody tuned to)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("outputs/study"), help="working and output directory")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--paper", action="store_true", help="the paper's protocol and sizes (a GPU machine)")
    size.add_argument("--demo-size", action="store_true", help="make demo's CPU sizes for every task")
    parser.add_argument("--demos", type=int, default=50, help="demonstrations per task")
    parser.add_argument("--episodes", type=int, default=10, help="configurations per setting")
    parser.add_argument(
        "--kil-steps", type=int, default=None,
        help="KIL training steps (default 20000; --paper: 250k; --demo-size: each task's, unless given)",
    )  # fmt: skip
    parser.add_argument(
        "--rgb-steps", type=int, default=None,
        help="RGB and S2 training steps (default 20000; --paper: 100k; --demo-size: the demo's, unless given)",
    )  # fmt: skip
    parser.add_argument("--width", type=int, default=640, help="camera width (px)")
    parser.add_argument("--height", type=int, default=480, help="camera height (px)")
    parser.add_argument("--backend", default="effnet_lite0", help="feature backend (radio, dinov3, dift need weights)")
    parser.add_argument("--model", default="", help="the backend's model id or local path")
    parser.add_argument("--min-score", type=float, default=0.0, help="weaker keypoint matches are invalid")
    parser.add_argument(
        "--feature-scale",
        type=float,
        default=None,
        help="frames resized by this before the feature backend (default 1; --demo-size: each task's, unless given)",
    )
    parser.add_argument(
        "--mask-guard",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="KIL-T's tracks kept on their objects' instance masks (default off; --demo-size: each task's)",
    )
    parser.add_argument(
        "--layout-check",
        type=float,
        default=0.0,
        help="KIL-IM: each object's keypoints matched together, keeping their reference layout, with this weight "
        "(0: each keypoint's own argmax, the paper's)",
    )
    parser.add_argument("--max-duration", type=float, default=40.0, help="episode time limit (s)")
    parser.add_argument("--device", default="cuda", help="torch device")
    parser.add_argument(
        "--jobs", type=int, default=1, help="a task's methods run at once, in processes (1: one after the other)"
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    for flag, steps in (("--kil-steps", args.kil_steps), ("--rgb-steps", args.rgb_steps)):
        if steps is not None and steps < 1:
            parser.error(f"{flag} must be >= 1, got {steps}")
    if args.paper:
        kil, rgb = paper_sizes()
    elif args.demo_size:
        demo = full_config(args.out, args.device)
        kil, rgb = demo.kil, demo.rgb
        args.width, args.height = demo.width, demo.height
        args.min_score, args.max_duration = demo.min_score, demo.max_duration_s
    else:
        kil = TrainingSize(
            steps=args.kil_steps or 20_000, batch_size=128, lr=1e-4, warmup_steps=500, down_dims=(128, 256, 512)
        )
        rgb = TrainingSize(
            steps=args.rgb_steps or 20_000,
            batch_size=64,
            lr=1e-4,
            warmup_steps=500,
            down_dims=(256, 512, 1024),
            image_size=(224, 224),
        )
    started = time.perf_counter()
    results, kil_steps, proprio, scales, guarded = [], {}, {}, {}, []
    for task in args.tasks:
        feature_scale = 1.0 if args.feature_scale is None else args.feature_scale
        mask_guard = bool(args.mask_guard)
        if args.demo_size:  # the demo's sizes of this task (KIL's training and perception can differ per task)
            demo_task = full_config(args.out, args.device, task)
            kil, rgb = demo_task.kil, demo_task.rgb
            feature_scale = demo_task.feature_scale if args.feature_scale is None else args.feature_scale
            mask_guard = demo_task.mask_guard if args.mask_guard is None else args.mask_guard
        kil, rgb = with_steps(kil, args.kil_steps), with_steps(rgb, args.rgb_steps)
        config = PipelineConfig(
            task=task,
            out=args.out / task,
            demos=args.demos,
            width=args.width,
            height=args.height,
            methods=tuple(args.methods),
            backend=args.backend,
            model=args.model,
            min_score=args.min_score,
            feature_scale=feature_scale,
            mask_guard=mask_guard,
            layout_check=args.layout_check,
            settings=tuple(args.settings),
            episodes=args.episodes,
            max_duration_s=args.max_duration,
            kil=kil,
            rgb=rgb,
            device=args.device,
            jobs=args.jobs,
        )
        kil_steps[task] = kil.steps
        proprio[task] = kil.proprio_rotation
        if feature_scale != 1.0:
            scales[task] = feature_scale
        if mask_guard and "KIL-T" in args.methods:
            guarded.append(task)
        results += Pipeline(config).methods()[0]
    notes = (
        f"Study: tasks {', '.join(args.tasks)}; {args.demos} demonstrations per task, "
        f"camera {args.width}x{args.height}; "
        f"KIL steps {', '.join(f'{t}: {n}' for t, n in kil_steps.items())} (head {list(kil.down_dims)}, batch "
        f"{kil.batch_size}), RGB and S2 {rgb.steps} steps at {rgb.lr:g} (head "
        f"{list(rgb.down_dims)}, {rgb.image_size[1]}x{rgb.image_size[0]} frames); every method's proprioception "
        f"with {', '.join(f'{t}: {r}' for t, r in proprio.items())} rotations; keypoints by {args.backend}"
        f"{''.join(f' (frames x{s:g} for the features on {t})' for t, s in scales.items())}"
        f"{''.join(f' (KIL-T tracks kept on the instance masks on {t})' for t in guarded)}"
        f"{f' (KIL-IM with the layout check, weight {args.layout_check:g})' if args.layout_check > 0 else ''}; "
        f"{args.episodes} configurations per setting.\n\nReproduce: `python -m kil_eval.study "
        f"{' '.join(argv if argv is not None else sys.argv[1:])}`"
    )
    report_started = time.perf_counter()
    report = write_report(results, args.out / "report", notes, "KIL study")
    stage("report", str(report), report_started)
    print(f"== done in {(time.perf_counter() - started) / 3600:.2f} h")
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
