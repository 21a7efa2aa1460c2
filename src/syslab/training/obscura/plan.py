"""Obscura's planner and schedules (Huang et al., ATC'25), evaluated on the shared pipeline simulator.

Setting (the paper's §6): a Llama-2-style model split over p pipeline stages of one A100-80GB each (1F1B,
micro-batch 1, sequence 4,096), m micro-batches per iteration. Everything below is per stage s:

* model states W_s = 16 bytes per parameter (BF16 weights and gradients, FP32 master weights and two Adam
  moments; no ZeRO), plus ``RESERVED_GB`` for the CUDA context, workspaces and fragmentation (our assumption);
* a micro-batch's activations a_s, from the operator table (``operators.py``), held from its forward to its
  backward; under 1F1B stage s holds min(p - s, m) of them at once, so early stages overflow first;
* forward f_s from the same table, backward 2 f_s, plus the recomputation r_s its plan needs.

Recomputation plans (``recompute_plan``): drop a number of each droppable group per stage (the knapsack of
Step 4: minimise recompute time subject to memory, solved exactly as a small integer program on HiGHS); the
cheap groups (RMSNorm, SiLU, multiply outputs) come out first by themselves, as they free the most bytes per
second (the CMB-first rule). Full recomputation keeps only each layer's input (r_s = f_s).

Schedules, all simulated as per-stage orders with per-micro-batch backward times and activations:

* DAPPLE: 1F1B without recomputation (out of memory on the early stages; its time is the ideal);
* DAPPLE+: full recomputation on every stage;
* Recomp-k (on demand): full recomputation on the stages that would overflow, none elsewhere;
* Strawman: the knapsack's partial recomputation on the overflowing stages, 1F1B order;
* Obscura: on each *adjusted* (overflowing) stage, forward migration extends the warm-up by e_s forwards into
  the forward bubble (1F1B's stage s idles about 2 (p - s - 1) forward times waiting for its first
  backward), so that bubble reappears among the backwards, where recomputation needs it; the recompute plan
  is re-solved for the deeper in-flight count (Steps 2-3). Swapping-aware recomputation offloads a fraction
  beta of each adjusted micro-batch's activations to host memory over PCIe while it waits for its backward,
  provided the transfers fit in one steady-state period (beta a <= (3 f + r) B, so they hide behind compute;
  two micro-batches' worth stays reserved for the one being evicted and the one being loaded), and re-solves
  the knapsack for the memory it frees (Step 4). Partition adjustment then moves half-layers (attention or
  MLP halves) from the slowest adjusted stage to the fastest non-adjusted one while that shortens the
  iteration (Step 5). The plan search enumerates e and beta on a grid and keeps the best simulated iteration.

The paper's closed-form time model (its Eqs. 2-5) is not used to pick plans; the simulator is, so what is
compared is what runs. Cost: one plan search is O(grid x p m) simulated items.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from syslab.core.errors import InputError
from syslab.core.models import Transformer
from syslab.core.timeline import Schedule
from syslab.training import pipeline as P
from syslab.training.obscura.operators import Group, half_forward_s, layer_groups

GB = 1e9
STATE_BYTES_PER_PARAM = 16          # mixed-precision Adam: 2 (bf16 w) + 2 (bf16 grad) + 4 (fp32 w) + 4 + 4 (m, v)
RESERVED_GB = 4.0                   # CUDA context, NCCL and cuBLAS workspaces, fragmentation (our assumption)
# PCIe 4.0 x16 moves ~25 GB/s per direction in practice (32 GB/s raw); in a DGX A100 two GPUs share each PCIe
# switch's x16 uplink to the CPU (NVIDIA DGX A100 User Guide, system topology), so a GPU swapping beside its
# neighbour gets half of it.
PCIE_GB_S = 12.5


def llama2_like(layers: int, name: str) -> Transformer:
    """Llama-2-style models at the paper's sizes (its 18B/23B/28B are not public configs): Llama-2's 6,144
    hidden / 48 heads / 16,384 MLP shape, sized by depth."""
    return Transformer(name, layers, 6144, 48, 48, 16384, 32000,
                       source="our Llama-2-style sizing of the paper's models")


MODELS = {"llama2-18b": llama2_like(40, "llama2-18b"), "llama2-23b": llama2_like(48, "llama2-23b"),
          "llama2-28b": llama2_like(60, "llama2-28b")}


@dataclass
class Cluster:
    stages: int = 8
    gpu_gb: float = 80.0
    seq: int = 4096
    micro_batch: int = 1


@dataclass
class StageLoad:
    """What one pipeline stage holds: ``attn`` and ``mlp`` half-layers."""

    attn: int
    mlp: int

    @property
    def halves(self) -> int:
        return self.attn + self.mlp


def even_partition(t: Transformer, p: int) -> list[StageLoad]:
    """Half-layers (attention, MLP, attention, MLP, ...) split as evenly as possible, in order."""
    units = 2 * t.layers
    cuts = [round(units * s / p) for s in range(p + 1)]
    return [StageLoad(attn=sum(1 for u in range(a, b) if u % 2 == 0), mlp=sum(1 for u in range(a, b) if u % 2 == 1))
            for a, b in zip(cuts, cuts[1:], strict=False)]


@dataclass
class StageCost:
    """Per micro-batch on one stage: forward time, the groups recomputation can drop (per half-layer kind,
    times the count of that half on the stage), full activation bytes, model-state bytes."""

    forward_s: float
    groups: list[tuple[Group, int]]
    activation: float
    states: float


def stage_costs(t: Transformer, parts: list[StageLoad], c: Cluster) -> list[StageCost]:
    groups = layer_groups(t, c.seq, c.micro_batch)
    halves = half_forward_s(t, c.seq, c.micro_batch)
    per_half_params = {"attn": t.attn_params_per_layer + t.hidden,
                       "mlp": t.mlp_params_per_expert * t.experts + t.hidden}
    out = []
    for load in parts:
        count = {"attn": load.attn, "mlp": load.mlp}
        gs = [(g, count[g.half]) for g in groups]
        out.append(StageCost(forward_s=halves["attn"] * load.attn + halves["mlp"] * load.mlp, groups=gs,
                             activation=sum(g.bytes * k for g, k in gs),
                             states=STATE_BYTES_PER_PARAM * sum(per_half_params[h] * count[h] for h in count)))
    return out


# ---------------------------------------------------------------------------------------------------------
# Step 1 / 4: the recomputation knapsack
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recompute:
    """How many of each group are dropped per micro-batch (by group name), what stays, what it costs."""

    dropped: dict = field(default_factory=dict)
    activation: float = 0.0
    recompute_s: float = 0.0

    @property
    def full(self) -> bool:
        return bool(self.dropped) and all(v > 0 for v in self.dropped.values())


def no_recompute(sc: StageCost) -> Recompute:
    return Recompute({}, sc.activation, 0.0)


def full_recompute(sc: StageCost) -> Recompute:
    """Keep only each half-layer's input; recompute the whole forward (r = f)."""
    dropped = {g.name: k for g, k in sc.groups if g.droppable}
    kept = sum(g.bytes * k for g, k in sc.groups if not g.droppable)
    return Recompute(dropped, kept, sc.forward_s)


