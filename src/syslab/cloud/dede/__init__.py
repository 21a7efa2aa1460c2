"""DeDe: Decouple and Decompose, Scaling Resource Allocation (Xu, Yu, Yan; OSDI 2025).

Separable allocation problems (per-resource and per-demand constraints, a sum of utilities) are split by
giving each side its own copy of the allocation and alternating exact per-resource and per-demand
subproblems, ADMM-style, in parallel.

**What runs for real here (REAL).** The ADMM with exact vectorised subproblems and residual balancing
(``admm.py``); traffic engineering on the real WAN topologies with consensus at (edge, path) entries and the
fix pass (``te.py``), against the monolithic LP on HiGHS and POP's random partitioning; cluster scheduling
with Gavel's max-min fairness on the real throughput matrix (``cluster.py``); subproblems dealt to forked
worker processes, or to Ray actors when asked, sharing the ADMM state (``parallel.py``). Everything is timed
on this machine. **Not here:** Gurobi (HiGHS is the reference optimum), the paper's larger machines and
problem sizes, and the load-balancing workload.
"""

from syslab.cloud.dede import reproduce as _reproduction
from syslab.core.claims import Fidelity, System

SYSTEM = System(
    key="dede",
    name="DeDe",
    paper="Decouple and Decompose: Scaling Resource Allocation with DeDe",
    venue="OSDI 2025",
    domain="cloud",
    fidelity=Fidelity.REAL,
    real="the decouple-and-decompose ADMM in numpy with exact subproblems, in worker processes; traffic "
         "engineering on real WAN topologies and cluster scheduling on real throughputs; HiGHS and POP baselines",
    modelled="nothing; gravity-model traffic and Gavel-style jobs are generated (no traffic matrices or job "
             "traces ship with the data)",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
)
