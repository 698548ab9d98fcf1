"""Policy speed: action-head inference latency and training throughput, on CPU (and CUDA when
present), each beside a plain eager reference of the same network measured in the same run.

    python -m kil_policy.bench --json

Inference: batch 1, 14 DDIM steps, p50/p95 over repeated chunks, all from the same weights:
"reference" evaluates the UNet module step by step with the FiLM layers inside, as the
straightforward implementation does; "module" is ``predict_action_chunk`` with FiLM parameters of
all steps precomputed once per chunk (the condition is constant over the loop); "packed" adds
the time-major packed UNet (``kil_policy.packed_unet``); "optimised" is that packed step under
``torch.compile`` (CUDA graphs on CUDA), what ``policy_node inference:=compiled`` runs; on CUDA
"graph" is the whole chunk as one captured CUDA graph (``kil_policy.graphed``, ``inference:=graph``)
and "graph_fused_{fp32,tf32,bf16}" the same around the inductor-compiled step in each precision,
"graph_triton_{fp32,tf32}" around the hand-written fused residual-block kernels
(``kil_policy.fused_blocks``), each with its largest difference from float32 (normalised actions;
kept by ``inference:=graph`` only within ``precision_tolerance``).
The compile time is reported separately. Batched: the cost per chunk when B chunks are sampled
together (B = 1, 8, 64: several simulated environments, or an ensemble), with the graph sampler on
CUDA and the packed sampler on the CPU.
Training: samples/s for batch 128 (forward, backward, AdamW step; bf16 autocast on CUDA) and the
time 250k such steps (the paper's schedule) would take; per method: KIL, RGB and S2 with the
paper's ResNet-18 at 224x224, and the demo's RGB (frozen EfficientNet-Lite0 trunk at 160x120, its
features cached per frame as training caches them, down dims 64-128-256; batch 64).
On the CPU, "demo_methods_at_once": the demo's three trainings (KIL, RGB and S2 at the demo's
sizes, batch 64) one after the other with every thread, against all three at once in separate
processes with the threads divided among them (``PipelineConfig.jobs``), as the time each
schedule needs for the same number of steps of each.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import time

import torch

from kil_perception.cpu_threads import threads_under_load
from kil_perception.cuda_graph import capture_cuda_graph
from kil_policy.config import HeadConfig, PolicyConfig
from kil_policy.graphed import DEFAULT_TOLERANCE, GraphedSampler
from kil_policy.image_encoder import make_image_encoder
from kil_policy.packed_unet import Denoiser
from kil_policy.policy import BatchKeys, KeypointDiffusionPolicy
from kil_policy.train import cpu_summary

K = 8


def _batch(config: PolicyConfig, size: int, device: torch.device, with_action: bool) -> dict[str, torch.Tensor]:
    n = config.n_obs_steps
    batch = {BatchKeys.PROPRIO: torch.rand(size, n, 7, device=device)}
    if config.uses_images and config.image_backbone == "effnet_lite0_frozen":
        # What training feeds this backbone: the frozen trunk's features, cached once per frame.
        h, w = config.image_size
        features = torch.rand(size * n, config.image_channels, h, w, device=device)
        with torch.no_grad():
            features = make_image_encoder(config).to(device).trunk_features(features)
        batch[BatchKeys.IMAGE_FEATURES] = features.unflatten(0, (size, n))
    elif config.uses_images:
        h, w = config.image_size
        batch[BatchKeys.IMAGE] = torch.rand(size, n, config.image_channels, h, w, device=device)
    else:
        batch[BatchKeys.KEYPOINTS] = torch.rand(size, n, config.encoder.num_keypoints, 3, device=device)
        batch[BatchKeys.VALID] = torch.ones(size, n, config.encoder.num_keypoints, dtype=torch.bool, device=device)
    if with_action:
        batch[BatchKeys.ACTION] = torch.rand(size, config.horizon, 10, device=device)
    return batch


def diffusers_ddim(policy: KeypointDiffusionPolicy):
    """diffusers' ``DDIMScheduler`` for the policy's noise schedule (the references below loop over it)."""
    from diffusers import DDIMScheduler

    schedule = policy.noise_schedule
    return DDIMScheduler(
        num_train_timesteps=schedule.num_train_timesteps,
        beta_schedule=schedule.beta_schedule,
        clip_sample=schedule.clip_sample,
        prediction_type=schedule.prediction_type,
    )


@torch.no_grad()
def reference_predict(policy: KeypointDiffusionPolicy, batch: dict[str, torch.Tensor], steps: int) -> torch.Tensor:
    """The straightforward sampler: encoder once, then the full UNet (FiLM included) per step."""
    cond = policy.encode(batch)
    scheduler = diffusers_ddim(policy)
    scheduler.set_timesteps(steps)
    sample = torch.randn(cond.shape[0], policy.config.horizon, 10, device=cond.device)
    for t in scheduler.timesteps:
        noise = policy.unet(sample, t.to(cond.device).expand(cond.shape[0]), cond)
        sample = scheduler.step(noise, t, sample).prev_sample
    return policy.action_normalizer.unnormalize(sample)


@torch.no_grad()
def scheduler_predict(
    policy: KeypointDiffusionPolicy,
    batch: dict[str, torch.Tensor],
    steps: int,
    noise: torch.Tensor | None = None,
    denoiser=None,
) -> torch.Tensor:
    """``predict_action_chunk`` with ``diffusers.DDIMScheduler.step`` in the loop instead of the
    precomputed coefficients (``kil_policy.sampler``): the sampler's reference, in tests and here."""
    cond = policy.encode(batch)
    scheduler = diffusers_ddim(policy)
    scheduler.set_timesteps(steps)
    sample = noise if noise is not None else torch.randn(cond.shape[0], policy.config.horizon, 10, device=cond.device)
    timesteps = scheduler.timesteps.to(cond.device)
    cache = policy.unet.precompute(timesteps, cond)
    for i, t in enumerate(timesteps):
        if denoiser is None:
            predicted = policy.unet(sample, cache=cache, step_index=i)
        else:
            predicted = denoiser(sample, [film[i] for film in cache.films])
        sample = scheduler.step(predicted, t, sample).prev_sample
    return policy.action_normalizer.unnormalize(sample)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _latencies(fns: dict, device: torch.device, repeats: int) -> dict[str, dict]:
    """p50/p95 ms of each function, measured round-robin so that a busy machine slows all alike."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(1000 * (time.perf_counter() - start))
    result = {}
    for name, values in times.items():
        values.sort()
        result[name] = {
            "p50_ms": round(statistics.median(values), 2),
            "p95_ms": round(values[int(0.95 * (len(values) - 1))], 2),
        }
    return result


def _inference(config: PolicyConfig, device: torch.device, repeats: int, fused_rows: bool = False) -> dict:
    policy = KeypointDiffusionPolicy(config).to(device).eval()
    batch = _batch(config, 1, device, with_action=False)
    steps = config.head.inference_steps
    packed = Denoiser(policy.unet)
    compiled = Denoiser(policy.unet, compile=True)
    start = time.perf_counter()
    policy.predict_action_chunk(batch, steps=steps, denoiser=compiled)
    compile_s = time.perf_counter() - start
    functions = {
        "optimised": lambda: policy.predict_action_chunk(batch, steps=steps, denoiser=compiled),
        "packed": lambda: policy.predict_action_chunk(batch, steps=steps, denoiser=packed),
        "packed_diffusers_scheduler": lambda: scheduler_predict(policy, batch, steps, denoiser=packed),
        "module": lambda: policy.predict_action_chunk(batch, steps=steps),
        "reference": lambda: reference_predict(policy, batch, steps),
    }
    precision_errors = {}
    if device.type == "cuda":
        graphs = {"graph": GraphedSampler(policy, batch, steps)}
        # Inductor kernels inside the graph (what fuse=True builds; one compiled step shared by the three
        # precisions, so each compiles once), error always reported (tolerance inf).
        fused = Denoiser(policy.unet, compile=True, cuda_graphs=False) if fused_rows else None
        for precision in ("fp32", "tf32", "bf16") if fused_rows else ():
            sampler = GraphedSampler(policy, batch, steps, fused, precision=precision, tolerance=float("inf"))
            graphs[f"graph_fused_{precision}"] = sampler
            precision_errors[f"graph_fused_{precision}"] = round(sampler.precision_error, 5)
        triton = Denoiser(policy.unet, triton=True) if fused_rows else None
        for precision in ("fp32", "tf32") if fused_rows else ():
            sampler = GraphedSampler(policy, batch, steps, triton, precision=precision, tolerance=float("inf"))
            graphs[f"graph_triton_{precision}"] = sampler
            precision_errors[f"graph_triton_{precision}"] = round(sampler.precision_error, 5)
        functions = {name: (lambda g=g: g(batch)) for name, g in graphs.items()} | functions
    results = _latencies(functions, device, repeats)
    if precision_errors:
        results["precision_max_abs_error_normalised"] = precision_errors
        results["precision_tolerance"] = DEFAULT_TOLERANCE
    return {
        "parameters_m": round(sum(p.numel() for p in policy.parameters()) / 1e6, 2),
        "head_parameters_m": round(sum(p.numel() for p in policy.unet.parameters()) / 1e6, 2),
        "ddim_steps": steps,
        **results,
        "compile_s": round(compile_s, 1),
        "speedup_p50": round(results["reference"]["p50_ms"] / results["optimised"]["p50_ms"], 2),
    }


def _batched(config: PolicyConfig, device: torch.device, repeats: int, sizes=(1, 8, 64)) -> dict:
    """ms per call and per chunk when B chunks are sampled at once: on CUDA the graph sampler with
    the packed torch step and with the Triton residual-block kernels (B x G programs: they pay
    where the batch fills the GPU), the packed sampler elsewhere."""
    policy = KeypointDiffusionPolicy(config).to(device).eval()
    cuda = device.type == "cuda"
    denoisers = {"graph": Denoiser(policy.unet)}
    if cuda:
        denoisers["graph_triton"] = Denoiser(policy.unet, triton=True)
    steps = config.head.inference_steps
    functions = {}
    for size in sizes:
        batch = _batch(config, size, device, with_action=False)
        for name, denoiser in denoisers.items():
            if cuda:
                sampler = GraphedSampler(policy, batch, steps, denoiser=denoiser)
                functions[name, size] = lambda sampler=sampler, batch=batch: sampler(batch)
            else:
                functions[name, size] = lambda batch=batch, d=denoiser: policy.predict_action_chunk(
                    batch, steps=steps, denoiser=d
                )
    timed = _latencies(functions, device, repeats)
    result: dict = {"sampler": "graph" if cuda else "packed"}
    for (name, size), t in timed.items():
        key = f"batch_{size}" if name == "graph" else f"{name}_batch_{size}"
        result[key] = {"p50_ms": t["p50_ms"], "per_chunk_ms": round(t["p50_ms"] / size, 3)}
    return result


def _training(config: PolicyConfig, device: torch.device, batch_size: int, iterations: int) -> dict:
    optimised = _train_rate(config, device, batch_size, iterations, optimised=True)
    reference = _train_rate(config, device, batch_size, iterations, optimised=False)
    result = {
        "batch_size": batch_size,
        "optimised_samples_per_s": optimised,
        "reference_samples_per_s": reference,
        "speedup": round(optimised / reference, 2),
        "projected_250k_steps_h": round(250_000 * batch_size / optimised / 3600, 2),
    }
    if device.type == "cuda":  # the whole step (forward, backward, capturable fused AdamW) as one graph
        graph = _graph_train_rate(config, device, batch_size, max(iterations, 20))
        result |= {
            "graph_samples_per_s": graph,
            "graph_projected_250k_steps_h": round(250_000 * batch_size / graph / 3600, 2),
        }
    return result


def _graph_train_rate(config: PolicyConfig, device: torch.device, batch_size: int, iterations: int) -> float:
    """Samples/s of the training step captured as one CUDA graph (bf16 autocast), as
    ``train.py cuda_graph=true`` runs it (``kil_policy.train_step``), on a fixed batch."""
    torch.manual_seed(0)
    policy = KeypointDiffusionPolicy(config).to(device).train()
    optimizer = torch.optim.AdamW(
        policy.parameters(), lr=torch.tensor(1e-4, device=device), fused=True, capturable=True
    )
    batch = _batch(config, batch_size, device, with_action=True)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = policy(batch)
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()

    graph, _ = capture_cuda_graph(step, device)
    graph.replay()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iterations):
        graph.replay()
    _sync(device)
    return round(batch_size * iterations / (time.perf_counter() - start), 1)


def _train_rate(config: PolicyConfig, device: torch.device, batch_size: int, iterations: int, optimised: bool) -> float:
    """Samples/s. Optimised = what train.py does (fused AdamW, ``train.adamw_kernel``; bf16 autocast
    where ``train.use_bf16`` turns it on: CUDA, and the image baselines on a CPU with native bf16);
    reference = fp32 with the one-tensor-at-a-time AdamW."""
    from kil_policy.train import adamw_kernel, use_bf16

    torch.manual_seed(0)
    policy = KeypointDiffusionPolicy(config).to(device).train()
    kwargs = adamw_kernel(device) if optimised else {"foreach": False}
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-4, **kwargs)
    batch = _batch(config, batch_size, device, with_action=True)
    bf16 = use_bf16("auto", device, config.uses_images)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=optimised and bf16):
            loss = policy(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    _sync(device)
    elapsed = time.perf_counter() - start
    return round(batch_size * iterations / elapsed, 1)


def _rate_in_process(config: PolicyConfig, batch_size: int, iterations: int, threads: int, start) -> float:
    """A worker of :func:`_at_once`: warm up, wait for the others, then time."""
    torch.set_num_threads(threads)
    _train_rate(config, torch.device("cpu"), batch_size, 1, optimised=True)  # imports, allocations, first step
    start.wait()
    return _train_rate(config, torch.device("cpu"), batch_size, iterations, optimised=True)


def _at_once(configs: dict[str, PolicyConfig], batch_size: int, iterations: int) -> dict:
    """Seconds per step of every config: one after the other with all threads, and all at once in
    separate processes (threads divided), measured in the same run."""
    cores = len(os.sched_getaffinity(0))
    threads = max(1, cores // len(configs))
    cpu = torch.device("cpu")
    alone = {name: _train_rate(c, cpu, batch_size, iterations, optimised=True) for name, c in configs.items()}
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(len(configs)) as pool:
        start = manager.Barrier(len(configs))
        pending = {
            name: pool.apply_async(_rate_in_process, (c, batch_size, iterations, threads, start))
            for name, c in configs.items()
        }
        together = {name: result.get(timeout=1800) for name, result in pending.items()}
    # The same number of steps of each: one after the other the times add up; at once the slowest ends it.
    one_after_other = sum(batch_size / rate for rate in alone.values())
    at_once = max(batch_size / rate for rate in together.values())
    return {
        "batch_size": batch_size,
        "threads_alone": torch.get_num_threads(),
        "threads_each_at_once": threads,
        "samples_per_s_alone": alone,
        "samples_per_s_at_once": together,
        "s_per_step_of_each_one_after_other": round(one_after_other, 4),
        "s_per_step_of_each_at_once": round(at_once, 4),
        "speedup": round(one_after_other / at_once, 2),
    }


def threads_under_load_chunk(config: PolicyConfig, repeats: int) -> dict:
    """One CPU chunk (batch 1, packed sampler) with 1 thread and one per core, alone and beside one
    busy process per core (``kil_perception.cpu_threads``): what policy_node's ``cpu_threads`` decides."""
    policy = KeypointDiffusionPolicy(config).eval()
    batch = _batch(config, 1, torch.device("cpu"), with_action=False)
    packed = Denoiser(policy.unet)
    steps = config.head.inference_steps
    with torch.inference_mode():
        return threads_under_load(lambda: policy.predict_action_chunk(batch, steps=steps, denoiser=packed), repeats)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kil_policy.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeats", type=int, default=20, help="chunks timed per measurement")
    parser.add_argument("--train-iterations", type=int, default=3, help="training steps timed per measurement")
    parser.add_argument("--devices", nargs="*", default=None, help="default: cpu, and cuda when available")
    parser.add_argument(
        "--threads-under-load",
        action="store_true",
        help="only: the KIL chunk on the CPU with 1 thread and one per core, alone and beside busy processes",
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.threads_under_load:
        kil = PolicyConfig()
        kil.encoder.num_keypoints = K
        result = {"cpu": cpu_summary(), "kil_chunk": threads_under_load_chunk(kil, args.repeats)}
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return 0
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    kil = PolicyConfig()
    kil.encoder.num_keypoints = K
    rgb = PolicyConfig.rgb_baseline()
    s2 = PolicyConfig(observation="s2", head=rgb.head, mask_categories=("mug", "tray"))
    frozen = PolicyConfig(  # the demo's RGB: frozen trunk at 160x120, down dims 64-128-256
        observation="rgb", head=HeadConfig(down_dims=(64, 128, 256)), image_size=(120, 160),
        image_backbone="effnet_lite0_frozen",
    )  # fmt: skip
    results: dict = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_threads": torch.get_num_threads(),
            "cpu": cpu_summary(),
        },
        "targets": {"kil_head_p50_ms_cpu": 60.0, "kil_head_p50_ms_h100": 3.0, "kil_250k_steps_h_h100": 0.5},
    }
    for name in devices:
        device = torch.device(name)
        entry = {}
        if device.type == "cuda":
            entry["gpu"] = torch.cuda.get_device_name(device)
        with torch.inference_mode(False):
            entry["kil_inference"] = _inference(kil, device, args.repeats, fused_rows=True)
            entry["kil_batched"] = _batched(kil, device, max(3, args.repeats // 4))
            entry["rgb_inference"] = _inference(rgb, device, max(3, args.repeats // 4))
            entry["kil_training"] = _training(kil, device, 128, args.train_iterations)
            image_batch = 128 if device.type == "cuda" else 16
            entry["rgb_training"] = _training(rgb, device, image_batch, args.train_iterations)
            entry["s2_training"] = _training(s2, device, image_batch, args.train_iterations)
            # The CPU recipe of RGB and S2 (the demo's): frozen trunk, features cached per frame.
            entry["rgb_frozen_trunk_training"] = _training(frozen, device, 64, args.train_iterations)
            if device.type == "cpu":
                demo_kil = PolicyConfig(head=frozen.head)
                demo_kil.encoder.num_keypoints = K
                demo_s2 = PolicyConfig(
                    observation="s2", head=frozen.head, image_size=frozen.image_size,
                    image_backbone=frozen.image_backbone, mask_categories=("mug", "tray"),
                )  # fmt: skip
                demo = {"KIL": demo_kil, "RGB": frozen, "S2": demo_s2}
                entry["demo_methods_at_once"] = _at_once(demo, 64, max(10, args.train_iterations))
        results[name] = entry
    if args.json:
        print(json.dumps(results))
    else:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
