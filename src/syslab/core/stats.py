"""Small statistics every reproduction reports: percentiles, CDFs, SLO attainment, imbalance, bootstrap CIs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; NaN for no values."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.percentile(v, q)) if v.size else float("nan")


def cdf(values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their empirical CDF (i / n), ready to plot as a step line."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    return v, np.arange(1, v.size + 1) / max(v.size, 1)


def slo_attainment(latencies: Sequence[float], slo: float) -> float:
    """Fraction of requests whose latency is within the SLO."""
    v = np.asarray(latencies, dtype=np.float64)
    return float((v <= slo).mean()) if v.size else float("nan")


def imbalance(loads: Sequence[float]) -> float:
    """max / mean of per-worker loads (1.0 = balanced)."""
    v = np.asarray(loads, dtype=np.float64)
    return float(v.max() / v.mean()) if v.size and v.mean() > 0 else float("nan")


def geomean(values: Sequence[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.exp(np.log(v).mean())) if v.size else float("nan")


def bootstrap_ci(values: Sequence[float], stat: Callable[[np.ndarray], float] = np.mean, n_resamples: int = 2000,
                 confidence: float = 0.95, rng: np.random.Generator | None = None) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``stat`` (vectorised over resamples)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan")
    rng = rng or np.random.default_rng(0)
    idx = rng.integers(0, v.size, size=(n_resamples, v.size))
    stats = np.apply_along_axis(stat, 1, v[idx])
    alpha = (1 - confidence) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))