def recompute_plan(sc: StageCost, max_activation: float) -> Recompute | None:
    """Cheapest set of dropped groups leaving at most ``max_activation`` bytes per micro-batch, or None if
    even full recomputation leaves more. Exact: an integer program over how many of each group to drop
    (memoised: the plan search asks the same questions many times)."""
    if sc.activation <= max_activation:
        return no_recompute(sc)
    return _knapsack(tuple(sc.groups), sc.activation, round(max_activation))


@lru_cache(maxsize=4096)
def _knapsack(groups: tuple, activation: float, max_activation: float) -> Recompute | None:
    cand = [(g, k) for g, k in groups if g.droppable and k > 0]
    need = activation - max_activation
    if sum(g.bytes * k for g, k in cand) < need - 1e-6:
        return None
    cost = np.array([g.recompute_s for g, _ in cand])
    save = np.array([g.bytes for g, _ in cand])
    res = milp(cost, constraints=LinearConstraint(save[None, :], need, np.inf), integrality=np.ones(len(cand)),
               bounds=Bounds(0, [k for _, k in cand]))
    if res.x is None:
        return None
    n = np.round(res.x).astype(int)
    dropped = {g.name: int(x) for (g, _), x in zip(cand, n, strict=True) if x > 0}
    return Recompute(dropped, activation - float(save @ n), float(cost @ n))


def cheap_first(sc: StageCost) -> tuple[float, float]:
    """Dropping every cheap group: (share of activation bytes saved, recompute time / forward time)."""
    cheap = [(g, k) for g, k in sc.groups if g.cheap]
    return (sum(g.bytes * k for g, k in cheap) / sc.activation, sum(g.recompute_s * k for g, k in cheap) / sc.forward_s)


# ---------------------------------------------------------------------------------------------------------
# Plans and their schedules
# ---------------------------------------------------------------------------------------------------------


@dataclass
class StagePlan:
    recompute: Recompute
    extra_warmup: int = 0
    swap: float = 0.0                       # beta: share of an adjusted micro-batch's activations kept on host


