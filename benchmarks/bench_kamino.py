"""Kamino's discrete-event simulation: requests simulated per second per scheduler, and how it grows with the
number of allocators (Kamino's decision looks at every allocator: O(K) per request)."""

import time

import numpy as np

from syslab.cloud.kamino import sim as S
from syslab.cloud.kamino import workload as W

if __name__ == "__main__":
    n = 50_000
    rng = np.random.default_rng(0)
    arr, sigs = W.mmpp_arrivals(n, rng), W.zipf_signatures(n, 2000, 1.1, rng)
    print(f"{n} requests at 70% load; k requests simulated / s")
    print(f"{'allocators':>10} " + " ".join(f"{s:>16}" for s in S.SCHEDULERS))
    for k in (4, 8, 32):
        cluster = S.Cluster(allocators=k)
        rate = S.rate_for_load(arr, sigs, 0.7, cluster)
        speeds = []
        for s in S.SCHEDULERS:
            t = time.perf_counter()
            S.simulate(arr / rate, sigs, s, cluster)
            speeds.append(n / (time.perf_counter() - t) / 1e3)
        print(f"{k:>10} " + " ".join(f"{v:>16.0f}" for v in speeds))
