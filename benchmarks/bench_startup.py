"""End-to-end wall time of short CLI commands, interpreter start included: ``syslab --help``, ``syslab list``
and a whole ``syslab stragglers analyze`` per real trace (median of 5 runs each).

Reference for the last: the public artifact (ByteDance-Seed/StragglerAnalysis) takes about 1.5 s per trace on
this class of machine (syslab issue #13); the target is well under half of that.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from syslab.core.data import DataStore


def wall_s(args: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "syslab", *args], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    print(f"{'command':52} {'median s':>9}")
    print(f"{'syslab --help':52} {wall_s(['--help']):9.2f}")
    print(f"{'syslab list --json':52} {wall_s(['list', '--json']):9.2f}")
    store = DataStore()
    if not store.has("straggler_traces"):
        print("straggler_traces not found: set SYSLAB_DATA")
        return
    for name in ("SE", "ST", "AR"):
        trace = store.path("straggler_traces", f"trace-{name}.parquet")
        meta = store.path("straggler_traces", f"meta-{name}.yaml")
        cmd = ["stragglers", "analyze", "--trace", str(trace), "--meta", str(meta), "--json"]
        print(f"{'syslab stragglers analyze (' + name + ', whole command)':52} {wall_s(cmd):9.2f}")


if __name__ == "__main__":
    main()
