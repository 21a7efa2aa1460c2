"""mTuner's planner: per-layer Elastic-Tensor choices under a peak- and valley-memory budget, over a
performance model of an 8-GPU server.

**The implementation space** (per layer, as in the artifact's planner): ``gather_to`` g, ``discard_to`` d and
``bwd_discard_to`` b, each in {8, 4, 2, 1} eighths of the layer's frozen weight, with d <= g, b <= g and
b >= d, and whether to recompute activations. Our reading of the artifact (its notes are ambiguous): every
GPU owns 1/8 of each frozen weight; the forward materialises g/8 of it, so tensor parallelism is 8/g and data
parallelism g; after the forward d/8 stays resident until the backward (d = g caches the gathered weight, FSDP
re-gathers from d = 1); after the backward b/8 stays for the next iteration. FSDP/ZeRO-3 is (8, 1, 1),
Megatron TP=8 is (1, 1, 1).

**Memory per layer per GPU:** peak = W d/8 + activations; valley = W b/8 (W: the layer's bf16 weight bytes).
Activations per GPU follow Korthikanti et al. 2022 ("Reducing Activation Recomputation", flash attention,
sequence parallel): 34 s h bytes per sequence per layer over the TP degree, or only the layer input (2 s h / TP)
with recomputation.

**Time per layer** (modelled; the artifact uses measured Megatron times, which we cannot take here), from the
shared GPU cost model (``syslab.core.gpu``, calibrated on published cuBLAS/CUTLASS GEMM, FlashAttention-2, NCCL
and PCIe copy measurements; see ``core/gpu/calibration.py``): compute = one GPU's share of the layer (its TP
group's tokens as GEMM rows, 1/t of each weight's columns or rows; ``gemm_s``) forward (+ one more forward if
recomputed) and backward for activations only (frozen weights have no weight gradient: each GEMM's
input-gradient GEMM, and the causal attention backward; ``attention_s``); weight all-gather = W ((g - b) +
(g - d))/8 bytes per GPU per iteration (``collective_s("allgather")`` from d/8 and from b/8 to g/8: g/d and g/b
ranks), overlapped with compute (FSDP-style prefetch), so the layer takes max(compute, gather); tensor-parallel
all-reduces of the activations (2 in the forward, 2 in the backward, ``collective_s("allreduce")`` over t
ranks) are on the critical path. Collectives run on the server's link as a one-node ``core.gpu.Fabric`` (PCIe
servers at the fitted PCIe bandwidth, NVLink servers at the measured NCCL bus bandwidth). Two knobs of
``Server`` exist only for the reproduction's sensitivity table and stay at their neutral defaults for every claim:
``overlap`` (the fraction of the shorter of compute and gathers hidden under the longer: 1 is the perfect prefetch
above, 0 serialises them, layer = max + (1 - overlap) min) and ``link_speed`` (a factor on the link's modelled bus
bandwidth, latency unchanged). The artifact's x1.05 penalties for mixed choices are upstream heuristics; we
count the extra gathers instead.

**Planner:** the artifact solves a 2-D knapsack DP over layers, with state (cumulative peak, cumulative valley)
in memory units. Every layer of our models costs the same, so the problem is exactly how many layers take each
choice: an integer program over those counts (``solve_counts``, HiGHS), with no memory rounding. It replaces
the DP, which rounds each layer's memory up to a unit and so can only be worse: measured on 2026-12-04 over the
reproduction's 16 configurations, at 0.5 GB units the DP's plans were up to 34% slower (llama-30b, 2,048
tokens, PCIe); at 1/8 GB they were within 0.4%, but each plan took ~1.5 s against ~10 ms, which the
sensitivity sweep (~240 plans) cannot afford. TP must be uniform in a real deployment, so the program is
solved once per ``gather_to`` and the fastest plan that fits is kept (the artifact picks the most common
``gather_to`` first, then re-solves). Models whose layers differ would need one count per (layer kind,
choice); none here do.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from syslab.core import gpu as G
from syslab.core.gpu.transformer import gemm_shapes
from syslab.core.hardware import GPU, Link
from syslab.core.models import DTYPE_BYTES, Transformer

ACT_BYTES = 34        # activation bytes per token per hidden unit per layer (Korthikanti et al. 2022, Table 2)
SIZES = (8, 4, 2, 1)


@dataclass(frozen=True)
class Choice:
    gather_to: int
    discard_to: int
    bwd_discard_to: int
    recompute: bool

    @property
    def tp(self) -> int:
        return 8 // self.gather_to

    def label(self) -> str:
        return f"g{self.gather_to}/d{self.discard_to}/b{self.bwd_discard_to}" + ("/rc" if self.recompute else "")


CHOICES = tuple(Choice(g, d, b, r) for g, d, b in itertools.product(SIZES, SIZES, SIZES)
                if d <= g and b <= g and b >= d for r in (False, True))
FSDP = (8, 1, 1)
MEGATRON_TP8 = (1, 1, 1)


@dataclass(frozen=True)
class Server:
    name: str
    gpu: GPU
    link: Link
    gpus: int = 8
    overlap: float = 1.0          # share of min(compute, gathers) hidden under the longer (sensitivity only)
    link_speed: float = 1.0       # x the link's modelled bus bandwidth, latency unchanged (sensitivity only)

    @property
    def memory_bytes(self) -> float:
        return self.gpu.hbm_gb * 1e9

    @property
    def fabric(self) -> G.Fabric:
        return G.Fabric(intra=self.link.name, gpus_per_node=self.gpus)

    def collective_s(self, op: str, n_bytes: float, ranks: int) -> float:
        return G.collective_s(op, n_bytes / self.link_speed, ranks, self.gpu, fabric=self.fabric)


@dataclass(frozen=True)
class Workload:
    shape: Transformer
    seq_len: int
    micro_batch: int = 1          # sequences per GPU per step (so 8 x micro_batch per step on the server)
    reserve_gb: float = 8.0       # embeddings, LoRA adapters and optimizer state, buffers, fragmentation (ours)

    @property
    def layer_weight_bytes(self) -> float:
        p = self.shape.attn_params_per_layer + self.shape.mlp_params_per_expert
        return p * DTYPE_BYTES["bf16"]


@dataclass(frozen=True)
class LayerCost:
    time_s: float
    peak_bytes: float
    valley_bytes: float
    gather_bytes: float
    compute_s: float
    gather_s: float
    tp_s: float


_COSTS: dict[tuple, LayerCost] = {}


def layer_cost(w: Workload, server: Server, c: Choice) -> LayerCost:
    """Time and per-GPU memory of one transformer layer under choice ``c`` (see the module docstring);
    memoised by (workload, server, choice)."""
    key = (w, server.name, server.gpu.name, server.link.name, server.gpus, server.overlap, server.link_speed, c)
    if key not in _COSTS:
        _COSTS[key] = _layer_cost(w, server, c)
    return _COSTS[key]


def _layer_cost(w: Workload, server: Server, c: Choice) -> LayerCost:
    shape, n = w.shape, server.gpus
    tokens = n * w.micro_batch * w.seq_len                        # per step, whole server
    t = c.tp
    weight = w.layer_weight_bytes
    act_tokens = tokens * t / n                                   # tokens one TP group processes
    m = int(act_tokens)
    g = server.gpu
    shapes = gemm_shapes(shape, t)
    heads = max(shape.heads // t, 1)
    batch = act_tokens / w.seq_len
    fwd = sum(G.gemm_s(m, cols, depth, g) for cols, depth in shapes) \
        + G.attention_s(batch, w.seq_len, heads, shape.head_dim, g, causal=True)
    bwd = sum(G.gemm_s(m, depth, cols, g) for cols, depth in shapes) \
        + G.attention_s(batch, w.seq_len, heads, shape.head_dim, g, causal=True, backward=True)
    compute = fwd * (2 if c.recompute else 1) + bwd               # forward, (re-forward), backward for activations
    gather_bytes = weight * ((c.gather_to - c.bwd_discard_to) + (c.gather_to - c.discard_to)) / 8
    full = weight * c.gather_to / 8                               # the gathered share of the weight
    gather = (server.collective_s("allgather", full, c.gather_to // c.bwd_discard_to)
              + server.collective_s("allgather", full, c.gather_to // c.discard_to))
    tp = 4 * server.collective_s("allreduce", act_tokens * shape.hidden * 2, t)
    act = act_tokens * shape.hidden * (2 if c.recompute else ACT_BYTES) / t
    overlapped = max(compute, gather) + (1.0 - server.overlap) * min(compute, gather)
    return LayerCost(overlapped + tp, weight * c.discard_to / 8 + act, weight * c.bwd_discard_to / 8,
                     gather_bytes, compute, gather, tp)


# ---------------------------------------------------------------------------------------------------------
# The planner
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    choices: tuple[Choice, ...]
    time_s: float
    peak_bytes: float
    valley_bytes: float

    @property
    def feasible(self) -> bool:
        return bool(self.choices)


INFEASIBLE = Plan((), math.inf, math.inf, math.inf)


def _plan(w: Workload, server: Server, chosen: tuple[Choice, ...], total: float | None = None) -> Plan:
    costs = [layer_cost(w, server, c) for c in chosen]
    return Plan(chosen, sum(k.time_s for k in costs) if total is None else total,
                sum(k.peak_bytes for k in costs), sum(k.valley_bytes for k in costs))


def fits(w: Workload, server: Server, plan: Plan) -> bool:
    limit = server.memory_bytes - w.reserve_gb * 1e9
    return plan.feasible and plan.peak_bytes <= limit and plan.valley_bytes <= limit


def solve_counts(w: Workload, server: Server, choices: tuple[Choice, ...] = CHOICES) -> Plan:
    """The per-layer choices minimising total time with peak and valley memory within the GPU's memory minus
    the reserve, exactly, when every layer costs the same (as here): how many layers take each choice, as an
    integer program over those counts (HiGHS) with no memory rounding (checked against brute force)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    costs = [layer_cost(w, server, c) for c in choices]
    limit = server.memory_bytes - w.reserve_gb * 1e9
    n = len(choices)
    time = np.array([k.time_s for k in costs])
    cons = [LinearConstraint(np.ones((1, n)), w.shape.layers, w.shape.layers),
            LinearConstraint(np.array([[k.peak_bytes / 1e9 for k in costs]]), -np.inf, limit / 1e9),
            LinearConstraint(np.array([[k.valley_bytes / 1e9 for k in costs]]), -np.inf, limit / 1e9)]
    res = milp(time, constraints=cons, integrality=np.ones(n), bounds=Bounds(0, w.shape.layers))
    if not res.success:
        return INFEASIBLE
    counts = np.round(res.x).astype(int)
    chosen = tuple(c for c, k in zip(choices, counts, strict=True) for _ in range(k))
    return _plan(w, server, chosen)


