"""The nodes' torch thread setting and its measurement under load."""

from __future__ import annotations

import pytest
import torch

from kil_perception.cpu_threads import cores, set_cpu_threads, threads_under_load


@pytest.fixture()
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_set_cpu_threads_applies_keeps_or_refuses(restore_threads) -> None:
    assert set_cpu_threads(1) == 1 and torch.get_num_threads() == 1
    torch.set_num_threads(cores())
    assert set_cpu_threads(0) == cores()  # 0 keeps torch's setting
    with pytest.raises(ValueError, match=r"parameter cpu_threads must be 0 .* got -1"):
        set_cpu_threads(-1)
    assert torch.get_num_threads() == cores()


def test_threads_under_load_times_both_counts_and_stops_its_busy_processes(restore_threads, monkeypatch) -> None:
    import subprocess

    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr("kil_perception.cpu_threads.subprocess.Popen", popen)
    torch.set_num_threads(1)
    seen: list[int] = []
    x = torch.randn(400, 400)

    def work() -> None:
        seen.append(torch.get_num_threads())
        x @ x

    result = threads_under_load(work, repeats=3, busy=2)
    counts = sorted({1, cores()})
    assert result["cores"] == cores() and result["busy_processes"] == 2
    for phase in ("alone", "beside_busy"):
        assert sorted(result[phase]) == sorted(str(c) for c in counts)
        for times in result[phase].values():
            assert 0 < times["p50_ms"] <= times["p95_ms"]
    assert sorted(set(seen)) == counts and len(seen) == 1 + 2 * 3 * len(counts)  # interleaved, both phases
    assert len(started) == 2 and all(p.poll() is not None for p in started)  # the busy processes are gone
    assert torch.get_num_threads() == 1  # restored
