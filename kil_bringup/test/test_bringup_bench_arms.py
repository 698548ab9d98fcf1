"""bench_arms' latency pairing: each command against the latest target received before it."""

from __future__ import annotations

import pytest

from kil_bringup.bench_arms import latencies_ms, main, per_simulated_second


def test_each_command_is_timed_from_the_latest_target_before_it() -> None:
    ms = 1_000_000
    targets = [0, 8 * ms, 16 * ms, 24 * ms]  # 125 Hz
    commands = [-1 * ms, 2 * ms, 9 * ms, 25 * ms, 40 * ms]  # a stray command before any target is skipped
    assert latencies_ms(targets, commands) == [2.0, 1.0, 1.0, 16.0]
    assert latencies_ms([], commands) == []


def test_counters_are_rated_per_simulated_second_within_the_window() -> None:
    # sim_node's reports: (wall s, simulated s, physics ticks); the machine runs at half real time
    ticks = [(10.0, 100.0, 0), (11.0, 100.5, 60), (12.0, 101.0, 120), (13.0, 101.5, 180)]
    setpoints = [(10.1, 7), (11.05, 50), (12.9, 150)]  # the interpolator's, reported at other instants
    # from the report at 11.05 (simulated 100.5) to 12.9 (101.5): 100 setpoints in 1 simulated second
    assert per_simulated_second(setpoints, ticks, begin=11.0) == 100.0
    assert per_simulated_second([(w, n) for w, _s, n in ticks], ticks, begin=10.5) == 120.0
    assert per_simulated_second(setpoints, ticks, begin=12.5) is None  # one report in the window
    assert per_simulated_second([(11.0, 1), (11.2, 5)], ticks, begin=11.0) is None  # no simulated time between


def test_bad_arguments_are_refused_before_any_graph_starts() -> None:
    with pytest.raises(SystemExit) as refused:
        main(["--seconds", "0"])
    assert refused.value.code == 2
