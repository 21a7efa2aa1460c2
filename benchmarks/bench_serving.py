"""Replay speed of the serving simulator (serving/engine.py).

Target: the full one-hour azure_llm_2023 trace on one Llama-3-8B / H100 instance in under 10 s on one core.
Also: how wall time grows with the number of requests and with output tokens per request, and on an
overloaded static fleet (queues grow without bound), where routing must not rescan every queue per arrival:
each arrival costs O(instances x batch), so time grows linearly once the batches are full (measured
2026-12-04 on this 2-core machine: 1k 0.1 s, 4k 0.7 s, 16k 3.3 s; before the engine kept each instance's
load incrementally: 0.3 / 3.0 / 14 s).
"""

import time

import numpy as np
import pandas as pd

from syslab.core.data import DataStore
from syslab.core.hardware import gpu
from syslab.core.models import model
from syslab.core.workloads import load_azure_llm
from syslab.serving import engine as E

COST = E.IterationCost(model("llama3-8b"), gpu("H100-SXM"))


def replay(df, instances: int = 1) -> tuple[float, E.ServingResult]:
    reqs = E.requests_from_frame(df)
    t0 = time.perf_counter()
    res = E.simulate(reqs, lambda i, s, r: E.Instance(COST, COST.kv_capacity_tokens(), id=i, start_s=s, ready_s=r),
                     initial_instances=instances)
    return time.perf_counter() - t0, res


def overloaded(n: int, rate: float = 300.0, seed: int = 0) -> pd.DataFrame:
    """n requests at ``rate`` per second (4 instances serve ~60): the queues grow for the whole run."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"arrival_s": np.sort(rng.uniform(0, n / rate, n)), "prompt_tokens": rng.integers(100, 2000, n),
                         "output_tokens": rng.integers(50, 400, n)})


if __name__ == "__main__":
    store = DataStore()
    if not store.has("azure_llm_2023"):
        raise SystemExit("azure_llm_2023 not found: set SYSLAB_DATA")
    df = load_azure_llm(store.path("azure_llm_2023", "azure_conv_2023.csv"))
    wall, res = replay(df)
    print(f"full hour: {len(df)} requests, {df.output_tokens.sum()} output tokens, {res.iterations} iterations "
          f"simulated in {wall:.2f} s (p99 TTFT {res.ttft_quantile(0.99) * 1e3:.0f} ms)")
    print("\nwall time vs requests (first n requests of the hour):")
    for frac in (0.25, 0.5, 1.0):
        n = int(len(df) * frac)
        w, _ = replay(df.iloc[:n])
        print(f"  {n:6} requests: {w:5.2f} s")
    print("\nwall time vs output tokens per request (all requests, outputs scaled):")
    for k in (1, 2, 4):
        scaled = df.assign(output_tokens=df.output_tokens * k)
        w, r = replay(scaled)
        print(f"  outputs x{k}: {scaled.output_tokens.sum():9} tokens, {r.iterations:8} iterations, {w:5.2f} s")
    print("\noverloaded static fleet (4 instances, 300 requests/s): wall time vs requests")
    for n in (1000, 4000, 16000):
        w, r = replay(overloaded(n), instances=4)
        print(f"  {n:6} requests: {w:5.2f} s (median TTFT {r.ttft_quantile(0.5):5.1f} s)")
    print("decode-only spans are fast-forwarded: cost follows events (arrivals, completions, prefill chunks),"
          " not tokens")
