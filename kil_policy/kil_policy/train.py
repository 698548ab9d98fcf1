"""Train a keypoint diffusion policy (or the RGB baseline) from rosbag2 demonstrations.

    python -m kil_policy.train --config configs/place_mug.yaml data=[demos/place_mug] steps=20000
    torchrun --nproc_per_node=4 -m kil_policy.train --config ...        # DistributedDataParallel

A config file (YAML, fields of ``TrainConfig``) plus ``key.sub=value`` overrides (values parsed
as YAML). Writes to ``out``: ``checkpoint_<step>/`` directories with weights, resolved config,
keypoint layout (and the spec, for keypoints extracted by perception) and optimiser state; every
``checkpoint_every`` steps one is kept. ``checkpoint_last`` is a symbolic link switched atomically
to the newest complete one, so a crash while saving never leaves it unloadable. Also
``loss.csv`` and ``loss.png``. ``resume=true`` continues from ``checkpoint_last``. CPU or CUDA
(bf16 autocast).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from kil_interfaces import keypoint_layout
from kil_perception.spec import load_spec
from kil_policy.augmentation import AugmentationConfig
from kil_policy.checkpoint import save_policy
from kil_policy.config import PolicyConfig, describe_fields, from_dict, to_dict
from kil_policy.data import TensorWindows, TopicConfig, load_episodes, recorded_task
from kil_policy.keypoint_cache import ExtractionConfig
from kil_policy.policy import KeypointDiffusionPolicy
from kil_policy.train_step import TrainStep

log = logging.getLogger("kil_policy.train")
TRAIN_STATE = "train_state.pt"
LAST = "checkpoint_last"
KEEP = ".keep"  # marks a checkpoint kept every checkpoint_every steps


@dataclass
class TrainConfig:
    """Attributes:
    data: bag directories (or directories of bags).
    task: skip bags recorded for another task (their ``custom_data.task``); '' = the task the bags
        were recorded for (refused when they name several). Stored with the checkpoint: evaluation
        and ``run_graph`` default to it and refuse another.
    out: output directory.
    policy: model config. augmentation: augmentation config. topics: bag topic names.
    keypoint_extraction: for bags without keypoints: extract them offline with kil_perception.
    steps: optimiser steps (paper: 250k for KIL). batch_size: per process (paper: 128).
    lr: peak learning rate (ours: 1e-4). weight_decay: AdamW decay (ours: 1e-6).
    warmup_steps: linear warm-up before the cosine decay.
    checkpoint_every: steps between kept checkpoints. log_every: steps between loss records.
    device: "auto", "cpu" or "cuda[:i]". seed: RNG seed. resume: continue from checkpoint_last.
    autocast: the forward pass in bf16 autocast: "auto" (on CUDA; on a CPU with native bf16 —
        AMX or AVX512-BF16 — for the image baselines only, whose ResNet convolutions it speeds up
        1.4x on this machine while the keypoint policy's small GEMMs gain nothing), "bf16" or "off".
    cuda_graph: replay each training step as one captured CUDA graph (CUDA, single process;
        ``kil_policy.train_step``).
    """

    data: list[str] = field(default_factory=list)
    task: str = ""
    out: str = "runs/policy"
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    topics: TopicConfig = field(default_factory=TopicConfig)
    keypoint_extraction: ExtractionConfig = field(default_factory=ExtractionConfig)
    steps: int = 250_000
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 1e-6
    warmup_steps: int = 500
    checkpoint_every: int = 10_000
    log_every: int = 50
    device: str = "auto"
    cuda_graph: bool = False
    autocast: str = "auto"
    seed: int = 0
    resume: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.policy, dict):
            self.policy = from_dict(PolicyConfig, self.policy, "policy")
        if isinstance(self.augmentation, dict):
            self.augmentation = from_dict(AugmentationConfig, self.augmentation, "augmentation")
        if isinstance(self.topics, dict):
            self.topics = from_dict(TopicConfig, self.topics, "topics")
        if isinstance(self.keypoint_extraction, dict):
            self.keypoint_extraction = from_dict(ExtractionConfig, self.keypoint_extraction, "keypoint_extraction")
        if isinstance(self.data, str):
            self.data = [self.data]
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.autocast not in ("auto", "bf16", "off"):
            raise ValueError(f"autocast must be auto, bf16 or off, got {self.autocast!r}")


def _parse_value(raw: str):
    """YAML value, with numbers like 1e-4 (a string to YAML 1.1) read as floats, and an empty
    value (``model=``) as the empty string, not YAML's null."""
    if not raw.strip():
        return ""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_config(config_file: Path | None, overrides: list[str]) -> TrainConfig:
    """Config file (YAML) + ``a.b=value`` overrides -> validated TrainConfig."""
    values: dict = {}
    if config_file is not None:
        try:
            values = yaml.safe_load(config_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise SystemExit(f"error: cannot read config {config_file}: {error}") from None
    for item in overrides:
        if "=" not in item:
            raise SystemExit(f"error: override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        target = values
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = _parse_value(raw)
    try:
        return from_dict(TrainConfig, values, str(config_file or "overrides"))
    except (TypeError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_native_bf16() -> bool:
    """The CPU computes bf16 in hardware (AMX-BF16 or AVX512-BF16), read from /proc/cpuinfo."""
    return bool(set(_cpuinfo().split()) & {"amx_bf16", "avx512_bf16"})


def cpu_summary() -> str:
    """The CPU in one phrase, what training speed on it depends on: model, family/model numbers,
    widest vector unit and whether the image baselines train in bf16 there ('unknown CPU' without
    /proc/cpuinfo). E.g. 'AMD EPYC (family 25, model 1), AVX2, fp32 training'."""
    text = _cpuinfo()
    fields = dict(
        (key.strip(), value.strip()) for key, _, value in (line.partition(":") for line in text.splitlines()[:30])
    )
    if not fields.get("model name"):
        return "unknown CPU"
    flags = set(fields.get("flags", "").split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    precision = "bf16 image-baseline training" if cpu_has_native_bf16() else "fp32 training"
    family, model = fields.get("cpu family", "?"), fields.get("model", "?")
    return f"{fields['model name']} (family {family}, model {model}), {vector}, {precision}"


def use_bf16(autocast: str, device: torch.device, images: bool) -> bool:
    """Whether the training forward runs under bf16 autocast (``TrainConfig.autocast``)."""
    if autocast != "auto":
        return autocast == "bf16"
    return device.type == "cuda" or (images and cpu_has_native_bf16())


def adamw_kernel(device: torch.device) -> dict[str, bool]:
    """AdamW's implementation: the fused kernel on CUDA and on the CPU, one tensor at a time
    elsewhere. On the 2-core development machine the CPU kernel updates the demo RGB policy's 7.5 M
    trainable parameters in 3.3 ms against 12.6 ms for the multi-tensor ``foreach`` loop (the
    training step, 110-250 ms, gets 4-8 % faster)."""
    return {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": False}


def _report_extraction(bags: list[str], extraction: ExtractionConfig) -> None:
    """Print the extracted keypoints' quality table, and a warning per suspicious keypoint, before
    any training step (``kil_policy.extraction_quality``)."""
    from kil_policy.extraction_quality import report

    table, suspicious = report(bags, extraction)
    print(
        f"keypoints extracted from {len(bags)} bags ({extraction.method}, {extraction.backend}):\n{table}", flush=True
    )
    for line in suspicious:
        log.warning("spec %s: %s", extraction.spec, line)
    if suspicious:
        log.warning(
            "the keypoints above look wrong; check the spec (its overlay, kil_perception.extract) before training"
        )


def _device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _save_loss_curve(rows: list[tuple[int, float, float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = [r[0] for r in rows], [r[1] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("diffusion loss (MSE)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)


@dataclass
class TrainResult:
    """What training produced: the last checkpoint directory, the trained policy (on this rank)
    and the logged (step, loss, lr) rows."""

    checkpoint: Path
    policy: KeypointDiffusionPolicy
    rows: list[tuple[int, float, float]]


def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """The learning rate rises linearly over ``warmup_steps`` then follows a half cosine to 0 at
    ``total_steps`` (diffusers' ``get_cosine_schedule_with_warmup``, the diffusion policy's
    schedule; written here so that training does not import diffusers)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train(config: TrainConfig) -> TrainResult:
    """Run training (on every rank when started by torchrun)."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(config.device, local_rank)
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    policy_config = config.policy
    images = policy_config.uses_images
    episodes = load_episodes(
        config.data,
        min_length=policy_config.horizon,
        topics=config.topics,
        task=config.task,
        need_keypoints=not images,
        need_images=images,
        image_size=policy_config.image_size if images else None,
        extraction=config.keypoint_extraction,
        s2_categories=policy_config.mask_categories if policy_config.observation == "s2" else (),
        proprio_rotation=policy_config.proprio_rotation,
    )
    recorded = sorted({recorded_task(Path(e.name)) for e in episodes} - {""})
    if not config.task:  # the checkpoint says which task it was trained on, so evaluation can check
        if len(recorded) > 1:
            raise SystemExit(f"error: the bags were recorded for several tasks ({', '.join(recorded)}); set task=")
        config.task = recorded[0] if recorded else ""
    layout = spec = None
    layout_source = ""
    if not images:
        layout = episodes[0].layout
        for episode in episodes[1:]:
            problem = keypoint_layout.mismatch(layout, episode.layout, episodes[0].name, episode.name)
            if problem:
                raise SystemExit(f"error: {problem}")
        policy_config.encoder.num_keypoints = len(layout)
        extraction = config.keypoint_extraction
        if extraction.spec:
            spec = load_spec(extraction.spec)
            layout_source = f"keypoints extracted with {extraction.spec} ({extraction.method}, {extraction.backend})"
            if rank == 0:
                _report_extraction([e.name for e in episodes], extraction)
        else:
            layout_source = f"topic {config.topics.keypoints}"
    dataset = TensorWindows(episodes, policy_config.n_obs_steps, policy_config.horizon, not images, images, device)
    policy = KeypointDiffusionPolicy(policy_config)
    all_actions = torch.from_numpy(np.concatenate([e.actions for e in episodes])).float()
    all_proprio = torch.from_numpy(np.concatenate([e.proprio for e in episodes])).float()
    keypoints = valid = None
    if not images:
        keypoints = torch.from_numpy(np.concatenate([e.keypoints for e in episodes])).float()
        valid = torch.from_numpy(np.concatenate([e.valid for e in episodes]))
    policy.fit_normalizers(all_actions, all_proprio, keypoints, valid)
    policy.to(device)
    if hasattr(policy.encoder, "trunk_features"):  # a frozen image trunk: its features once per frame
        policy.encoder.load_pretrained()
        dataset.cache_image_features(policy.encoder.trunk_features, progress=rank == 0)
    if config.cuda_graph and (device.type != "cuda" or distributed):
        raise SystemExit(f"error: cuda_graph=true needs one CUDA process; this run is on {device}"
                         + (" with torchrun" if distributed else ""))  # fmt: skip
    optimizer = torch.optim.AdamW(
        policy.parameters(),
        lr=torch.tensor(config.lr, device=device) if config.cuda_graph else config.lr,
        weight_decay=config.weight_decay,
        **adamw_kernel(device),
        capturable=config.cuda_graph,
    )
    schedule = cosine_with_warmup(optimizer, config.warmup_steps, config.steps)
    start, rows = 0, []
    last = out / LAST
    if config.resume and (last / TRAIN_STATE).exists():
        from safetensors.torch import load_file

        policy.load_state_dict(load_file(last / "model.safetensors"))
        state = torch.load(last / TRAIN_STATE, map_location=device, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start, rows = state["step"], state["rows"]
        if rank == 0:
            log.info("resuming from %s at step %d", last, start)
    model = (
        DistributedDataParallel(policy, device_ids=[device.index] if device.type == "cuda" else None)
        if distributed
        else policy
    )
    generator = torch.Generator(device=device).manual_seed(config.seed * 1000 + rank + start)
    train_step = TrainStep(
        model,
        optimizer,
        dataset,
        config.batch_size,
        config.augmentation,
        generator,
        graph=config.cuda_graph,
        bf16=use_bf16(config.autocast, device, policy_config.uses_images),
    )
    bar = tqdm(
        total=config.steps,
        initial=start,
        desc="train",
        unit="step",
        disable=rank != 0,
        dynamic_ncols=True,
        mininterval=0.1 if sys.stderr.isatty() else 10.0,
    )
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        log.info(
            "%d episodes, %d windows, %.1f M parameters",
            len(episodes),
            len(dataset),
            sum(p.numel() for p in policy.parameters()) / 1e6,
        )
    t0 = time.perf_counter()
    policy.train()
    for step in range(start, config.steps):
        train_step()  # no host synchronisation: the loss is read every log_every steps
        schedule.step()
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            mean = train_step.take_mean_loss()
            rows.append((step + 1, mean, float(schedule.get_last_lr()[0])))
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{rows[-1][2]:.2e}")
        bar.update(1)
        if rank == 0 and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            saved = _checkpoint(
                out,
                policy,
                config,
                optimizer,
                schedule,
                step + 1,
                rows,
                keep=(step + 1) % config.checkpoint_every == 0,
                keypoints=(layout, layout_source, spec),
            )
            bar.write(f"step {step + 1}: checkpoint {saved} ({out / LAST} -> {saved.name})")
    bar.close()
    if rank == 0:
        log.info("trained %d steps in %.1f s; checkpoint: %s", config.steps - start, time.perf_counter() - t0, last)
    if distributed:
        dist.barrier()
    return TrainResult(last, policy.eval(), rows)


def _checkpoint(
    out: Path, policy, config: TrainConfig, optimizer, schedule, step: int, rows, keep: bool, keypoints
) -> Path:
    """Write ``checkpoint_<step>``, then switch ``checkpoint_last`` to it atomically and remove the
    previous one unless it is kept; returns the new directory."""
    extra = {"train": {k: v for k, v in to_dict(config).items() if k != "policy"}, "step": step}
    layout, layout_source, spec = keypoints
    target = out / f"checkpoint_{step:07d}"
    staging = out / f".{target.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    save_policy(staging, policy, extra, layout, layout_source, spec)
    torch.save(
        {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "step": step, "rows": rows},
        staging / TRAIN_STATE,
    )
    if keep:
        (staging / KEEP).write_text("")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    last = out / LAST
    previous = last.resolve() if last.is_symlink() else None
    if last.exists() and not last.is_symlink():  # a directory from an older version of this script
        shutil.rmtree(last)
    link = out / f".{LAST}.{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(target.name, target_is_directory=True)
    os.replace(link, last)  # atomic: readers see the old or the new checkpoint, never a partial one
    if previous is not None and previous != target.resolve() and not (previous / KEEP).exists():
        shutil.rmtree(previous, ignore_errors=True)
    with open(out / "loss.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "loss", "lr"])
        writer.writerows(rows)
    if rows:
        _save_loss_curve(rows, out)
    return target


def main(argv: list[str] | None = None) -> int:
    keys = "\n".join(
        f"  {key}={yaml.safe_dump(default, default_flow_style=True).strip().removesuffix('...').strip()}"
        + (f"\n      {doc}" if doc else "")
        for key, default, doc in describe_fields(TrainConfig)
    )
    parser = argparse.ArgumentParser(
        prog="python -m kil_policy.train",
        description=__doc__.split("\n\n")[0],
        epilog=f"config keys (key=default), for --config files and key=value overrides:\n{keys}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="YAML file with TrainConfig fields")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = parse_config(args.config, args.overrides)
    if args.print_config:
        if config.keypoint_extraction.spec and config.policy.observation == "keypoints":
            try:  # the values training resolves from the spec
                config.policy.encoder.num_keypoints = load_spec(config.keypoint_extraction.spec).num_keypoints
            except (OSError, ValueError) as error:
                raise SystemExit(f"error: {error}") from None
        print(yaml.safe_dump(to_dict(config), sort_keys=False))
        return 0
    if not config.data:
        raise SystemExit("error: no data given (data=[DIR, ...])")
    try:
        train(config)
    except KeyboardInterrupt:
        print("\ninterrupted; resume with resume=true", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
