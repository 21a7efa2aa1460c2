"""Context-parallel sharding (per-sequence, per-document, adaptive) with exact per-rank attention work."""

from __future__ import annotations

from collections.abc import Sequence

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


def microbatch_time_s(lengths: Sequence[int], cost: CostModel, sharding: str) -> float:
    """Forward time of a micro-batch on its stage: the CP group waits for its busiest rank. ``sharding`` is
    'per-sequence', 'per-document' or 'adaptive' (the cheaper of the two, as WLB-LLM's runtime picks)."""
    d = np.asarray(lengths, dtype=np.int64)
    if len(d) == 0:
        return 0.0
    linear = cost.linear_s(d.sum())          # each CP rank holds tokens / CP (the /CP is in CostModel)
    if sharding == "adaptive":
        return min(microbatch_time_s(d, cost, "per-sequence"), microbatch_time_s(d, cost, "per-document"))
    shards = {"per-sequence": per_sequence_shards, "per-document": per_document_shards}[sharding]
    attn = cost.attention_pairs_s(shards(d, cost.cp, padded=True).max() * cost.cp)
    return float(linear + attn)
