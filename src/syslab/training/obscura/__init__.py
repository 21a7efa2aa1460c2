"""Obscura: Concealing Recomputation Overhead in Training of Large Language Models with Bubble-filling
Pipeline Transformation (ATC 2025).

Sun Yat-sen University, Huawei and Peng Cheng Laboratory; no public code. Written from our notes on the
paper; no artifact code exists or is reused.

**What it does.** Under 1F1B the first stages hold the most micro-batches' activations, so they overflow
first and need recomputation, which slows the whole pipeline. Obscura recomputes cheap operators first,
transforms the schedule so forward bubbles on those stages become backward bubbles that can hide
recomputation, combines recomputation with swapping to host memory, and rebalances half-layers across stages.

**What runs for real here (HYBRID).** The planner (the recomputation knapsack solved exactly on HiGHS, the
forward-migration order rewrite, the swap-ratio search, the half-layer partition moves), every schedule's
simulation and validation (dependencies, overlaps, per-stage memory measured on the timeline), and a torch
measurement of what autograd saves per operator on a tiny Llama layer that checks the operator table.
**Modelled:** A100-80GB kernel times from the shared GPU cost model (``core.gpu``: each operator's GEMM shape,
causal attention, memory-bound elementwise kernels; ``operators.py``), and the links: swap transfers and pipeline
messages are simulated first-come first-served on each GPU's PCIe (and NVLink) channels (``swapsim.py``) with
copy and send times from ``core.gpu`` (``copy_s``, ``collective_s``) and two GPUs per PCIe switch uplink on DGX
A100 (NVIDIA DGX A100 User Guide, system topology). The planner scores every plan by its simulated time and
checks memory on the simulated timeline; the paper's swap inequality is reported, never trusted.
"""

from syslab.core.claims import Fidelity, System
from syslab.training.obscura import reproduce as _reproduction

SYSTEM = System(
    key="obscura",
    name="Obscura",
    paper="Obscura: Concealing Recomputation Overhead in Training of Large Language Models with Bubble-filling "
          "Pipeline Transformation",
    venue="ATC 2025",
    domain="training",
    fidelity=Fidelity.HYBRID,
    real="recomputation planner (exact knapsack), schedule rewrite, swap and partition search, simulation and "
         "validation of every schedule (swaps and messages on FCFS link channels, memory on the timeline); "
         "per-operator saved bytes measured in torch on a tiny layer",
    modelled="A100-80GB kernel times and PCIe/NVLink transfer times (core.gpu), memory of Llama-2-style 18B-28B "
             "models, DGX A100's PCIe topology",
    claims=_reproduction.CLAIMS,
    reproduce=_reproduction.reproduce,
)
