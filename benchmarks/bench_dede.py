"""DeDe: solve time against problem size (ours with 1 and 2 worker processes, HiGHS), and, when an isolated
environment with the public `dede` package is given (DEDE_PYTHON=/path/to/python), the package on the same
separable LPs. Build that environment apart from ours (it pins old cvxpy/numpy/scipy and pulls in ray):

    python3 -m venv /tmp/dedevenv && /tmp/dedevenv/bin/pip install dede==0.1.6 "scipy<1.14" "numpy<2"
"""

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from syslab.cloud.dede import admm as A
from syslab.cloud.dede import te as T
from syslab.core.data import DataStore

PACKAGE_SCRIPT = '''
import contextlib, io, json, sys, time
import numpy as np
import dede as dd
z = np.load(sys.argv[1])
c, a, b, d = z["c"], z["a"], z["b"], z["d"]
R, D = c.shape
x = dd.Variable((R, D), nonneg=True)
prob = dd.Problem(dd.Maximize(dd.sum(dd.multiply(c, x))),
                  [a[i] @ x[i, :] <= b[i] for i in range(R)], [x[:, j].sum() <= d[j] for j in range(D)])
out = {}
for run in ("cold", "warm"):
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        val = prob.solve(num_cpus=int(sys.argv[2]), rho=1.0)
    out[run] = {"objective": abs(float(val)), "time_s": time.perf_counter() - t}
print(json.dumps(out))
'''


def te_sweep() -> None:
    g = T.load_topology(DataStore().path("dede_inputs", "UsCarrier.json"))
    print(f"{'pairs':>6} {'entries':>8} {'HiGHS s':>8} {'1 worker s':>11} {'2 workers s':>12} {'to 2% s':>8} "
          f"{'gap %':>7}")
    for pairs in (1000, 4000, 16000):
        p = T.build(g, T.gravity_demands(g, np.random.default_rng(0), pairs=pairs))
        opt = T.solve_highs(p)
        one, two = T.solve_admm(p, workers=1), T.solve_admm(p, workers=2)
        to2 = next((h[4] for h in two.history if h[5] >= 0.98 * opt.objective), two.time_s)
        print(f"{pairs:>6} {len(p.entry_edge):>8} {opt.time_s:>8.2f} {one.time_s:>11.2f} {two.time_s:>12.2f} "
              f"{to2:>8.2f} {100 * (1 - two.objective / opt.objective):>7.3f}")
    print("HiGHS grows faster than linearly in the entries; an ADMM iteration is linear, the iteration count "
          "grows slowly")


def package_comparison(python: str) -> None:
    print(f"\nthe public dede package ({python}) on random separable LPs (max c.x, rows a_i.x <= b_i, "
          "columns sum <= d_j); 2 CPUs")
    print(f"{'size':>9} {'HiGHS':>16} {'ours (serial)':>16} {'dede cold':>16} {'dede warm':>16}   objective / s")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "run_dede.py"
        script.write_text(PACKAGE_SCRIPT)
        for n in (50, 100, 200):
            rng = np.random.default_rng(n)
            c, a = rng.uniform(0, 1, (n, n)), rng.uniform(0.5, 2, (n, n))
            b, d = rng.uniform(5, 20, n), rng.uniform(0.5, 2, n)
            np.savez(Path(tmp) / "p.npz", c=c, a=a, b=b, d=d)
            lp = A.SeparableLP(c, a, b, np.ones((n, n)), d)
            h, ours = A.solve_highs(lp), A.solve_admm(lp)
            t = time.perf_counter()
            r = subprocess.run([python, str(script), str(Path(tmp) / "p.npz"), "2"], capture_output=True, text=True,
                               timeout=1800)
            if r.returncode != 0:
                print(f"{n}x{n}: the package failed: {r.stderr[-300:]}")
                continue
            pk = json.loads(r.stdout.strip().splitlines()[-1])
            cell = lambda o, s: f"{o:.2f} / {s:.2f}"                            # noqa: E731
            cold, warm = pk["cold"], pk["warm"]
            print(f"{n:>4}x{n:<4} {cell(h.objective, h.time_s):>16} {cell(ours.objective, ours.time_s):>16} "
                  f"{cell(cold['objective'], cold['time_s']):>16} {cell(warm['objective'], warm['time_s']):>16}"
                  f"   (process {time.perf_counter() - t:.0f} s)")
    print("the package reports its subproblems' objective (it returns no repaired, feasible allocation, so it can "
          "exceed the optimum); 'cold' includes ray start-up and compiling the cvxpy subproblems")


if __name__ == "__main__":
    te_sweep()
    if os.environ.get("DEDE_PYTHON"):
        package_comparison(os.environ["DEDE_PYTHON"])
    else:
        print("\n(set DEDE_PYTHON to a python with the `dede` package to compare against it)")
