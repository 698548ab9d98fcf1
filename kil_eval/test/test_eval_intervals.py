"""The protocol's confidence intervals against SciPy and against published values."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from kil_eval.intervals import clopper_pearson, wald


def test_clopper_pearson_matches_scipy_exact_interval() -> None:
    for successes in (0, 3, 10):
        expected = binomtest(successes, 10).proportion_ci(confidence_level=0.95, method="exact")
        assert clopper_pearson(successes, 10) == pytest.approx((expected.low, expected.high))
    assert clopper_pearson(10, 10)[1] == 1.0 and clopper_pearson(0, 10)[0] == 0.0


@pytest.mark.parametrize(("successes", "trials", "percent"), [(113, 150, (68, 82)), (70, 150, (38, 55))])
def test_clopper_pearson_known_values(successes: int, trials: int, percent: tuple[int, int]) -> None:
    low, high = clopper_pearson(successes, trials)
    assert (round(100 * low), round(100 * high)) == percent


def test_wald_interval_of_completions() -> None:
    low, high = wald([1.0, 0.5, 0.0, 1.0])
    assert 0.0 <= low < 0.625 < high <= 1.0
    # mean 0.625, sample std 0.4787, half-width 1.96 * 0.4787 / 2 = 0.469
    assert (low, high) == pytest.approx((0.625 - 0.4691, 1.0), abs=1e-3)
    assert wald([0.5] * 6) == pytest.approx((0.5, 0.5))
    with pytest.raises(ValueError, match="at least one"):
        wald([])
