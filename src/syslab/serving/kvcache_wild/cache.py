"""A block-level prefix KV cache with LRU, LFU, workload-aware (WA) and Belady-style eviction.

A request's prompt is a chain of block ids; a block is useful only after its whole prefix, so a hit is the
*contiguous* cached prefix, and eviction takes only *leaves* (a child always goes before its parent, as in a
radix tree). Blocks of the request being served are pinned. Victims come from heaps with lazy invalidation
(an entry is stale once its block is touched again, evicted, gains a child or is pinned): O(log n) per
block operation.

Policies rank evictable leaves (lowest evicted first):
- LRU: last access time.
- LFU: access count, then last access time.
- WA (the paper's policy): score = p_w * exp(-lambda_w * (now - t_last)), the probability that a reuse is
  still pending for a block last touched by a request of category w; ties evict later prompt offsets first.
  log-score = (log p_w + lambda_w t_last) - lambda_w now, so within a category the order never changes and
  one heap per category is exact; the victim is the lowest current score over the category heaps' tops.
- Belady (an oracle upper bound): the leaf whose next use lies farthest in the future. With prefix
  dependence this greedy rule is not provably optimal; it is the usual upper-bound approximation.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from syslab.core.errors import InputError
from syslab.serving.kvcache_wild.trace import Trace

POLICIES = ("lru", "lfu", "wa", "belady")


@dataclass(frozen=True)
class WAParams:
    """Per-category reuse probability p and exponential reuse rate lambda (1/s), fitted on a profile."""

    p: dict[str, float]
    rate: dict[str, float]
    default_p: float
    default_rate: float

    def of(self, category: str) -> tuple[float, float]:
        return self.p.get(category, self.default_p), self.rate.get(category, self.default_rate)


def _next_access(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flattened block accesses in time order: (request index, block id, time of the block's next access
    or inf)."""
    req = np.repeat(np.arange(len(trace)), [len(b) for b in trace.blocks])
    ids = np.concatenate(trace.blocks) if len(trace) else np.zeros(0, dtype=np.int64)
    t = trace.timestamp[req]
    order = np.lexsort((np.arange(len(ids)), ids))          # by block, then by access order
    nxt = np.full(len(ids), np.inf)
    same = ids[order][1:] == ids[order][:-1]
    nxt[order[:-1][same]] = t[order[1:][same]]
    return req, ids, nxt


def fit_wa(profile: Trace) -> WAParams:
    """Fit p_w (share of block accesses reused within the profile) and lambda_w (1 / mean reuse time) per
    request category on a profiling window (the paper: the first hour)."""
    req, _, nxt = _next_access(profile)
    gap = nxt - profile.timestamp[req]
    cats = np.array([profile.category(i) for i in range(len(profile))])[req]
    p, rate = {}, {}
    for c in np.unique(cats):
        g = gap[cats == c]
        reused = np.isfinite(g)
        p[str(c)] = float(reused.mean())
        rate[str(c)] = 1.0 / max(float(g[reused].mean()), 1e-3) if reused.any() else 1.0
    reused = np.isfinite(gap)
    return WAParams(p, rate, float(reused.mean()) if len(gap) else 0.5,
                    1.0 / max(float(gap[reused].mean()), 1e-3) if reused.any() else 1.0)


