"""Confidence intervals of the evaluation protocol (paper §IV-D): Clopper-Pearson for success
rates, Wald for the mean task completion of multi-object tasks."""

from __future__ import annotations

import math

from scipy.stats import beta


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval (low, high) of ``successes`` out of ``trials``."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes}/{trials}")
    alpha = 1.0 - confidence
    low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    return low, high


def wald(values: list[float], z: float = 1.959964) -> tuple[float, float]:
    """Normal-approximation interval of a mean completion in [0, 1], clipped to [0, 1]."""
    n = len(values)
    if n == 0:
        raise ValueError("wald needs at least one value")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, n - 1))
    half = z * std / math.sqrt(n)
    return max(0.0, mean - half), min(1.0, mean + half)
