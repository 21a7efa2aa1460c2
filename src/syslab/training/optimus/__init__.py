"""Optimus: Accelerating Large-Scale Multi-Modal LLM Training by Bubble Exploitation (ATC 2025).

Harvard University, ByteDance and USC; arXiv 2408.03505; no public code. Written from the paper's text and
our notes; no artifact code is reused.

**What it does.** A multimodal LLM's encoder usually sits in the first pipeline stage, which makes that
stage slower still, while the GPUs idle in pipeline, tensor-parallel and data-parallel bubbles. Optimus
gives the encoder its own parallel plan over all the LLM's GPUs and schedules its kernels into those
bubbles, keeping the encoder-LLM dependencies.

**What runs for real here (MODELLED).** The algorithms: plan enumeration with the memory bound, micro-batch
splits, kernel packing into idle compute and link time with the placement rule, the dependency and overlap
checks, the exact min-max layer partition of the balanced baseline. **Modelled:** every duration: the LLM
from its GEMMs and attention on H100 (``core.gpu``), the ViT-22B from the paper's per-layer times, TP and DP
collectives from the cost model's NCCL calibration (``model.py``).
"""

from syslab.core.claims import Fidelity, System
from syslab.training.optimus import reproduce as _reproduction

SYSTEM = System(
    key="optimus",
    name="Optimus",
    paper="Optimus: Accelerating Large-Scale Multi-Modal LLM Training by Bubble Exploitation",
    venue="ATC 2025",
    domain="training",
    fidelity=Fidelity.MODELLED,
    real="planner, kernel packing into bubbles with the placement rule, dependency and overlap checks, the "
         "balanced baseline's exact partition",
    modelled="all durations: GPT-175B kernels and NVLink/InfiniBand collectives on H100 (core.gpu), ViT-22B from "
             "the paper's per-layer times",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
)
