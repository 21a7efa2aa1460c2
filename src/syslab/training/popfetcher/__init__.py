"""PopFetcher: Towards Accelerated Mixture-of-Experts Training Via Popularity Based Expert-Wise Prefetch
(ATC 2025).

Huazhong University of Science and Technology, Wuhan University, Fudan University and HKUST; no public code.
Written from the abstract and our notes, which carry no formula from the full paper: the predictor's
combination, the plan rule and the latency model here are ours, documented as such.

**What it does.** In expert-parallel MoE training, all-to-all traffic takes half of a MoE layer's time and hot
experts overload their workers. PopFetcher predicts which experts the next MoE layer will use heavily (from
the current layer's routing and cross-layer transition statistics over the last 10 iterations), and during the
preceding non-MoE computation, while the links are idle, each worker pulls replicas of its predicted-hot
remote experts so their tokens are computed locally; in the backward pass all-to-all goes before the gradient
all-reduce.

**What runs for real here (HYBRID).** A tiny top-2 MoE trained on this CPU gives a real routing trace, per
worker's batch; the predictor, the last-iteration baseline and the per-worker prefetch plan (an exact optimum of
the linearised layer latency over the pruned candidates) run on it and on a SYNTHETIC Zipf + Markov trace.
**Modelled:** the 8-worker cluster (A100 compute, InfiniBand HDR links) and the MoE layer's timeline in
``sim.py``.

Tool: ``syslab popfetcher simulate --routing FILE.npz`` on the routing of your own torch MoE, recorded with
``logger.RoutingLogger`` (forward hooks on its gates).
"""

from syslab.core.claims import Fidelity, System
from syslab.training.popfetcher import reproduce as _reproduction

SYSTEM = System(
    key="popfetcher",
    name="PopFetcher",
    paper="PopFetcher: Towards Accelerated Mixture-of-Experts Training Via Popularity Based Expert-Wise Prefetch",
    venue="ATC 2025",
    domain="training",
    fidelity=Fidelity.HYBRID,
    real="a tiny top-2 MoE trained on CPU for a real routing trace; the predictor and prefetch plan on it",
    modelled="the 8-worker expert-parallel cluster and the MoE layer's timing (A100, IB HDR; core.gpu)",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
    requires=("torch",),
)
