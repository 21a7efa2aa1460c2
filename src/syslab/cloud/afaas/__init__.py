"""Fork in the Road: Reflections and Optimizations for Cold Start Latency in Production Serverless Systems
(AFaaS, OSDI 2025).

Ant Group with Tsinghua University; no public code, and our notes reconstruct the techniques from the
abstract (unverified): fork-based starts from a pre-initialised zygote, user-code seeds, a one-hop Function
Runtime Interface instead of the multi-hop pod path, and pooled sandbox resources.

**What runs for real here (REAL).** A small serverless platform on this machine: functions whose imports
take a few hundred milliseconds, a zygote and per-function seeds that fork instances (``seed.py``),
control-path daemons talking over Unix sockets, five hops that fsync each request versus one
(``daemon.py``), sandboxes made of real cgroups and network namespaces where the kernel allows it, emulated
under a global lock otherwise (``resources.py``), created on the critical path or pooled. Cold starts are
measured end to end. **Not real:** Kubernetes itself (the hops and persistence emulate its path), and
Ant Group's production scale.
"""

from syslab.cloud.afaas import reproduce as _reproduction
from syslab.core.claims import Fidelity, System

SYSTEM = System(
    key="afaas",
    name="Fork in the Road (AFaaS)",
    paper="Fork in the Road: Reflections and Optimizations for Cold Start Latency in Production Serverless Systems",
    venue="OSDI 2025",
    domain="cloud",
    fidelity=Fidelity.REAL,
    real="a serverless platform on this machine: zygote and seed fork, one-hop vs five-hop control path with "
         "fsync, real cgroups and network namespaces (when permitted), pooled or fresh; cold starts measured",
    modelled="nothing timed; the multi-hop path stands in for Kubernetes' pod path",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
)
