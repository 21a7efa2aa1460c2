"""Wall time and peak memory of the stragglers what-if analysis.

Reference: the public artifact (ByteDance-Seed/StragglerAnalysis) takes about 1-2 s and 160-250 MB per trace
(figures from the task description of syslab's issue #2; not re-measured here).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np

from syslab.core.data import DataStore
from syslab.training import stragglers as S

CHILD = """
import json, sys, time
def hwm_mb():  # peak RSS of this process image (VmHWM resets at exec, unlike ru_maxrss)
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024
t0 = time.perf_counter()
from syslab.training import stragglers as S
imported = time.perf_counter()
rss_import = hwm_mb()
S.analyze_files(sys.argv[1], sys.argv[2])
done = time.perf_counter()
print(json.dumps({"import_s": imported - t0, "analyze_s": done - imported, "rss_after_import_mb": rss_import,
                  "max_rss_mb": hwm_mb()}))
"""


def real_traces() -> None:
    store = DataStore()
    if not store.has("straggler_traces"):
        print("straggler_traces not found: set SYSLAB_DATA")
        return
    print(f"{'trace':6} {'rows':>8} {'steps x dp':>10} {'analyze s (median of 3)':>24} {'alloc peak MB':>14} "
          f"{'process max RSS MB (after imports)':>35}")
    for name in ("SE", "ST", "AR"):
        trace = store.path("straggler_traces", f"trace-{name}.parquet")
        meta = store.path("straggler_traces", f"meta-{name}.yaml")
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            a = S.analyze_files(trace, meta)
            times.append(time.perf_counter() - t0)
        tracemalloc.start()
        S.analyze_files(trace, meta)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        child = json.loads(subprocess.run([sys.executable, "-c", CHILD, str(trace), str(meta)], check=True,
                                          capture_output=True, text=True).stdout)
        df = S.load_trace(trace)
        print(f"{name:6} {len(df):>8} {len(a.steps):>4} x {df.dp_rank.max() + 1:<4} {statistics.median(times):>24.3f} "
              f"{peak / 2**20:>14.1f} {child['max_rss_mb']:>19.0f} ({child['rss_after_import_mb']:.0f})")


def scaling() -> None:
    print("\nscaling on synthetic 1F1B traces (pp=4, 8 micro-batches): time vs steps x DP ranks")
    rows = []
    for steps, dp in ((10, 2), (20, 4), (40, 8), (80, 8), (80, 16)):
        df, meta = S.synthesize_trace(S.SynthConfig(pp=4, dp=dp, microbatches=8, steps=steps), "last-stage",
                                      np.random.default_rng(0))
        t0 = time.perf_counter()
        S.analyze(df, meta)
        dt = time.perf_counter() - t0
        rows.append((steps * dp, dt))
        print(f"  steps={steps:3} dp={dp:3} ops={len(df):8}  {dt:6.2f} s")
    x, y = np.log([r[0] for r in rows]), np.log([r[1] for r in rows])
    print(f"  fitted exponent of time vs steps x dp: {np.polyfit(x, y, 1)[0]:.2f} "
          "(each simulation is O(ops x copies); attribution adds one simulation per DP rank)")


if __name__ == "__main__":
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"base RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    real_traces()
    scaling()
