"""TrainCheck: Training with Confidence: Catching Silent Errors in Deep Learning Training with Automated
Proactive Checks (OSDI 2025).

Jiang, et al. (University of Michigan, OrderLab); artifact OrderLab/TrainCheck. Written from the paper's
description and our notes; no artifact code is reused, and the ``traincheck`` package is not a dependency.

**What it does.** Silent errors (a missing ``zero_grad``, ranks drifting apart, a layer frozen by mistake)
let training run on while the model quietly goes wrong, and loss curves are too noisy to show it early.
TrainCheck traces a few known-good runs, infers *invariants* (relations that always hold there, each with a
precondition that explains the legitimate exceptions) and checks new runs against them, reporting the first
violation with its iteration, rank and the APIs or variables involved.

**What runs for real here (REAL).** Everything, on CPU PyTorch: the tracer (``instrument.py``; torch's
global optimizer and module hooks plus wrappers, injected into every Python process of a command through a
``sitecustomize`` bootstrap, so scripts run unedited, ``torch.multiprocessing`` children included), the
relation templates, precondition inference and checking (``relations.py``), online checking inside the traced
processes that stops a run as the iteration that broke an invariant ends (``online.py``; ``check --online``),
and a suite of small training programs with thirteen silent bugs and their clean twins (``programs/``),
data-parallel ones on two gloo processes. Tools: ``syslab traincheck collect | learn | check | show``; Python
API in ``api.py``.

**What differs from the paper.** Our templates are TrainCheck's in the forms our traces support (sequence,
contain, consistent over time and across ranks, distinct arguments, thresholds); preconditions follow the
paper's recursive search and may be disjunctions, each conjunction shortened by greedy set cover; state is
summarised at API boundaries (hashes of parameter bytes), not tracked through proxies; online, each process
checks only its own rank, so cross-rank invariants are checked on the trace after the run. The injected bugs
are miniatures of the paper's classes; its real-world cases are replayed as our own miniature programs
(``realworld.py``, ``programs/realworld/``), not the artifact's workloads.
"""

from syslab.core.claims import Fidelity, System
from syslab.training.traincheck import reproduce as _reproduction

SYSTEM = System(
    key="traincheck",
    name="TrainCheck",
    paper="Training with Confidence: Catching Silent Errors in Deep Learning Training with Automated Proactive "
          "Checks",
    venue="OSDI 2025",
    domain="training",
    fidelity=Fidelity.REAL,
    real="tracing of unedited PyTorch programs (single process and 2-rank gloo DDP), invariant inference with "
         "preconditions, offline and online checking; thirteen silent bugs and their clean twins",
    modelled="nothing",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
    requires=("torch",),
)
