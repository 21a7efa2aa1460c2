"""GreyHound: Hunting Fail-Slows in Hybrid-Parallel Training at Scale (ATC 2025).

Wu, et al. (HKUST and Alibaba); artifact wutianyuan1/Greyhound (an earlier version: FALCON, arXiv
2410.12588). Written from the paper's description and our notes; no artifact code is reused.

**What it does.** GPUs and links in big hybrid-parallel jobs more often slow down than fail. GreyHound tracks
iteration time from the stream of collective calls alone (no framework change), detects slowdowns with
Bayesian change-point detection, localises the slow GPU or link, and mitigates with a ladder of ever more
expensive actions chosen by a ski-rental rule: do nothing, rebalance micro-batches across DP groups,
re-partition pipeline stages, checkpoint and restart.

**What runs for real here (HYBRID).** Step 1 (ACF period finding with the exact-repeat check) on real
collective-call logs built from the ``straggler_traces`` dataset and on a live four-process gloo job; our
own BOCD (Student-t, constant hazard, truncated run lengths) with the paper's validation; the S2 solver
(HiGHS) and S3 solver (exact); the ski-rental controller. **Modelled:** the job that suffers the fail-slow
and the cost of each action (``mitigate.Costs``: the paper's formulas, our sizes and bandwidths), in an
iteration-level simulation, with GreyHound-Detect running inside it on noisy iteration times; detection is
scored on SYNTHETIC series (no production trace is public). Localisation applies the artifact's root-cause rule
to modelled, noisy micro-benchmark measurements, charged as a pause.

Tools: ``syslab greyhound detect --iter-times FILE.csv`` and ``syslab greyhound period --calls FILE.csv``.
"""

from syslab.core.claims import Fidelity, System
from syslab.training.greyhound import reproduce as _reproduction

SYSTEM = System(
    key="greyhound",
    name="GreyHound",
    paper="Greyhound: Hunting Fail-Slows in Hybrid-Parallel Training at Scale",
    venue="ATC 2025",
    domain="training",
    fidelity=Fidelity.HYBRID,
    real="period finding on real call logs and a live 4-process gloo job, BOCD with the paper's checks, the S2/S3 "
         "solvers and the ski-rental controller",
    modelled="the slowed job and the costs of mitigation (simulation), synthetic series for detection scoring",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
    requires=("torch",),
)
