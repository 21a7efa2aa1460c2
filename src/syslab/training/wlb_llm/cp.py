"""Context-parallel sharding (per-sequence, per-document, adaptive) with exact per-rank attention work."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from syslab.training.wlb_llm.cost import TILE, CostModel

# ---------------------------------------------------------------------------------------------------------
# Context-parallel sharding: exact per-rank causal attention work
# ---------------------------------------------------------------------------------------------------------

def _pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(query, key) pairs of causal attention for query positions [a, b) of one document: sum_{p=a}^{b-1} (p+1)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (b * (b + 1) - a * (a + 1)) / 2


def _padded(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairs the kernel actually computes: the segment's query rows padded up to a multiple of TILE."""
    q = np.asarray(b, dtype=np.float64) - a
    exact = _pairs(a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(q > 0, exact * (np.ceil(q / TILE) * TILE) / np.maximum(q, 1), 0.0)


def per_sequence_shards(lengths: Sequence[int], cp: int, padded: bool = False) -> np.ndarray:
    """Per-sequence sharding (baseline): cut the packed sequence into 2*CP equal chunks; rank i takes chunks
    i and 2*CP-1-i. Returns each rank's attention pairs (padded to query tiles if asked)."""
    d = np.asarray(lengths, dtype=np.int64)
    total = int(d.sum())
    bounds = np.linspace(0, total, 2 * cp + 1).round().astype(np.int64)
    starts = np.r_[0, np.cumsum(d)[:-1]]
    ends = starts + d
    work = np.zeros(cp)
    cost = _padded if padded else _pairs
    for c in range(2 * cp):
        lo, hi = bounds[c], bounds[c + 1]
        a = np.clip(lo - starts, 0, d)            # the chunk's query range inside each document
        b = np.clip(hi - starts, 0, d)
        keep = (ends > lo) & (starts < hi) & (b > a)
        work[c if c < cp else 2 * cp - 1 - c] += cost(a[keep], b[keep]).sum()
    return work


def per_document_shards(lengths: Sequence[int], cp: int, padded: bool = False) -> np.ndarray:
    """Per-document sharding (WLB-LLM): split every document the same way. The largest multiple of 2*CP
    tokens is cut into 2*CP equal chunks (rank i takes chunks i and 2*CP-1-i); the remaining < 2*CP tokens
    are dealt round-robin (the padding-free variant; we read the paper's formula this way)."""
    d = np.asarray(lengths, dtype=np.int64)
    q = d // (2 * cp)
    work = np.zeros(cp)
    cost = _padded if padded else _pairs
    for c in range(2 * cp):
        work[c if c < cp else 2 * cp - 1 - c] += cost(c * q, (c + 1) * q).sum()
    rem_start = 2 * cp * q
    for i in range(int((d - rem_start).max(initial=0))):      # < 2*CP remainder tokens per document
        has = rem_start + i < d
        pos = rem_start[has] + i
        work[i % cp] += (pos + 1).sum() if not padded else (pos + 1).sum() * TILE
    return work


def cp_imbalance(rank_work: np.ndarray) -> float:
    """max / mean of per-rank attention work (1.0 = balanced)."""
    m = rank_work.mean()
    return float(rank_work.max() / m) if m > 0 else 1.0


@dataclass(frozen=True)
class AttentionProfile:
    """WLB-LLM's sharding estimator: attention latency profiled once on a grid of shapes (here: pair counts of
    the busiest CP rank x CP, 24 points from 1,024 pairs to a full context's) and interpolated log-log. The
    profile is taken from the shared GPU cost model, standing in for the kernel profile the paper takes on
    its GPUs; the runtime picks each micro-batch's sharding from it without timing both."""

    pairs: np.ndarray
    seconds: np.ndarray

    @classmethod
    def of(cls, cost: CostModel, context: int, points: int = 24) -> AttentionProfile:
        grid = np.geomspace(1024.0, max(float(context) * (context + 1) / 2, 2048.0), points)
        return cls(grid, np.asarray(cost.attention_pairs_s(grid), dtype=np.float64))

    def estimate_s(self, pairs: float) -> float:
        lp = np.log(np.clip(pairs, self.pairs[0], self.pairs[-1]))
        return float(np.exp(np.interp(lp, np.log(self.pairs), np.log(self.seconds))) * max(pairs, 1.0)
                     / float(np.exp(lp)))


def _attention_pairs(d: np.ndarray, cp: int, sharding: str) -> float:
    shards = {"per-sequence": per_sequence_shards, "per-document": per_document_shards}[sharding]
    return float(shards(d, cp, padded=True).max() * cp)


def choose_sharding(lengths: Sequence[int], cost: CostModel, profile: AttentionProfile) -> str:
    """The estimator's pick for one micro-batch: the sharding whose profiled attention time is lower (the
    linear part is the same for both). O(documents)."""
    d = np.asarray(lengths, dtype=np.int64)
    est = {s: profile.estimate_s(_attention_pairs(d, cost.cp, s)) for s in ("per-sequence", "per-document")}
    return min(est, key=est.get)


def microbatch_time_s(lengths: Sequence[int], cost: CostModel, sharding: str,
                      profile: AttentionProfile | None = None) -> float:
    """Forward time of a micro-batch on its stage: the CP group waits for its busiest rank. ``sharding`` is
    'per-sequence', 'per-document', 'adaptive' (WLB-LLM: the estimator's pick from ``profile``, default one
    profiled up to this micro-batch's tokens) or 'oracle' (the faster of the two, known only by running both:
    a bound)."""
    d = np.asarray(lengths, dtype=np.int64)
    if len(d) == 0:
        return 0.0
    if sharding == "oracle":
        return min(microbatch_time_s(d, cost, "per-sequence"), microbatch_time_s(d, cost, "per-document"))
    if sharding == "adaptive":
        profile = profile or _profile(cost, int(d.sum()))
        return microbatch_time_s(d, cost, choose_sharding(d, cost, profile))
    linear = cost.linear_s(d.sum())          # each CP rank holds tokens / CP (the /CP is in CostModel)
    return float(linear + cost.attention_pairs_s(_attention_pairs(d, cost.cp, sharding)))


def _profile(cost: CostModel, tokens: int) -> AttentionProfile:
    """One profile per cost model and power-of-two context, profiled once (as the paper does offline) and kept
    on the cost model (a frozen dataclass holding a GPU's dict of peaks, so it cannot key an lru_cache)."""
    context = 1 << max(10, int(np.ceil(np.log2(max(tokens, 1)))))
    profiles = cost.__dict__.setdefault("_attention_profiles", {})
    if context not in profiles:
        profiles[context] = AttentionProfile.of(cost, context)
    return profiles[context]


def sharding_picks(packings, cost: CostModel) -> dict[str, float]:
    """How the estimator's picks compare with the oracle's over every micro-batch of ``packings``: the share of
    picks that are the faster sharding (ties count as right) and the time lost against the oracle."""
    right = total = 0
    est_s = best_s = 0.0
    for p in packings:
        for mb in p:
            d = np.array([doc.length for doc in mb], dtype=np.int64)
            if len(d) == 0:
                continue
            times = {s: microbatch_time_s(d, cost, s) for s in ("per-sequence", "per-document")}
            pick = choose_sharding(d, cost, _profile(cost, int(d.sum())))
            right += times[pick] <= min(times.values()) * (1 + 1e-12)
            total += 1
            est_s += times[pick]
            best_s += min(times.values())
    return {"right": right / max(total, 1), "microbatches": total, "loss_vs_oracle": est_s / best_s - 1
            if best_s else 0.0}
