"""A block-level prefix KV cache with LRU, LFU, workload-aware (WA) and Belady-style eviction.

A request's prompt is a chain of block ids; a block is useful only after its whole prefix, so a hit is the
*contiguous* cached prefix, and eviction takes only *leaves* (a child always goes before its parent, as in a
radix tree). Blocks of the request being served are pinned. Victims come from heaps with lazy invalidation
(an entry is stale once its block is touched again, evicted, gains a child or is pinned): O(log n) per
block operation.

Policies rank evictable leaves (lowest evicted first):
- LRU: last access time.
- LFU: access count, then last access time.
- WA (the paper's policy, as its authors' vLLM PR #22236 describes it): one LRU queue per request category
  w (type and turn); the victim is the queue head with the lowest predicted probability of being reused
  *in the upcoming time window*. With an exponential reuse model fitted per category (reuse probability
  p_w, rate lambda_w), a block idle for a seconds is reused within the next W seconds with probability
      P = p_w e^(-lambda_w a) (1 - e^(-lambda_w W)) / (1 - p_w + p_w e^(-lambda_w a)),
  which falls with a, so each category queue stays in LRU order and only heads need scoring. The window W
  is not given in the material we have; we take the cache's own horizon, the moving average of victims'
  idle times (how long a block would survive anyway, updated after each request), and document this as our
  reading.
- Belady (an oracle upper bound): the leaf whose next use lies farthest in the future. With prefix
  dependence this greedy rule is not provably optimal; it is the usual upper-bound approximation.
"""

from __future__ import annotations

import heapq
import math
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


_TIE = 1e-9   # key offset per prompt position: among equal priorities, later blocks go first


