"""The evaluation protocol (paper §IV-D): fixed configurations per setting, success rates with
95 % confidence intervals.

    python -m kil_eval.evaluate --tasks place_mug pick_pen --settings in_distribution unseen_object --json

Every controller sees the same configurations (10 per setting, fixed by seed). Success rates get
a Clopper-Pearson interval; multi-object tasks report task completion with a Wald interval.
Controllers: the scripted expert, or a trained policy checkpoint (``--controller policy
--checkpoint DIR``) fed the simulator's ground-truth keypoints (``--keypoints oracle``) or
keypoints extracted from the simulated camera by kil_perception (``--keypoints perception
--spec SPEC --method image|instance|track --backend NAME``; instance matching uses the
simulator's masks unless ``--instance-source sam3``).

    python -m kil_eval.evaluate --controller policy --checkpoint runs/mug/checkpoint_last \
        --tasks place_mug --keypoints perception --spec spec.yaml --method track
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

from tqdm import tqdm

from kil_eval.intervals import clopper_pearson, wald
from kil_sim.rollout import RolloutConfig, run_episode
from kil_sim.tasks import SETTINGS, TASKS, evaluation_configurations


@dataclass
class SettingResult:
    task: str
    setting: str
    episodes: int
    successes: int
    rate: float
    ci_low: float
    ci_high: float
    interval: str


def evaluate(
    task: str, setting: str, count: int = 10, progress: bool = False, make_controller=None, max_duration_s: float = 40.0
) -> SettingResult:
    """Run a controller (default: the scripted expert) on a setting's fixed configurations.

    Args:
        make_controller: () -> controller for each episode; None = the task's scripted expert.
    """
    configs = evaluation_configurations(task, setting, count)
    rollout = RolloutConfig(camera_hz=0, max_duration_s=max_duration_s)
    results = [
        run_episode(c, controller=make_controller() if make_controller else None, config=rollout)
        for c in tqdm(configs, desc=f"{task}/{setting}", disable=not progress, leave=False)
    ]
    if TASKS[task].multi_instance:
        completions = [r.completion for r in results]
        low, high = wald(completions)
        rate, interval = sum(completions) / len(completions), "wald"
    else:
        low, high = clopper_pearson(sum(r.success for r in results), len(results))
        rate, interval = sum(r.success for r in results) / len(results), "clopper-pearson"
    successes = int(sum(bool(r.success) for r in results))
    return SettingResult(task, setting, len(results), successes, float(rate), float(low), float(high), interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_eval.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--controller", choices=["expert", "policy"], default="expert")
    parser.add_argument("--checkpoint", help="policy checkpoint directory (--controller policy)")
    parser.add_argument("--device", default="cpu", help="torch device for the policy")
    parser.add_argument("--max-duration", type=float, default=40.0, help="episode time limit (s)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument(
        "--settings", nargs="+", default=["in_distribution"], choices=[s for s in SETTINGS if s != "train"]
    )
    parser.add_argument("--episodes", type=int, default=10, help="configurations per setting (10 in the protocol)")
    parser.add_argument("--keypoints", choices=["oracle", "perception"], default="oracle", help="policy inputs")
    parser.add_argument("--spec", help="keypoint spec YAML (--keypoints perception)")
    parser.add_argument("--method", default="image", help="image, instance or track (--keypoints perception)")
    parser.add_argument("--backend", default="effnet_lite0", help="feature backend (--keypoints perception)")
    parser.add_argument("--model", default="", help="backend model id or local path")
    parser.add_argument("--instance-source", default="masks", help="masks (the simulator's) or sam3")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    make_controller = None
    if args.controller == "policy":
        if not args.checkpoint:
            parser.error("--controller policy needs --checkpoint")
        from kil_eval.controllers import PolicyController
        from kil_policy.checkpoint import load_policy
        from kil_policy.runner import PolicyRunner

        keypoints = None
        if args.keypoints == "perception":
            if not args.spec:
                parser.error("--keypoints perception needs --spec")
            from kil_eval.perceived import PerceivedKeypoints
            from kil_perception.pipeline import ExtractorConfig

            try:
                config = ExtractorConfig(
                    method=args.method,
                    backend=args.backend,
                    model=args.model,
                    device=args.device,
                    instance_source=args.instance_source,
                )
                keypoints = PerceivedKeypoints(args.spec, config)
            except ValueError as error:
                parser.error(str(error))
        policy = load_policy(args.checkpoint, args.device)
        make_controller = lambda: PolicyController(PolicyRunner(policy), keypoints)  # noqa: E731
    rows = [
        evaluate(t, s, args.episodes, not args.json, make_controller, args.max_duration)
        for t in args.tasks
        for s in args.settings
    ]
    if args.json:
        inputs = {"keypoints": args.keypoints}
        if args.keypoints == "perception":
            inputs |= {"method": args.method, "backend": args.backend}
        print(json.dumps({"controller": args.controller, **inputs, "results": [asdict(r) for r in rows]}))
    else:
        print(f"{'task':22s} {'setting':16s} {'rate':>6s}  95% CI")
        for r in rows:
            interval = f"[{100 * r.ci_low:.0f}, {100 * r.ci_high:.0f}] ({r.interval})"
            print(f"{r.task:22s} {r.setting:16s} {100 * r.rate:5.0f}%  {interval}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