class PrefixCache:
    """A capacity-bounded prefix cache of blocks under one eviction ``policy``."""

    def __init__(self, capacity_blocks: int, policy: str = "lru", wa: WAParams | None = None) -> None:
        if policy not in POLICIES:
            raise InputError(f"unknown policy {policy!r}.", field="--policy", fix=f"use one of {', '.join(POLICIES)}.")
        if capacity_blocks < 1:
            raise InputError(f"capacity must be at least one block, got {capacity_blocks}.",
                             field="--capacity-blocks", fix="give a positive number of blocks.")
        if policy == "wa" and wa is None:
            raise InputError("the WA policy needs fitted parameters.", field="wa", fix="call fit_wa on a profile.")
        self.capacity, self.policy, self.wa = capacity_blocks, policy, wa
        self.parent: dict[int, int] = {}        # cached block -> its parent (-1 at the root)
        self.children: dict[int, int] = defaultdict(int)
        self.version: dict[int, int] = defaultdict(int)
        self.count: dict[int, int] = defaultdict(int)
        self.rate: dict[int, float] = {}
        self.key: dict[int, tuple] = {}
        self.heaps: dict[float, list] = defaultdict(list)    # lane (decay rate) -> entries
        self.pinned: set[int] = set()
        self.lookups = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self.parent)

    # -- priorities ----------------------------------------------------------------------------------------
    def _key(self, block: int, t: float, offset: int, category: str, next_use: float) -> tuple[tuple, float]:
        """(heap key, lane decay rate) of a block just touched at time t at prompt position ``offset``."""
        if self.policy == "lru":
            return (t, -offset), 0.0
        if self.policy == "lfu":
            return (self.count[block], t, -offset), 0.0
        if self.policy == "belady":
            return (-next_use, -offset), 0.0
        p, rate = self.wa.of(category)
        return (math.log(max(p, 1e-12)) + rate * t, -offset), rate

    def _push(self, block: int) -> None:
        heapq.heappush(self.heaps[self.rate[block]], (self.key[block], self.version[block], block))

    def _victim(self, now: float) -> int | None:
        """Pop the lowest-priority evictable leaf across lanes (or None if nothing is evictable)."""
        pinned = []
        best_lane, best_score = None, None
        for rate, heap in self.heaps.items():
            while heap:
                key, ver, b = heap[0]
                if b not in self.parent or ver != self.version[b] or self.children[b] > 0:
                    heapq.heappop(heap)                       # stale: touched, evicted or no longer a leaf
                elif b in self.pinned:
                    pinned.append(heapq.heappop(heap))        # in use by the current request
                else:
                    break
            if heap:
                score = (heap[0][0][0] - rate * now, *heap[0][0][1:])
                if best_score is None or score < best_score:
                    best_lane, best_score = rate, score
        for entry in pinned:
            heapq.heappush(self.heaps[self.rate[entry[2]]], entry)
        return None if best_lane is None else heapq.heappop(self.heaps[best_lane])[2]

    def _evict(self, block: int) -> None:
        parent = self.parent.pop(block)
        self.version[block] += 1
        self.count.pop(block, None)          # LFU forgets an evicted block's history
        self.evictions += 1
        if parent >= 0 and parent in self.parent:
            self.children[parent] -= 1
            if self.children[parent] == 0:   # the parent becomes a leaf: it competes again with its own key
                self._push(parent)

    # -- one request ---------------------------------------------------------------------------------------
    def access(self, blocks: np.ndarray, t: float, category: str = "", next_use: np.ndarray | None = None) -> int:
        """Serve one request's prompt: return the number of leading blocks that hit, then cache the rest
        (evicting as needed; the request's own blocks are pinned)."""
        ids = blocks.tolist()
        hits = 0
        for b in ids:
            self.lookups += 1
            if b not in self.parent:
                break
            hits += 1
        self.pinned = set(ids[:hits])
        parent = -1
        for j, b in enumerate(ids):
            nu = float(next_use[j]) if next_use is not None else math.inf
            if j >= hits and b not in self.parent:
                while len(self.parent) >= self.capacity:
                    v = self._victim(t)
                    if v is None:
                        break
                    self._evict(v)
                if len(self.parent) >= self.capacity:
                    break                                   # nothing evictable: the tail stays uncached
                self.lookups += 1
                self.parent[b] = parent
                if parent >= 0:
                    self.children[parent] += 1
                self.pinned.add(b)
            self.count[b] += 1
            self.version[b] += 1
            self.key[b], self.rate[b] = self._key(b, t, j, category, nu)
            self._push(b)
            parent = b
        self.pinned = set()
        return hits