class PrefixCache:
    """A capacity-bounded prefix cache of blocks under one eviction ``policy``.

    Heap entries are (key, block); an entry is live while the block is cached, is a leaf, and its current
    key equals the entry's (a touch gives a block a new key, so older entries go stale).
    """

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
        self.children: dict[int, int] = {}      # cached block -> cached children
        self.key: dict[int, float] = {}         # cached block -> current priority key (lower = evict first)
        self.lane: dict[int, float | str] = {}  # cached block -> its queue (WA: its category), else 0
        self.count: dict[int, int] = {}         # LFU
        self.heaps: dict[float | str, list[tuple[float, int]]] = {0.0: []}
        self.window_s = 1.0 / wa.default_rate if wa is not None else 0.0
        self._lanes: list | None = None          # WA, during one request: heap of scored lane heads
        self._offered: dict[float | str, tuple[float, int]] = {}
        self._dirty: float | str | None = None   # WA: the last victim's lane, its head not yet re-scored
        self._lane_params: dict[float | str, tuple[float, float, float]] = {}
        self._seq = 0
        self._held: list[tuple[float | str, tuple[float, int]]] = []   # pinned entries set aside
        self._victim_idle: list[float] = []
        self.pin: dict[int, int] = {}           # block -> index of the request using it
        self.request = 0
        self.lookups = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self.parent)

    def _reuse_probability(self, lane: float | str, idle_s: float) -> float:
        """WA: probability that a block of category ``lane`` idle for ``idle_s`` is reused within the window."""
        params = self._lane_params.get(lane)
        if params is None:                       # per request: the window is fixed while a request is served
            p, rate = self.wa.of(str(lane))
            params = self._lane_params[lane] = (p, rate, 1.0 - math.exp(-rate * self.window_s))
        p, rate, within = params
        pending = p * math.exp(-rate * idle_s)
        return within * (pending / max(1.0 - p + pending, 1e-12))

    def _head(self, lane: float | str) -> tuple[float, int] | None:
        """The lane's evictable head: stale entries are dropped, pinned ones set aside until the request ends."""
        heap, parent, key, children = self.heaps[lane], self.parent, self.key, self.children
        while heap:
            k, b = heap[0]
            if b not in parent or key[b] != k or children[b]:
                heapq.heappop(heap)                            # stale: touched, evicted or not a leaf
            elif self.pin.get(b) == self.request:
                self._held.append((lane, heapq.heappop(heap)))  # in use by the current request
            else:
                return heap[0]
        return None

    def _score(self, lane: float | str, head: tuple[float, int], now: float) -> tuple:
        """WA: a lane head's entry for the per-request heap of lane heads, scored by reuse probability
        (``_reuse_probability`` inlined: this is WA's hot path)."""
        self._offered[lane] = head
        self._seq += 1
        params = self._lane_params.get(lane)
        if params is None:
            self._reuse_probability(lane, 0.0)
            params = self._lane_params[lane]
        p, rate, within = params
        pending = p * math.exp(rate * (head[0] - now))
        denominator = 1.0 - p + pending
        score = within * (pending / (denominator if denominator > 1e-12 else 1e-12))   # exact ties when p = 1
        return score, head[0], self._seq, lane, head     # equal scores (e.g. never-reused lanes): oldest first

    def _offer(self, lane: float | str, head: tuple[float, int], now: float) -> None:
        """WA: enter a lane's head into the heap of lane heads (once per head: older offers for the lane are
        recognised as stale when popped)."""
        if self._offered.get(lane) is not head:
            heapq.heappush(self._lanes, self._score(lane, head, now))

    def _victim(self, now: float) -> int | None:
        """Pop the lowest-priority evictable leaf (or None if nothing is evictable)."""
        if self.policy != "wa":
            return heapq.heappop(self.heaps[0.0])[1] if self._head(0.0) is not None else None
        if self._lanes is None:                                # first eviction of this request
            self._lanes = []
            for lane in self.heaps:
                head = self._head(lane)
                if head is not None:
                    self._offer(lane, head, now)
        lanes, heaps, parent, key, children, pin, request = (self._lanes, self.heaps, self.parent, self.key,
                                                               self.children, self.pin, self.request)
        heappop = heapq.heappop
        pending = None
        if self._dirty is not None:             # the last victim's lane: its new head (maybe the victim's parent,
            lane, self._dirty = self._dirty, None   # which _evict just made a leaf) is scored only now
            head = self._head(lane)
            if head is not None:
                pending = self._score(lane, head, now)
            else:
                self._offered.pop(lane, None)  # an empty lane has no head on offer
        while lanes or pending is not None:
            if pending is not None:             # often the next victim too, and then it never enters the heap
                item = heapq.heappushpop(lanes, pending)
                pending = None
            else:
                item = heappop(lanes)
            _, _, _, lane, entry = item
            heap = heaps[lane]
            head = None                                        # the lane's evictable head (inlined _head)
            while heap:
                k, b = heap[0]
                if b not in parent or key[b] != k or children[b]:
                    heappop(heap)
                elif pin.get(b) == request:
                    self._held.append((lane, heappop(heap)))
                else:
                    head = heap[0]
                    break
            if head is None:
                continue
            if head is not entry:                              # the lane's head changed: score it afresh
                self._offer(lane, head, now)
                continue
            heappop(heap)
            self._dirty = lane
            self._victim_idle.append(now - entry[0])
            return entry[1]
        return None

    def _evict(self, block: int, now: float) -> None:
        parent = self.parent.pop(block)
        del self.children[block], self.key[block]
        if self.count:
            self.count.pop(block, None)         # LFU forgets an evicted block's history
        self.evictions += 1
        if parent >= 0 and parent in self.parent:
            self.children[parent] -= 1
            if self.children[parent] == 0:      # the parent is a leaf again: it competes with its own key
                entry = (self.key[parent], parent)
                heapq.heappush(self.heaps[self.lane[parent]], entry)
                lane = self.lane[parent]
                if self._lanes is not None and lane != self._dirty and self.pin.get(parent) != self.request:
                    offered = self._offered.get(lane)
                    if offered is None or entry < offered:   # it is the lane's new head only if it is older
                        self._offer(lane, entry, now)

    def access(self, blocks: np.ndarray, t: float, category: str = "", next_use: np.ndarray | None = None) -> int:
        """Serve one request's prompt: return the number of leading blocks that hit, then cache the rest
        (evicting leaves as needed; the request's own blocks are pinned)."""
        ids = blocks.tolist()
        parent_of, children, keys, lanes, count, pin = (self.parent, self.children, self.key, self.lane,
                                                         self.count, self.pin)
        self.request += 1
        req = self.request
        hits = 0
        for b in ids:
            if b not in parent_of:
                break
            hits += 1
        self.lookups += len(ids)
        lane: float | str = category if self.policy == "wa" else 0.0
        if lane not in self.heaps:
            self.heaps[lane] = []
        heap = self.heaps[lane]
        lfu, belady = self.policy == "lfu", self.policy == "belady"
        nu = next_use.tolist() if belady and next_use is not None else None
        parent = -1
        for j, b in enumerate(ids):
            if b not in parent_of:
                if len(parent_of) >= self.capacity:
                    victim = self._victim(t)
                    while victim is not None:
                        self._evict(victim, t)
                        if len(parent_of) < self.capacity:
                            break
                        victim = self._victim(t)
                    if len(parent_of) >= self.capacity:
                        break                           # nothing evictable: the tail stays uncached
                parent_of[b] = parent
                children[b] = 0
                if parent >= 0:
                    children[parent] += 1
            pin[b] = req
            if lfu:
                c = count.get(b, 0) + 1
                count[b] = c
                k = c * 1e5 + t - j * _TIE
            elif belady:
                k = -(nu[j] if nu is not None else math.inf) - j * _TIE
            else:
                k = t - j * _TIE                        # LRU order (within a category queue for WA)
            keys[b] = k
            lanes[b] = lane
            if not children[b]:
                heapq.heappush(heap, (k, b))            # only leaves can be evicted; parents re-enter later
            parent = b
        if self._victim_idle:                           # WA's window: the victims' idle time, averaged
            for idle in self._victim_idle:
                self.window_s += 0.01 * (max(idle, 0.0) - self.window_s)
            self._victim_idle.clear()
        for lane, entry in self._held:                  # the request is done: its blocks can be evicted again
            heapq.heappush(self.heaps[lane], entry)
        self._held.clear()
        self._lanes = None
        self._dirty = None
        self._offered.clear()
        self._lane_params.clear()
        if len(heap) > 4 * len(parent_of) + 4096:       # drop stale entries now and then
            self._compact()
        return hits

    def _compact(self) -> None:
        self.heaps = {lane: [] for lane in self.heaps}
        for b, c in self.children.items():
            if not c:
                self.heaps[self.lane[b]].append((self.key[b], b))
        for heap in self.heaps.values():
            heapq.heapify(heap)
