"""Kamino's latency-driven, cache-aware scheduling of allocation requests, in a discrete-event simulation.

A front end dispatches each VM-allocation request to one of K allocators. Each allocator serves its FIFO queue
one request at a time and keeps a cache of rule-evaluation results keyed by the request's signature (VM type
+ constraints): LRU with a capacity, and entries unused for ``idle_ttl_s`` are dropped (a cache that refreshes
its entries after every allocation does not keep cold ones). Service time of a request:

    processing (c_hit if its signature is cached when it starts, else c_miss; lognormal noise)
    + update_s x entries cached    (the allocation changes the inventory; every cached entry is refreshed)

so every duplicated entry costs time on each request and memory. Schedulers:

* round-robin, join-shortest-queue (JSQ), power-of-two choices, consistent hashing by signature;
* **Kamino**: argmin over allocators of ExpectedTime = Processing + Queueing + Remaining (the paper's
  decomposition), where Processing predicts a hit iff the signature is cached *or already queued* at that
  allocator (the queued one will have filled the cache: the partial indicator of cache state), Queueing is
  the sum of the queued requests' predictions, Remaining the in-service request's prediction minus its
  elapsed time, and the hit and miss costs are EWMAs of each allocator's measured service times (they absorb
  the update overhead). Ties go to the lower allocator id.

The paper's algorithm is not public; this follows our notes' reconstruction from the abstract (unverified).
Everything is deterministic given the seed. Cost: O(requests x K) time, O(K x cache) memory; 50k requests
take ~1 s per scheduler.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from syslab.core.errors import InputError


@dataclass(frozen=True)
class Costs:
    c_hit_s: float = 1e-3         # our notes' suggested set-up: hits 1 ms,
    c_miss_s: float = 20e-3       # misses 20 ms (rules re-evaluated over the inventory),
    update_s: float = 1e-5        # 0.01 ms of refresh per cached entry per allocation
    noise_sigma: float = 0.3      # lognormal spread of processing times (ours)

    def __post_init__(self) -> None:
        if min(self.c_hit_s, self.c_miss_s) <= 0 or self.update_s < 0 or self.noise_sigma < 0:
            raise InputError(f"costs {self}.", field="costs", fix="c_hit and c_miss > 0, update and noise >= 0.")


@dataclass(frozen=True)
class Cluster:
    allocators: int = 8
    cache_entries: int = 64
    idle_ttl_s: float = 2.0
    costs: Costs = field(default_factory=Costs)

    def __post_init__(self) -> None:
        if self.allocators < 1 or self.cache_entries < 1 or self.idle_ttl_s <= 0:
            raise InputError(f"{self.allocators} allocators, cache {self.cache_entries}, ttl {self.idle_ttl_s}.",
                             field="cluster", fix="at least one allocator, a cache of >= 1 entry, a positive TTL.")


class Allocator:
    def __init__(self, index: int, cluster: Cluster):
        self.index = index
        self.cluster = cluster
        self.cache: OrderedDict[int, float] = OrderedDict()      # signature -> last use
        self.queue: deque[tuple[int, int, float]] = deque()       # (request, signature, predicted service)
        self.queued_sigs: dict[int, int] = {}                     # signature -> count waiting
        self.queued_pred_s = 0.0
        self.busy_until = 0.0
        self.in_service: tuple[float, float] | None = None        # (start, predicted service)
        costs = cluster.costs
        self.ewma = {True: costs.c_hit_s, False: costs.c_miss_s}  # seeded at the nominal costs, then learned

    def expire(self, now: float) -> None:
        ttl = self.cluster.idle_ttl_s
        while self.cache and next(iter(self.cache.values())) < now - ttl:
            self.cache.popitem(last=False)

    def predicts_hit(self, sig: int) -> bool:
        return sig in self.cache or sig in self.queued_sigs

    def expected_time(self, sig: int, now: float) -> float:
        """Processing + Queueing + Remaining (the decision rule)."""
        remaining = 0.0
        if self.in_service is not None:
            start, pred = self.in_service
            remaining = max(0.0, pred - (now - start))
        return self.ewma[self.predicts_hit(sig)] + self.queued_pred_s + remaining

    def load(self) -> int:
        return len(self.queue) + (self.in_service is not None)


class ConsistentHash:
    """A ring of 100 virtual nodes per allocator (md5 positions); a signature goes to the next node."""

    def __init__(self, allocators: int, replicas: int = 100):
        ring = sorted((self._h(f"{a}-{r}"), a) for a in range(allocators) for r in range(replicas))
        self.points = [p for p, _ in ring]
        self.owner = [a for _, a in ring]

    @staticmethod
    def _h(key: str) -> int:
        return int.from_bytes(hashlib.md5(key.encode()).digest()[:8], "big")

    def __call__(self, sig: int) -> int:
        i = bisect.bisect(self.points, self._h(f"sig-{sig}")) % len(self.points)
        return self.owner[i]


SCHEDULERS = ("round-robin", "JSQ", "power-of-two", "consistent-hash", "Kamino")


@dataclass
class Outcome:
    scheduler: str
    latency_s: np.ndarray           # per request, arrival to completion
    hits: np.ndarray                # per request, was it a cache hit when served
    service_s: np.ndarray           # per request, time in service (processing + cache refresh)
    assigned: np.ndarray            # per request, the allocator it was sent to
    entries_time_avg: float         # time-average of cached entries over all allocators (memory proxy)
    per_allocator: np.ndarray       # requests served by each allocator

    @property
    def miss_rate(self) -> float:
        return float(1 - self.hits.mean())

    def summary(self) -> dict[str, float]:
        lat = self.latency_s * 1e3
        return {"mean_ms": float(lat.mean()), "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)), "miss_rate": self.miss_rate,
                "entries": self.entries_time_avg, "max_share": float(self.per_allocator.max() / len(lat))}


def simulate(arrivals_s: np.ndarray, signatures: np.ndarray, scheduler: str, cluster: Cluster = Cluster(),
             seed: int = 0) -> Outcome:
    """Play the requests (arrival times, non-decreasing; integer signatures) through ``scheduler``."""
    if scheduler not in SCHEDULERS:
        raise InputError(f"unknown scheduler {scheduler!r}.", field="scheduler", fix=f"one of {SCHEDULERS}.")
    n = len(arrivals_s)
    if n != len(signatures) or n == 0 or np.any(np.diff(arrivals_s) < 0):
        raise InputError("arrivals and signatures must be equal-length, non-empty, arrivals non-decreasing.",
                         field="requests", fix="sort the requests by arrival time.")
    rng = np.random.default_rng(seed)
    noise = rng.lognormal(-cluster.costs.noise_sigma ** 2 / 2, cluster.costs.noise_sigma, n) \
        if cluster.costs.noise_sigma > 0 else np.ones(n)
    pick_rng = np.random.default_rng(seed + 1)
    k = cluster.allocators                                       # power-of-two: two distinct allocators each
    first = pick_rng.integers(0, k, n)
    second = (first + 1 + pick_rng.integers(0, max(k - 1, 1), n)) % k if k > 1 else first
    allocs = [Allocator(i, cluster) for i in range(cluster.allocators)]
    ring = ConsistentHash(cluster.allocators)
    done = np.zeros(n)
    service_s = np.zeros(n)
    assigned = np.zeros(n, dtype=np.int64)
    hits = np.zeros(n, bool)
    served = np.zeros(cluster.allocators, int)
    events: list[tuple[float, int, int]] = []                  # (time, allocator, request) completions
    entries_area, last_t = 0.0, float(arrivals_s[0])
    rr = 0

    def start(a: Allocator, now: float) -> None:
        req, sig, pred = a.queue.popleft()
        a.queued_sigs[sig] -= 1
        if not a.queued_sigs[sig]:
            del a.queued_sigs[sig]
        a.queued_pred_s -= pred
        a.expire(now)
        hit = sig in a.cache
        hits[req] = hit
        c = cluster.costs
        service = (c.c_hit_s if hit else c.c_miss_s) * noise[req] + c.update_s * len(a.cache)
        service_s[req] = service
        a.cache[sig] = now
        a.cache.move_to_end(sig)
        if len(a.cache) > cluster.cache_entries:
            a.cache.popitem(last=False)
        a.in_service = (now, pred)
        a.busy_until = now + service
        heapq.heappush(events, (a.busy_until, a.index, req))
        a.ewma[hit] += 0.1 * (service - a.ewma[hit])           # measured by the allocator, reported back

    def finish_until(t: float) -> None:
        nonlocal entries_area, last_t
        while events and events[0][0] <= t:
            now, ai, req = heapq.heappop(events)
            entries_area += sum(len(a.cache) for a in allocs) * (now - last_t)
            last_t = now
            a = allocs[ai]
            done[req] = now
            served[ai] += 1
            a.in_service = None
            if a.queue:
                start(a, now)

    for req in range(n):
        now, sig = float(arrivals_s[req]), int(signatures[req])
        finish_until(now)
        for a in allocs:
            a.expire(now)
        entries_area += sum(len(a.cache) for a in allocs) * (now - last_t)
        last_t = now
        if scheduler == "round-robin":
            a = allocs[rr % len(allocs)]
            rr += 1
        elif scheduler == "JSQ":
            a = min(allocs, key=lambda x: (x.load(), x.index))
        elif scheduler == "power-of-two":
            a = min(allocs[first[req]], allocs[second[req]], key=lambda x: (x.load(), x.index))
        elif scheduler == "consistent-hash":
            a = allocs[ring(sig)]
        else:
            a = min(allocs, key=lambda x: (x.expected_time(sig, now), x.index))
        assigned[req] = a.index
        pred = a.ewma[a.predicts_hit(sig)]
        a.queue.append((req, sig, pred))
        a.queued_sigs[sig] = a.queued_sigs.get(sig, 0) + 1
        a.queued_pred_s += pred
        if a.in_service is None:
            start(a, now)
    finish_until(np.inf)
    span = max(last_t - float(arrivals_s[0]), 1e-12)
    return Outcome(scheduler, done - arrivals_s, hits, service_s, assigned, entries_area / span, served)


def rate_for_load(unit_arrivals: np.ndarray, signatures: np.ndarray, load: float, cluster: Cluster,
                  rounds: int = 3, prefix: int = 20000) -> float:
    """The arrival rate at which ``load`` = rate x (JSQ's mean service time) / K: one fixed reference for every
    scheduler (JSQ's service time depends on its hit rate, which depends on the rate: a few fixed-point
    rounds on a prefix of the stream). ``unit_arrivals`` has mean rate 1."""
    if not 0 < load < 1.5:
        raise InputError(f"load {load}.", field="load", fix="use an offered load in (0, 1.5), e.g. 0.7.")
    k = min(prefix, len(unit_arrivals))
    mean_service = cluster.costs.c_miss_s
    for _ in range(rounds):
        rate = load * cluster.allocators / mean_service
        mean_service = float(simulate(unit_arrivals[:k] / rate, signatures[:k], "JSQ", cluster).service_s.mean())
    return load * cluster.allocators / mean_service
