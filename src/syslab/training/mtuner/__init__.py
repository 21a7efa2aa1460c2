"""mTuner: Accelerating Parameter-Efficient Fine-Tuning on Multi-GPU Servers with Elastic Tensor (ATC 2025).

Tsinghua University; artifact xxcclong/mTuner. Written from the paper's abstract, the artifact's planner
description in our notes, and our notes; no artifact code is reused.

**What it does.** In PEFT the base weights are frozen, so a gathered copy stays valid and can be cached.
mTuner's *Elastic Tensor* lets a planner choose, per layer, how much of each frozen weight to gather, to keep
from the forward to the backward, and to keep between iterations, and whether to recompute activations, so
that spare memory buys less communication.

**What runs for real here (HYBRID).** The planner (``plan.py``: the per-layer implementation space, the
memory arithmetic, and an exact integer program over layer counts, which for identical layers solves the
artifact's 2-D knapsack DP's problem without its memory rounding) and a two-process gloo demo (``demo.py``)
of sharded frozen weights with LoRA, where caching the gathered weights from forward to backward cuts
all-gather bytes with identical LoRA gradients. **Modelled:**
step times on 8 x A100-80GB servers with PCIe 4.0 or NVLink 3 links, from FLOPs and datasheet bandwidths
(the artifact uses measured Megatron times, which need GPUs); every constant is in ``plan.py``.
"""

from syslab.core.claims import Fidelity, System
from syslab.training.mtuner import reproduce as _reproduction

SYSTEM = System(
    key="mtuner",
    name="mTuner",
    paper="mTuner: Accelerating Parameter-Efficient Fine-Tuning on Multi-GPU Servers with Elastic Tensor",
    venue="ATC 2025",
    domain="training",
    fidelity=Fidelity.HYBRID,
    real="the planner (DP and exact integer program) and a 2-process gloo demo of cached vs re-gathered sharded "
         "frozen weights with LoRA",
    modelled="layer and collective times on 8-GPU A100 servers with PCIe or NVLink (the shared core.gpu cost model)",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
    requires=("torch",),
)