def mtuner(w: Workload, server: Server) -> Plan:
    """mTuner: the best per-layer mix for each (uniform) tensor-parallel degree; the fastest that fits."""
    plans = [solve_counts(w, server, tuple(c for c in CHOICES if c.gather_to == g)) for g in SIZES]
    ok = [p for p in plans if fits(w, server, p)]
    return min(ok, key=lambda p: p.time_s) if ok else INFEASIBLE


def uniform(w: Workload, server: Server, g: int, d: int, b: int, selective: bool = True) -> Plan:
    """One gather/discard policy for every layer. ``selective`` (the default, so baselines get the mechanism's
    knob): each layer recomputes its activations or not, the mix chosen by the same exact solver as mTuner's
    (``solve_counts`` over the policy's two choices); otherwise all layers recompute only if none-recompute does
    not fit (the all-or-nothing rule)."""
    if selective:
        plan = solve_counts(w, server, (Choice(g, d, b, False), Choice(g, d, b, True)))
        return plan if fits(w, server, plan) else INFEASIBLE
    for rc in (False, True):
        plan = _plan(w, server, (Choice(g, d, b, rc),) * w.shape.layers)
        if fits(w, server, plan):
            return plan
    return INFEASIBLE


def policies() -> list[tuple[int, int, int]]:
    """Every gather/discard policy of the space (a Choice without its recompute flag)."""
    return sorted({(c.gather_to, c.discard_to, c.bwd_discard_to) for c in CHOICES})


def best_uniform(w: Workload, server: Server, selective: bool = True) -> Plan:
    """The fastest single policy for every layer, with (default) or without per-layer selective recomputation."""
    plans = [uniform(w, server, *pol, selective=selective) for pol in policies()]
    ok = [p for p in plans if p.feasible]
    return min(ok, key=lambda p: p.time_s) if ok else INFEASIBLE
