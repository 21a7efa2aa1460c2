"""Scheduling cost of core.timeline on 1F1B pipelines (the substrate of the pipeline-schedule systems).

Target set for the shared schedule simulator: 32 stages x 256 micro-batches in under a second.
"""

import time

import numpy as np

from syslab.core.timeline import schedule
from syslab.training.pipeline import activation_peaks, interleaved, one_f_one_b, validate

if __name__ == "__main__":
    rng = np.random.default_rng(0)
    print(f"{'stages':>6} {'micro-batches':>13} {'ops':>7} {'build s':>8} {'schedule s':>10} {'critical path s':>15}")
    for pp, m in ((4, 32), (8, 64), (16, 128), (32, 256), (64, 256)):
        f = rng.uniform(0.5, 1.5, (pp, m))
        t0 = time.perf_counter()
        ops = one_f_one_b(f, 2 * f, p2p_s=0.01)
        t1 = time.perf_counter()
        s = schedule(ops)
        t2 = time.perf_counter()
        s.critical_path()
        t3 = time.perf_counter()
        print(f"{pp:>6} {m:>13} {len(ops):>7} {t1 - t0:>8.3f} {t2 - t1:>10.3f} {t3 - t2:>15.3f}")
    print("cost is linear in ops + dependency edges (one Kahn pass)")
    print("\ninterleaved 1F1B (2 chunks per stage), with validation and memory accounting")
    for pp, m in ((8, 64), (32, 256)):
        f = rng.uniform(0.5, 1.5, (pp, m))
        t0 = time.perf_counter()
        s = schedule(interleaved(f, 2 * f, 2, p2p_s=0.01))
        t1 = time.perf_counter()
        problems = validate(s)
        peak = activation_peaks(s, 0.5)["stage0"]                 # in stage-activations (1F1B's stage 0: pp)
        t2 = time.perf_counter()
        print(f"{pp:>6} stages x {m:>4} micro-batches: build + schedule {t1 - t0:.3f} s, validate + memory "
              f"{t2 - t1:.3f} s ({len(problems)} problems; stage 0 holds {peak:g} micro-batches' activations, "
              f"1F1B {pp})")
