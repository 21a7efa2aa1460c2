"""Arrival processes, length distributions, and loaders for the serving traces.

Loaders return a DataFrame with ``arrival_s`` (seconds from the first request), ``prompt_tokens`` and
``output_tokens``, validated with InputErrors that name the file and column. Loading is O(rows).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from syslab.core.errors import InputError
from syslab.core.inputs import Column, numbers, read_csv, read_json

TRACE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def poisson_arrivals(rate_per_s: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """n arrival times of a Poisson process (exponential gaps) starting at 0."""
    if rate_per_s <= 0:
        raise InputError(f"rate must be positive, got {rate_per_s}.", field="rate", fix="use requests per second > 0.")
    gaps = rng.exponential(1.0 / rate_per_s, n)
    return np.cumsum(gaps) - gaps[0]


def gamma_arrivals(rate_per_s: float, cv: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Bursty arrivals: gamma-distributed gaps with mean 1/rate and coefficient of variation ``cv``
    (cv = 1 is Poisson; cv > 1 is burstier)."""
    if rate_per_s <= 0 or cv <= 0:
        raise InputError("rate and cv must be positive.", field="rate/cv", fix="e.g. rate 2.0, cv 3.0.")
    shape = 1.0 / cv**2
    gaps = rng.gamma(shape, 1.0 / (rate_per_s * shape), n)
    return np.cumsum(gaps) - gaps[0]


def lognormal_lengths(median: float, sigma: float, n: int, rng: np.random.Generator, low: int = 1,
                      high: int | None = None) -> np.ndarray:
    """Integer lengths from a lognormal with the given median, clipped to [low, high]."""
    x = rng.lognormal(np.log(median), sigma, n)
    return np.clip(np.round(x), low, high if high is not None else np.inf).astype(np.int64)


TRACE_FIX = "use the Azure LLM trace header TIMESTAMP,ContextTokens,GeneratedTokens with one request per row."
MAX_TOKENS = 10_000_000  # per request: far above any model's context, low enough that nothing sized by it explodes


def _read_trace_csv(path: str | Path, timestamps: bool = False) -> pd.DataFrame:
    columns = {"ContextTokens": Column("int", min=0, max=MAX_TOKENS),
               "GeneratedTokens": Column("int", min=0, max=MAX_TOKENS)}
    if timestamps:
        columns["TIMESTAMP"] = Column("time")
    for c in TRACE_COLUMNS:
        columns.setdefault(c, Column("str"))
    return read_csv(path, columns=columns, fix=TRACE_FIX)


def load_azure_llm(path: str | Path) -> pd.DataFrame:
    """The Azure LLM inference trace (2023) format: wall-clock TIMESTAMP, prompt and output token counts."""
    df = _read_trace_csv(path, timestamps=True)
    ts = df["TIMESTAMP"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype) and ts.dtype.kind != "M":
        raise InputError("timestamps mix time zones (or with and without one).", file=path, field="TIMESTAMP",
                         fix="write every timestamp in one time zone.")
    arrival = (ts - ts.min()).dt.total_seconds().to_numpy()
    if (np.diff(arrival) < 0).any():
        warnings.warn(f"{path}: timestamps were not sorted; sorted them.", stacklevel=2)
    out = pd.DataFrame({"arrival_s": arrival, "prompt_tokens": df["ContextTokens"].to_numpy(),
                        "output_tokens": df["GeneratedTokens"].to_numpy()})
    return out.sort_values("arrival_s", kind="stable").reset_index(drop=True)


def load_lmsys(path: str | Path, arrivals_s: np.ndarray | None = None) -> pd.DataFrame:
    """LMSYS-Chat lengths (no timestamps upstream); pair them with ``arrivals_s`` (e.g. Poisson) if given."""
    df = _read_trace_csv(path)
    n = len(df)
    if arrivals_s is not None and len(arrivals_s) < n:
        raise InputError(f"{len(arrivals_s)} arrival times for {n} requests.", file=path, field="arrivals",
                         fix="generate one arrival per request.")
    arrival = np.asarray(arrivals_s[:n], dtype=np.float64) if arrivals_s is not None else np.full(n, np.nan)
    return pd.DataFrame({"arrival_s": arrival, "prompt_tokens": df["ContextTokens"].to_numpy(),
                         "output_tokens": df["GeneratedTokens"].to_numpy()})


def replay_window(path: str | Path, factor: float, max_span_s: float) -> pd.DataFrame:
    """An Azure-format trace for a replay tool: loaded (validated), its arrivals compressed by ``factor``, and
    refused if it then spans more than ``max_span_s`` of simulated time (the tool's cost grows with the span)."""
    df = time_scale(load_azure_llm(path), factor)
    span_s = float(df["arrival_s"].max())
    if span_s > max_span_s:
        unit, per = ("days", 86400.0) if max_span_s >= 86400 else ("hours", 3600.0)
        raise InputError(f"the replayed trace spans {span_s / per:,.1f} {unit}, over the limit of "
                         f"{max_span_s / per:g}.", file=path, field="TIMESTAMP",
                         fix="replay a shorter window, or compress it with --time-scale.")
    return df


def time_scale(trace: pd.DataFrame, factor: float) -> pd.DataFrame:
    """Compress (factor > 1) or stretch a trace's arrivals, keeping lengths: arrival / factor."""
    if factor <= 0:
        raise InputError(f"time scale must be positive, got {factor}.", field="--time-scale", fix="e.g. 4.0.")
    out = trace.copy()
    out["arrival_s"] = out["arrival_s"] / factor
    return out


# Sequence / document lengths: one JSON list of positive integers (WLB-LLM, FlexPipe)


LENGTHS_FIX = "write a JSON list of positive integer lengths in tokens, such as [4096, 812, 30211]."
MAX_LENGTH_TOKENS = 1 << 30   # one document or sequence; more would overflow the packers' int64 FLOP sums


def load_lengths(path: str | Path) -> np.ndarray:
    """A JSON list of positive integer document lengths (tokens)."""
    return validate_lengths(read_json(path, fix=LENGTHS_FIX, expect=list, field="lengths"), source=path)


def validate_lengths(raw: Any, source: str | Path = "<lengths>") -> np.ndarray:
    return numbers(raw, field="lengths", file=source, fix=LENGTHS_FIX, integer=True, min=1, max=MAX_LENGTH_TOKENS)