@dataclass
class Plan:
    name: str
    parts: list[StageLoad]
    stages: list[StagePlan] | None          # None: out of memory
    schedule: Schedule | None = None
    oom_stages: list[int] = field(default_factory=list)

    @property
    def time_s(self) -> float:
        return self.schedule.makespan if self.schedule is not None else float("inf")


def activation_budget(sc: StageCost, c: Cluster) -> float:
    return c.gpu_gb * GB - RESERVED_GB * GB - sc.states


def in_flight(stage: int, p: int, m: int, extra: int) -> int:
    return min(m, p - stage + extra)


def fits(sc: StageCost, c: Cluster, stage: int, m: int, sp: StagePlan) -> bool:
    return held_peak(sc, c, stage, m, sp) <= activation_budget(sc, c) + 1e-6


def held_peak(sc: StageCost, c: Cluster, stage: int, m: int, sp: StagePlan) -> float:
    a = sp.recompute.activation
    buffers = 2 * sp.swap * a if sp.swap > 0 else 0.0
    return in_flight(stage, c.stages, m, sp.extra_warmup) * (1 - sp.swap) * a + buffers


def orders(p: int, m: int, extra: list[int]) -> dict[int, list[P.Item]]:
    """1F1B with stage s's warm-up extended by ``extra[s]`` forwards (forward migration)."""
    out = {}
    for s in range(p):
        warm = min(m, p - s - 1 + extra[s])
        seq = [("F", s, j) for j in range(warm)]
        for j in range(m - warm):
            seq += [("F", s, warm + j), ("B", s, j)]
        out[s] = seq + [("B", s, j) for j in range(m - warm, m)]
    return out


def simulate(costs: list[StageCost], plan: list[StagePlan], m: int, c: Cluster) -> Schedule:
    p = len(costs)
    f = np.array([[sc.forward_s] * m for sc in costs])
    b = np.array([[2 * sc.forward_s + sp.recompute.recompute_s] * m for sc, sp in zip(costs, plan, strict=True)])
    act = np.array([[(1 - sp.swap) * sp.recompute.activation] * m for sp in plan])
    st = P.Stages(f, b, activation=act)
    return P.simulate(st, orders(p, m, [sp.extra_warmup for sp in plan]))


def swap_hidden(sc: StageCost, sp: StagePlan) -> bool:
    """Step 4's constraint: evicting and loading beta x a over PCIe fits in one steady-state period."""
    period = 3 * sc.forward_s + sp.recompute.recompute_s
    return sp.swap * sp.recompute.activation / (PCIE_GB_S * GB) <= period + 1e-12


def overflowing(costs: list[StageCost], c: Cluster, m: int) -> list[int]:
    """Stages whose 1F1B in-flight activations exceed their memory (Step 1's adjusted stages)."""
    return [s for s, sc in enumerate(costs)
            if not fits(sc, c, s, m, StagePlan(no_recompute(sc)))]


def plan_uniform(name: str, costs: list[StageCost], parts: list[StageLoad], c: Cluster, m: int, how: str) -> Plan:
    """DAPPLE (``none``), DAPPLE+ (``full`` everywhere), Recomp-k (``full`` on overflowing stages) and the
    Strawman (``knapsack`` on overflowing stages), all in 1F1B order."""
    over = overflowing(costs, c, m)
    stages = []
    for s, sc in enumerate(costs):
        if how == "none" or (how in ("on-demand", "knapsack") and s not in over):
            rc = no_recompute(sc)
        elif how in ("full", "on-demand"):
            rc = full_recompute(sc)
        else:
            rc = recompute_plan(sc, activation_budget(sc, c) / in_flight(s, c.stages, m, 0))
            if rc is None:
                return Plan(name, parts, None, oom_stages=[s])
        stages.append(StagePlan(rc))
    oom = [s for s, (sc, sp) in enumerate(zip(costs, stages, strict=True)) if not fits(sc, c, s, m, sp)]
    if oom:
        return Plan(name, parts, None, oom_stages=oom)
    return Plan(name, parts, stages, simulate(costs, stages, m, c))


SWAP_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def stage_plan(sc: StageCost, c: Cluster, stage: int, m: int, extra: int, swap: float) -> StagePlan | None:
    """The cheapest recomputation that fits ``stage`` with ``extra`` migrated forwards and ``swap``."""
    mu = in_flight(stage, c.stages, m, extra)
    denom = mu * (1 - swap) + (2 * swap if swap > 0 else 0.0)
    rc = recompute_plan(sc, activation_budget(sc, c) / denom)
    if rc is None:
        return None
    sp = StagePlan(rc, extra, swap)
    if swap > 0 and not swap_hidden(sc, sp):
        return None
    return sp if fits(sc, c, stage, m, sp) else None


