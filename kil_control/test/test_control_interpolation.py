"""ChunkInterpolator: interpolation between 10 Hz targets and every safety limit on the control path."""

from __future__ import annotations

import numpy as np
import pytest

from kil_control.interpolation import ChunkInterpolator, InterpolatorConfig, SafetyLimits
from kil_interfaces.data import ActionChunkData
from kil_interfaces.rotations import euler_to_quat, quat_angle

MS = 1_000_000
DOWN = np.array([1.0, 0.0, 0.0, 0.0])
START = np.array([0.3, 0.0, 0.2])


def _chunk(stamp_ns: int, positions, execute_steps: int = 0, quaternions=None, gripper=None) -> ActionChunkData:
    positions = np.asarray(positions, np.float64)
    n = len(positions)
    return ActionChunkData(
        stamp_ns=stamp_ns,
        frame_id="link_base",
        step_ns=100 * MS,
        positions=positions,
        quaternions=np.tile(DOWN, (n, 1)) if quaternions is None else quaternions,
        gripper=np.ones(n, np.float32) if gripper is None else gripper,
        execute_steps=execute_steps,
    )


def _run(interp: ChunkInterpolator, t0_ns: int, duration_s: float) -> tuple[np.ndarray, list]:
    period = interp.config.period_ns
    times = t0_ns + period * np.arange(round(duration_s * interp.config.rate_hz))
    return times, [interp.setpoint(int(t)) for t in times]


def test_holds_before_any_chunk() -> None:
    interp = ChunkInterpolator(InterpolatorConfig(), START, DOWN, 1.0)
    _, sps = _run(interp, 0, 0.1)
    assert all(sp.holding for sp in sps)
    np.testing.assert_array_equal(sps[-1].position, START)


def test_linear_between_targets_and_gripper() -> None:
    interp = ChunkInterpolator(InterpolatorConfig(rate_hz=100), START, DOWN, 1.0)
    targets = START + np.array([[0.01, 0, 0], [0.02, 0, 0], [0.03, 0, 0]])  # 0.1 m/s: within limits
    gripper = np.array([1.0, 0.5, 0.0], np.float32)
    assert interp.add_chunk(_chunk(100 * MS, targets, gripper=gripper), now_ns=0)
    times, sps = _run(interp, 0, 0.4)
    x = np.array([sp.position[0] for sp in sps])
    expected = np.interp(times, [0, 100 * MS, 200 * MS, 300 * MS], [0.3, 0.31, 0.32, 0.33])
    np.testing.assert_allclose(x, expected, atol=1e-12)
    np.testing.assert_allclose(sps[15].gripper, 0.75)  # halfway between targets 0 and 1
    assert not any(sp.limited or sp.holding for sp in sps)
    np.testing.assert_allclose(sps[-1].position, targets[-1])  # holds the last target


def test_workspace_bounds_clamp_targets() -> None:
    limits = SafetyLimits(workspace_min=(0.1, -0.3, 0.02), workspace_max=(0.6, 0.3, 0.4), stale_after_s=5.0)
    interp = ChunkInterpolator(InterpolatorConfig(limits=limits), START, DOWN, 1.0)
    interp.add_chunk(_chunk(100 * MS, [[0.3, 0.0, -0.1], [0.9, 0.5, -0.2]]), now_ns=0)
    _, sps = _run(interp, 0, 3.0)
    positions = np.array([sp.position for sp in sps])
    assert np.all(positions >= np.array(limits.workspace_min) - 1e-12)
    assert np.all(positions <= np.array(limits.workspace_max) + 1e-12)
    np.testing.assert_allclose(positions[-1], [0.6, 0.3, 0.02])
    assert any(sp.limited for sp in sps)


@pytest.mark.parametrize("rate_hz", [100.0, 250.0])
def test_step_and_speed_limits(rate_hz: float) -> None:
    limits = SafetyLimits(max_linear_speed=0.5, max_step_m=0.004, max_angular_speed=1.0, stale_after_s=5.0)
    interp = ChunkInterpolator(InterpolatorConfig(rate_hz=rate_hz, limits=limits), START, DOWN, 1.0)
    turned = euler_to_quat(np.array([np.pi, 0.0, 1.5]))
    # A jump of 0.3 m and 1.5 rad due in 100 ms: far beyond every limit.
    interp.add_chunk(_chunk(100 * MS, [START + [0.3, 0.0, 0.0]], quaternions=turned[None]), now_ns=0)
    _, sps = _run(interp, 0, 2.0)
    positions = np.array([START] + [sp.position for sp in sps])
    steps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    dt = 1.0 / rate_hz
    assert steps.max() <= min(limits.max_step_m, limits.max_linear_speed * dt) + 1e-12
    quats = np.array([DOWN] + [sp.quaternion for sp in sps])
    turns = quat_angle(quats[:-1], quats[1:])
    assert turns.max() <= limits.max_angular_speed * dt + 1e-9
    np.testing.assert_allclose(positions[-1], START + [0.3, 0.0, 0.0], atol=1e-9)  # gets there eventually
    assert quat_angle(quats[-1], turned) < 1e-6


