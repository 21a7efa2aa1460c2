"""Synthetic allocation-request streams (no Kamino trace is public; results on them are labelled synthetic),
and the user's own requests from a CSV.

Signatures follow a Zipf law (exponent ``skew`` over ``signatures`` kinds) whose ranking drifts: every
``drift_every`` requests two neighbouring ranks swap at ``drift_swaps`` random places, so hot kinds cool
slowly. Arrivals are a two-state Markov-modulated Poisson process: a calm state and a burst state at
``burst_factor`` x the calm rate, switching with mean sojourns of ``calm_s`` and ``burst_s`` (unit time
scale; ``scale_to_load`` stretches it to a target load).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from syslab.core.errors import InputError


def zipf_signatures(n: int, signatures: int, skew: float, rng: np.random.Generator, drift_every: int = 500,
                    drift_swaps: int = 20) -> np.ndarray:
    if n < 1 or signatures < 1 or skew < 0:
        raise InputError(f"n {n}, signatures {signatures}, skew {skew}.", field="workload",
                         fix="n and signatures >= 1, skew >= 0.")
    p = 1.0 / np.arange(1, signatures + 1) ** skew
    p /= p.sum()
    rank_to_sig = rng.permutation(signatures)
    out = np.empty(n, dtype=np.int64)
    for lo in range(0, n, drift_every):
        hi = min(n, lo + drift_every)
        out[lo:hi] = rank_to_sig[rng.choice(signatures, size=hi - lo, p=p)]
        if signatures > 1:
            for r in rng.integers(0, signatures - 1, drift_swaps):
                rank_to_sig[[r, r + 1]] = rank_to_sig[[r + 1, r]]
    return out


def mmpp_arrivals(n: int, rng: np.random.Generator, burst_factor: float = 4.0, calm_s: float = 200.0,
                  burst_s: float = 20.0) -> np.ndarray:
    """n arrival times at mean rate 1 overall (calm rate r, burst rate burst_factor x r)."""
    frac_burst = burst_s / (calm_s + burst_s)
    calm_rate = 1.0 / (1 - frac_burst + frac_burst * burst_factor)
    t, state, times = 0.0, 0, []
    while len(times) < n:
        length = rng.exponential(burst_s if state else calm_s)
        rate = calm_rate * (burst_factor if state else 1.0)
        k = rng.poisson(rate * length)
        times.extend(np.sort(t + rng.uniform(0, length, k)))
        t += length
        state ^= 1
    return np.array(times[:n])


def load_requests(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A CSV with a header holding ``time_s`` (arrival, seconds) and ``signature`` (any label) columns."""
    import pandas as pd

    from syslab.core.inputs import Column, read_csv

    path = Path(path)
    df = read_csv(path, columns={"time_s": Column("str"), "signature": Column("str")},
                  fix="pass a CSV with a header time_s,signature and one request per row.")
    times = pd.to_numeric(df["time_s"].str.strip(), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~(np.isfinite(times) & (times >= 0) & (times <= 1e12))        # 1e12 s: 31,700 years
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"line {i + 2}: time_s is {df['time_s'].iloc[i]!r}.", file=path, field="time_s",
                         fix="arrival times are numbers of seconds, >= 0.")
    order = np.argsort(times, kind="stable")
    _, sigs = np.unique(df["signature"].to_numpy(dtype=object).astype(str), return_inverse=True)
    return times[order], sigs[order].astype(np.int64)
