"""Cost of the shared pipeline simulator (``training/pipeline.py`` over ``core/timeline.py``).

Target set for the schedule simulator: build and simulate 32 stages x 256 micro-batches in under a second.
``simulate`` is an event loop, O(V m log(V m)) for V virtual stages and m micro-batches; the greedy policy
adds a scan of the device's ready set per decision.
"""

import time

import numpy as np

from syslab.core.timeline import schedule
from syslab.training import pipeline as P


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    print(f"{'schedule':<34} {'stages':>6} {'mbs':>5} {'ops':>7} {'simulate s':>10} {'validate s':>10} "
          f"{'replay s':>9}")
    for pp, m in ((8, 64), (32, 256)):
        f = rng.uniform(0.5, 1.5, (pp, m))
        links = P.cross_dc_links(pp, [pp // 2], P.Link(2.0, 0.5))
        cases = {
            "1F1B, alpha-beta cross-DC link": (P.Stages(f, 2 * f, message_bytes=1.0, links=links),
                                               P.orders_1f1b(pp, m)),
            "interleaved 1F1B (2 chunks)": (P.Stages(np.tile(f / 2, (2, 1)), np.tile(f, (2, 1)),
                                                     placement=[v % pp for v in range(2 * pp)]),
                                            P.orders_interleaved(pp, 2, m)),
            "greedy, B/W split, V placement": (P.uniform_stages(pp, m, 1, 1, 1, chunks=2, v_shape=True,
                                                                message_bytes=1.0, links=links),
                                               P.Greedy(float(pp), phases=True)),
        }
        for name, (stages, policy) in cases.items():
            sch, t_sim = timed(lambda stages=stages, policy=policy: P.simulate(stages, policy))
            problems, t_val = timed(lambda sch=sch, pp=pp: P.validate(sch, memory_limit=float(2 * pp)))
            _, t_rep = timed(lambda sch=sch: schedule(list(sch.ops.values())))
            print(f"{name:<34} {pp:>6} {m:>5} {len(sch.ops):>7} {t_sim:>10.3f} {t_val:>10.3f} {t_rep:>9.3f}"
                  + (f"  {len(problems)} problems" if problems else ""))
