"""Kamino: Efficient VM Allocation at Scale with Latency-Driven Cache-Aware Scheduling (OSDI 2025).

Rutgers, Microsoft Research and Azure; no public code, and our notes reconstruct the scheduler from the
abstract (unverified). A front end sends each allocation request to the allocator with the lowest expected
end-to-end latency, Processing + Queueing + Remaining, where processing is predicted a cache hit when the
request's signature is cached at that allocator or already queued there.

**What runs for real (HYBRID).** The scheduler and its baselines, the LRU caches with idle expiry and per-entry
refresh work, the queues and the EWMA cost estimators, in a deterministic discrete-event simulation
(``sim.py``). **Modelled:** the allocators' service times (hit 1 ms, miss 20 ms, 0.01 ms per cached entry per
allocation, lognormal noise) and the workload: no Kamino trace is public, so requests are synthetic (Zipf
signatures with drift, bursty arrivals; ``workload.py``) unless you pass your own.
"""

from syslab.cloud.kamino import reproduce as _reproduction
from syslab.core.claims import Fidelity, System

SYSTEM = System(
    key="kamino",
    name="Kamino",
    paper="Kamino: Efficient VM Allocation at Scale with Latency-Driven Cache-Aware Scheduling",
    venue="OSDI 2025",
    domain="cloud",
    fidelity=Fidelity.HYBRID,
    real="the latency-driven cache-aware scheduler and four baselines, LRU caches with refresh work, queues and "
         "EWMA cost estimates, in a discrete-event simulation",
    modelled="allocator service times (hit, miss, per-entry refresh) and a synthetic request stream",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
)
