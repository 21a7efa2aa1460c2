"""Block look-ups per second of the prefix-cache simulator (target: >= 500k/s), per policy and cache size."""

import time

import numpy as np

from syslab.serving import kvcache_wild as kv

if __name__ == "__main__":
    tr = kv.generate(kv.TwinConfig("A", hours=0.5, requests_per_s=3.0), np.random.default_rng(0))
    profile, evaluate = tr.split(float(tr.timestamp[0] + (tr.timestamp[-1] - tr.timestamp[0]) / 2))
    wa = kv.fit_wa(profile)
    unique = len(np.unique(np.concatenate(tr.blocks)))
    print(f"{len(tr)} requests, {sum(len(b) for b in tr.blocks)} block look-ups, {unique} unique blocks")
    print(f"{'cache':>6} " + " ".join(f"{p:>10}" for p in kv.POLICIES) + "   (k look-ups / s)")
    for frac in (0.02, 0.1, 0.3):
        cap = int(frac * unique)
        rates = []
        for p in kv.POLICIES:
            t0 = time.perf_counter()
            r = kv.replay(tr, cap, p, wa)
            rates.append(r.lookups / (time.perf_counter() - t0) / 1e3)
        print(f"{frac:>6.0%} " + " ".join(f"{x:>10.0f}" for x in rates))
    print("each look-up is O(1) dict work; each inserted or touched block one heap push (O(log n));"
          " WA scores one queue head per request category at each eviction")
