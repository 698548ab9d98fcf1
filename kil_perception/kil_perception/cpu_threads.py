"""torch's CPU thread count for the nodes, and what it costs when the cores are shared.

torch runs each operation on all its intra-op threads and waits for the slowest at the end. When
other processes hold the cores (the simulator, perception, a recorder, the policy: one rollout
graph on one machine), a thread that lost its core makes every other one wait, at every operation.
``python -m kil_policy.bench --threads-under-load`` measures it (:func:`threads_under_load`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch

DEFAULT_CPU_THREADS = 1
CPU_THREADS_DESCRIPTION = (
    "torch CPU threads (0 = torch's default, one per core). The default 1: in a rollout graph the "
    "simulator, perception, recording and policy share the cores, and more threads then wait for each "
    "other at every operation (python -m kil_policy.bench --threads-under-load measures it)"
)


def set_cpu_threads(threads: int) -> int:
    """Apply a node's ``cpu_threads`` parameter (0 keeps torch's default); returns the count in use.

    Raises:
        ValueError: a negative count.
    """
    if threads < 0:
        raise ValueError(f"parameter cpu_threads must be 0 (torch's default) or more, got {threads}")
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def threads_under_load(fn: Callable[[], object], repeats: int, busy: int | None = None) -> dict:
    """Latency of ``fn`` with one thread and with one per core, alone and beside ``busy`` processes
    that each keep a core busy (default: one per core), the thread counts interleaved call by call.

    Returns:
        {"cores", "busy_processes", "alone": {threads: {"p50_ms", "p95_ms"}}, "beside_busy": {...}}
        with threads as "1" and the core count.
    """
    n = cores()
    busy = n if busy is None else busy
    counts = sorted({1, n})
    before = torch.get_num_threads()
    fn()  # first call: allocations, lazy initialisation

    def measure() -> dict:
        times: dict[int, list[float]] = {c: [] for c in counts}
        for _ in range(repeats):
            for c in counts:
                torch.set_num_threads(c)
                start = time.perf_counter()
                fn()
                times[c].append(1000 * (time.perf_counter() - start))
        return {str(c): _percentiles(t) for c, t in times.items()}

    try:
        alone = measure()
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            beside = measure()
        finally:
            for spinner in spinners:
                spinner.kill()
                spinner.wait()
    finally:
        torch.set_num_threads(before)
    return {"cores": n, "busy_processes": busy, "alone": alone, "beside_busy": beside}


def _percentiles(times_ms: list[float]) -> dict:
    ordered = sorted(times_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 1), "p95_ms": round(p95, 1)}
