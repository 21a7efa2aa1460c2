"""Burst Computing: Quick, Sudden, Massively Parallel Processing on Serverless Resources (USENIX ATC 2025).

A burst launches N workers at once, packed g to a container; the middleware keeps messages inside a pack in
memory (zero-copy) and sends only cross-pack messages through a remote broker, with collectives (broadcast,
tree reduce, gather, scatter, all-to-all) built on that. PageRank is the application.

**What runs for real (REAL at small scale).** The middleware and its collectives (``comm.py``); packs as
fresh interpreter processes with workers as threads sharing the pack's memory, one per worker in FaaS mode
(``job.py``); a real Redis server on loopback as the broker, which also counts the remote bytes and messages
(``resp.py``); PageRank checked against numpy (``pagerank.py``). **Emulated:** the network between workers
and the broker (RTT and per-connection bandwidth are assumptions, swept in the report). **Modelled:** the
paper's 256-worker scale, by the analytic remote-traffic model.
"""

from syslab.cloud.burst import reproduce as _reproduction
from syslab.core.claims import Fidelity, System

SYSTEM = System(
    key="burst",
    name="Burst Computing",
    paper="Burst Computing: Quick, Sudden, Massively Parallel Processing on Serverless Resources",
    venue="ATC 2025",
    domain="cloud",
    fidelity=Fidelity.REAL,
    real="16 PageRank workers as processes/threads, group invocation, the collectives middleware, a real Redis "
         "broker counting remote traffic, ranks checked against numpy",
    modelled="network RTT and bandwidth to the broker (emulated by delays); 256-worker scale (analytic model)",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
    requires=("redis-server",),
)
