"""CrossPipe: Towards Optimal Pipeline Schedules for Cross-Datacenter Training (ATC 2025).

Chen, Kubicek, Huang and Hoefler, ETH Zurich (SPCL); arXiv 2507.00217. Written from the paper's text and our
notes; no artifact code is reused.

**What it does.** When a pipeline spans datacenters, a static schedule such as 1F1B puts a cross-DC transfer
on its critical path once per micro-batch. CrossPipe models the links explicitly (latency alpha, which delays
a message, and bandwidth beta, which occupies the link), and builds schedules for that model: optimal ones
by a MILP, or near-optimal ones by a greedy list scheduler with phase priorities that plays the iteration
out under the delays.

**What runs for real here (HYBRID).** The schedule generators (1F1B, interleaved 1F1B, ZB-H1 and ZB-V style
static orders; the greedy; the MILP on HiGHS) and the event-driven evaluation of every schedule on the shared
pipeline simulator (``training/pipeline.py``), with a validator for dependencies, overlaps and memory.
**Modelled:** GPU compute as normalised F, B and W times, and the WAN as alpha-beta links; the table of real
operating points takes T_F from the shared GPU cost model (``core.gpu``). The paper's testbed runs (Alps GH200) and its
asynchronous NCCL engine are not reproduced.
"""

from syslab.core.claims import Fidelity, System
from syslab.training.crosspipe import reproduce as _reproduction

SYSTEM = System(
    key="crosspipe",
    name="CrossPipe",
    paper="CrossPipe: Towards Optimal Pipeline Schedules for Cross-Datacenter Training",
    venue="ATC 2025",
    domain="training",
    fidelity=Fidelity.HYBRID,
    real="schedule generators (static, greedy, MILP via HiGHS) and the event-driven evaluation and validation "
         "of every schedule",
    modelled="GPU compute as normalised F/B/W times; cross-datacenter links as alpha-beta",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
)
