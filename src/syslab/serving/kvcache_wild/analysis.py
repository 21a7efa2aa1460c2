"""Replays, the characterisation of a trace, and modelled queueing + TTFT (QTTFT)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from syslab.serving.engine import IterationCost
from syslab.serving.kvcache_wild.cache import PrefixCache, WAParams, _next_access
from syslab.serving.kvcache_wild.trace import BLOCK_TOKENS, Trace


@dataclass
class Replay:
    policy: str
    capacity_blocks: int
    hit_blocks: np.ndarray      # per request: leading blocks found in the cache
    total_blocks: int
    lookups: int
    wall_s: float

    @property
    def hit_ratio(self) -> float:
        return float(self.hit_blocks.sum() / self.total_blocks) if self.total_blocks else math.nan

    def to_dict(self) -> dict:
        return {"policy": self.policy, "hit_ratio": self.hit_ratio, "requests": len(self.hit_blocks),
                "capacity_blocks": self.capacity_blocks, "lookups_per_s": self.lookups / max(self.wall_s, 1e-9)}


def next_uses(trace: Trace) -> list[np.ndarray]:
    """For each request, the time each of its blocks is next used (inf if never): Belady's oracle."""
    req, _, nxt = _next_access(trace)
    bounds = np.cumsum([0] + [len(b) for b in trace.blocks])
    return [nxt[bounds[i]:bounds[i + 1]] for i in range(len(trace))]


def replay(trace: Trace, capacity_blocks: int, policy: str, wa: WAParams | None = None,
           warmup: Trace | None = None) -> Replay:
    """Serve every request in time order through one cache; ``warmup`` requests are served first and not
    counted (e.g. the profiling hour, so the evaluation starts with a warm cache)."""
    cache = PrefixCache(capacity_blocks, policy, wa)
    full = trace if warmup is None else _concat(warmup, trace)
    oracle = next_uses(full) if policy == "belady" else None
    skip = 0 if warmup is None else len(warmup)
    hits = np.zeros(len(trace), dtype=np.int64)
    t0 = time.perf_counter()
    for i in range(len(full)):
        h = cache.access(full.blocks[i], float(full.timestamp[i]), full.category(i),
                         oracle[i] if oracle is not None else None)
        if i >= skip:
            hits[i - skip] = h
    wall = time.perf_counter() - t0
    return Replay(policy, capacity_blocks, hits, int(sum(len(b) for b in trace.blocks)), cache.lookups, wall)


def _concat(a: Trace, b: Trace) -> Trace:
    return Trace(np.concatenate([a.timestamp, b.timestamp]), np.concatenate([a.input_length, b.input_length]),
                 np.concatenate([a.output_length, b.output_length]), a.type + b.type,
                 np.concatenate([a.turn, b.turn]), np.concatenate([a.chat_id, b.chat_id]),
                 np.concatenate([a.parent_chat_id, b.parent_chat_id]), a.blocks + b.blocks, a.synthetic, a.meta)


def characterize(trace: Trace) -> dict:
    """The paper's characterisation (§3-4) on an infinite cache: ideal hit ratio, reuse skew, single- vs
    multi-turn hits, per-category reuse times, and the working set."""
    seen: set[int] = set()
    hits = np.zeros(len(trace), dtype=np.int64)
    for i, blocks in enumerate(trace.blocks):
        h = 0
        for b in blocks.tolist():
            if b not in seen:
                break
            h += 1
        hits[i] = h
        seen.update(blocks.tolist())
    total = int(sum(len(b) for b in trace.blocks))
    req, ids, nxt = _next_access(trace)
    _, counts = np.unique(ids, return_counts=True)
    reuses = np.sort(counts - 1)[::-1]
    top = max(1, int(math.ceil(0.1 * len(reuses))))
    multi = trace.turn > 1
    gaps = nxt - trace.timestamp[req]
    cats = np.array([trace.category(i) for i in range(len(trace))])[req]
    per_cat = {}
    for c in np.unique(cats):
        g = gaps[(cats == c) & np.isfinite(gaps)]
        if len(g):
            per_cat[str(c)] = {"reuses": int(len(g)), "median_s": float(np.median(g)),
                               "p80_s": float(np.quantile(g, 0.8))}
    return {
        "requests": len(trace), "blocks": total, "unique_blocks": int(len(counts)),
        "ideal_hit_ratio": float(hits.sum() / total) if total else math.nan,
        "top10_reuse_share": float(reuses[:top].sum() / max(reuses.sum(), 1)),
        "single_turn_hit_share": float(hits[~multi].sum() / max(hits.sum(), 1)),
        "multi_turn_request_share": float(multi.mean()) if len(trace) else math.nan,
        "reuse_within_10s": float((gaps[np.isfinite(gaps)] <= 10).mean()) if np.isfinite(gaps).any() else math.nan,
        "reuse_within_600s": float((gaps[np.isfinite(gaps)] <= 600).mean()) if np.isfinite(gaps).any() else math.nan,
        "reuse_time_by_category": per_cat,
    }


def qttft(trace: Trace, hit_blocks: np.ndarray, cost: IterationCost, kv_tokens: int | None = None
          ) -> pd.DataFrame:
    """Queueing + TTFT (and TPOT) per request, in trace order, on one instance of the serving engine
    (``serving.engine``: continuous batching with chunked prefill, decodes included): each request arrives
    with its prefix-cache hit (``hit_blocks`` leading blocks, at most all but its last prompt token) already in
    the KV cache, so its prefill computes only the rest, attending to the cached prefix. ``kv_tokens``: the
    instance's KV capacity (default: what fits in the GPU's memory after the weights).
    Cost: one engine replay, O(requests x batch)."""
    from syslab.serving import engine as E

    prompt = np.maximum(trace.input_length, 1)
    cached = np.minimum(np.asarray(hit_blocks) * BLOCK_TOKENS, prompt - 1)
    reqs = [E.Request(i, float(t), int(p), int(max(o, 1)), int(c))
            for i, (t, p, o, c) in enumerate(zip(trace.timestamp, prompt, trace.output_length, cached, strict=True))]
    cap = cost.kv_capacity_tokens() if kv_tokens is None else kv_tokens
    res = E.simulate(reqs, lambda i, s, r: E.Instance(cost, cap, id=i, start_s=s, ready_s=r))
    return res.requests.sort_values("id").reset_index(drop=True).rename(columns={"ttft_s": "qttft_s"})
