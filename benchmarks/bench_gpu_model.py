"""The GPU cost model: its validation table, and how fast systems can call it.

Prints the model's prediction beside every published measurement it was not fitted on (``core.gpu.validation``),
then the cost of one call of each kernel function (systems call them per operation, per iteration or per
candidate plan) and of a vectorised GEMM sweep. Cost growth: every call is O(1); ``gemm_s`` over an array of m is
O(len) numpy work.
"""

import time

import numpy as np

from syslab.core import gpu as G
from syslab.core.gpu.validation import checks, summary
from syslab.core.hardware import gpu
from syslab.core.models import model


def per_call_us(fn, repeats: int = 2000) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats * 1e6


if __name__ == "__main__":
    items = checks()
    print(f"{'GPU':14s} {'measurement':58s} {'measured':>9s} {'model':>9s} {'error':>6s}")
    for c in items:
        print(f"{c.gpu:14s} {c.what[:58]:58s} {c.measured:9.4g} {c.predicted:9.4g} {c.rel_error:+6.0%}")
    s = summary(items)
    print(f"\n{s['checks']} checks: median |error| {s['median_abs_rel_error']:.1%}, 90th percentile "
          f"{s['p90_abs_rel_error']:.1%}, within 25%: {s['within_25pct']:.0%}\n")
    a100 = gpu("A100-SXM-80GB")
    fm = G.ForwardModel(model("llama2-70b"), a100, tp=8)
    ms = np.arange(1, 8193)
    for name, fn in [("gemm_s (scalar)", lambda: G.gemm_s(2048, 8192, 8192, a100)),
                     ("gemm_s (8192 values of m)", lambda: G.gemm_s(ms, 8192, 8192, a100)),
                     ("attention_s", lambda: G.attention_s(4, 4096, 32, 128, a100)),
                     ("decode_attention_s", lambda: G.decode_attention_s(1e5, 8, 128, a100)),
                     ("collective_s", lambda: G.collective_s("allreduce", 1e7, 8, a100)),
                     ("ForwardModel.forward_s (memoised GEMMs)", lambda: fm.forward_s(2048, 1e6, 1e6))]:
        print(f"{name:42s} {per_call_us(fn, 200 if '8192' in name else 2000):9.1f} us per call")
