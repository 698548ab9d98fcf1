"""bench_arms' latency pairing: each command against the latest target received before it."""

from __future__ import annotations

import pytest

from kil_bringup.bench_arms import latencies_ms, main


def test_each_command_is_timed_from_the_latest_target_before_it() -> None:
    ms = 1_000_000
    targets = [0, 8 * ms, 16 * ms, 24 * ms]  # 125 Hz
    commands = [-1 * ms, 2 * ms, 9 * ms, 25 * ms, 40 * ms]  # a stray command before any target is skipped
    assert latencies_ms(targets, commands) == [2.0, 1.0, 1.0, 16.0]
    assert latencies_ms([], commands) == []


def test_bad_arguments_are_refused_before_any_graph_starts() -> None:
    with pytest.raises(SystemExit) as refused:
        main(["--seconds", "0"])
    assert refused.value.code == 2