def test_execute_steps_hold_at_the_last_executed_target() -> None:
    interp = ChunkInterpolator(InterpolatorConfig(rate_hz=100), START, DOWN, 1.0)
    targets = START + np.outer(np.arange(1, 17) * 0.005, [0, 1, 0])
    interp.add_chunk(_chunk(100 * MS, targets, execute_steps=8), now_ns=0)
    _, sps = _run(interp, 0, 1.2)
    np.testing.assert_allclose(sps[-1].position, targets[7])


def test_new_chunk_replaces_the_future_plan() -> None:
    interp = ChunkInterpolator(InterpolatorConfig(rate_hz=100), START, DOWN, 1.0)
    interp.add_chunk(_chunk(100 * MS, START + np.outer(np.arange(1, 9) * 0.01, [1, 0, 0])), now_ns=0)
    _run(interp, 0, 0.3)
    now = 300 * MS
    interp.add_chunk(_chunk(now + 100 * MS, START + np.outer(np.arange(1, 9) * 0.01, [0, 1, 0])), now_ns=now)
    _, sps = _run(interp, now, 1.0)
    final = sps[-1].position
    np.testing.assert_allclose(final, START + [0, 0.08, 0], atol=1e-9)


def test_a_policys_chunk_cadence_never_counts_as_stale() -> None:
    """Chunks of 9 executed steps every 0.8 s, each arriving 0.2 s after the previous plan ended
    (inference time): no hold in between, and a hold once they stop."""
    limits = SafetyLimits(stale_after_s=0.5)
    interp = ChunkInterpolator(InterpolatorConfig(rate_hz=100, limits=limits), START, DOWN, 1.0)
    holding = []
    for k in range(5):
        arrival = k * 800 * MS + (200 * MS if k else 0)
        targets = [START + [0.001 * (8 * k + i), 0, 0] for i in range(16)]
        assert interp.add_chunk(_chunk(k * 800 * MS, targets, execute_steps=9), now_ns=arrival)
        _, sps = _run(interp, arrival, 0.8 if k < 4 else 2.0)
        holding += [sp.holding for sp in sps]
    assert not any(holding[:-100]) and holding[-1]  # held only after the chunks stopped


def test_stale_inputs_hold_then_resume() -> None:
    limits = SafetyLimits(stale_after_s=0.3)
    interp = ChunkInterpolator(InterpolatorConfig(rate_hz=100, limits=limits), START, DOWN, 1.0)
    interp.add_chunk(_chunk(100 * MS, [START + [0.02, 0, 0]]), now_ns=0)
    _, sps = _run(interp, 0, 1.0)
    assert not sps[35].holding and sps[-1].holding  # plan ran out at 0.1 s, stale 0.3 s later
    assert [sp.holding for sp in sps].index(True) in (40, 41)  # from 0.4 s on
    held = sps[-1].position
    _, later = _run(interp, 1000 * MS, 0.5)
    assert all(sp.holding for sp in later)
    np.testing.assert_array_equal(later[-1].position, held)
    # A chunk that is already stale when it arrives is refused; a fresh one resumes motion.
    assert not interp.add_chunk(_chunk(100 * MS, [START]), now_ns=1500 * MS)
    assert interp.add_chunk(_chunk(1600 * MS, [START + [0.04, 0, 0]]), now_ns=1500 * MS)
    _, resumed = _run(interp, 1500 * MS, 0.5)
    assert not resumed[0].holding
    np.testing.assert_allclose(resumed[-1].position, START + [0.04, 0, 0])


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="workspace_min"):
        SafetyLimits(workspace_min=(0.5, 0, 0), workspace_max=(0.4, 1, 1))
    with pytest.raises(ValueError, match="max_step_m must be > 0"):
        SafetyLimits(max_step_m=0)
    with pytest.raises(ValueError, match="rate_hz"):
        InterpolatorConfig(rate_hz=0.1)