def plan_obscura(costs: list[StageCost], parts: list[StageLoad], c: Cluster, m: int, swap: bool = True,
                 name: str = "Obscura") -> Plan:
    """Steps 2-4: search a common migration depth e (stage s migrates min(e, 2 (p - s - 1)) forwards, its
    forward bubble) and one swap ratio for the adjusted stages; keep the best simulated iteration."""
    p = len(costs)
    over = overflowing(costs, c, m)
    base = [StagePlan(no_recompute(sc)) for sc in costs]
    best: Plan | None = None
    for e in range(0, 2 * (p - 1) + 1):
        for beta in (SWAP_GRID if swap else (0.0,)):
            stages = list(base)
            ok = True
            for s in over:
                sp = stage_plan(costs[s], c, s, m, min(e, 2 * (p - s - 1)), beta)
                if sp is None:
                    ok = False
                    break
                stages[s] = sp
            if not ok:
                continue
            sch = simulate(costs, stages, m, c)
            if best is None or sch.makespan < best.time_s - 1e-12:
                best = Plan(name, parts, stages, sch)
    return best if best is not None else Plan(name, parts, None, oom_stages=over)


def adjust_partition(t: Transformer, c: Cluster, m: int, parts: list[StageLoad] | None = None,
                     max_moves: int = 64) -> Plan:
    """Step 5: move one half-layer at a time from the slowest adjusted stage towards the fastest
    non-adjusted stage (shifting the boundaries in between by one unit so the model stays contiguous)
    while the re-planned iteration gets shorter; revert the move that does not help."""
    parts = parts or even_partition(t, c.stages)
    costs = stage_costs(t, parts, c)
    best = plan_obscura(costs, parts, c, m, name="Obscura")
    for _ in range(max_moves):
        if best.stages is None:
            break
        over = overflowing(costs, c, m)
        rest = [s for s in range(c.stages) if s not in over]
        if not over or not rest:
            break
        per_mb = {s: 3 * costs[s].forward_s + best.stages[s].recompute.recompute_s for s in range(c.stages)}
        src = max(over, key=lambda s: per_mb[s])
        dst = min(rest, key=lambda s: per_mb[s])
        moved = _shift(parts, src, dst)
        if moved is None:
            break
        new_costs = stage_costs(t, moved, c)
        cand = plan_obscura(new_costs, moved, c, m, name="Obscura")
        if cand.time_s >= best.time_s - 1e-12:
            break
        parts, costs, best = moved, new_costs, cand
    return best


def _shift(parts: list[StageLoad], src: int, dst: int) -> list[StageLoad] | None:
    """Move one half-layer from ``src`` to ``dst`` through the stages between them (each passes its edge
    unit on), keeping the attention/MLP sequence contiguous."""
    units: list[str] = []
    owner: list[int] = []
    for s, load in enumerate(parts):
        first = "attn" if len(units) % 2 == 0 else "mlp"
        seq = [first if i % 2 == 0 else ("mlp" if first == "attn" else "attn") for i in range(load.halves)]
        units += seq
        owner += [s] * load.halves
    counts = [load.halves for load in parts]
    if counts[src] <= 1:
        return None
    step = 1 if dst > src else -1
    for s in range(src, dst, step):
        counts[s] -= 1
        counts[s + step] += 1
    if min(counts) < 1:
        return None
    out, i = [], 0
    for k in counts:
        seg = units[i:i + k]
        out.append(StageLoad(seg.count("attn"), seg.count("mlp")))
        i += k
    return out


def validate_plan(plan: Plan, costs: list[StageCost], c: Cluster, m: int) -> list[str]:
    """Dependencies and overlaps (the shared validator) and each stage's peak memory, measured on the
    simulated schedule, against the GPU."""
    if plan.schedule is None or plan.stages is None:
        return []
    problems = [f"{plan.name}: {x}" for x in P.validate(plan.schedule)]
    peaks = P.activation_peaks(plan.schedule)
    for s, (sc, sp) in enumerate(zip(costs, plan.stages, strict=True)):
        buffers = 2 * sp.swap * sp.recompute.activation if sp.swap > 0 else 0.0
        total = sc.states + RESERVED_GB * GB + peaks.get(f"stage{s}", 0.0) + buffers
        if total > c.gpu_gb * GB + 1e-3:
            problems.append(f"{plan.name}: stage {s} peaks at {total / GB:.1f} GB of {c.gpu_gb:g}")
    return problems


def check_cluster(c: Cluster, m: int) -> None:
    if c.stages < 2 or m < 1 or c.seq < 1:
        raise InputError(f"{c.stages} stages, {m} micro-batches, {c.seq} tokens.", field="cluster",
                         fix="use >= 2 stages and positive micro-batches and sequence length.")


__all__ = ["Cluster", "MODELS", "Plan", "adjust_partition", "plan_obscura", "plan_uniform", "replace"]
