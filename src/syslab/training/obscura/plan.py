"""Obscura's planner and schedules (Huang et al., ATC'25), each scored by a simulated iteration (``swapsim``).

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

Schedules, all simulated as per-stage orders on ``swapsim`` (compute, pipeline messages and swap transfers on
first-come first-served link channels; memory measured on the timeline):

* DAPPLE: 1F1B without recomputation (out of memory on the early stages; its time is the ideal);
* DAPPLE+: full recomputation on every stage;
* Recomp-k (on demand): full recomputation on the stages that would overflow, none elsewhere;
* Strawman: the knapsack's partial recomputation on the overflowing stages, 1F1B order; Strawman (+swap) also
  gets the swap option (the same beta grid, the same simulated PCIe), so the baseline has every knob that is
  not the paper's schedule transformation or partition adjustment;
* Obscura: on each *adjusted* (overflowing) stage, forward migration extends the warm-up by e_s forwards into
  the forward bubble (1F1B's stage s idles about 2 (p - s - 1) forward times waiting for its first
  backward), so that bubble reappears among the backwards, where recomputation needs it; the recompute plan
  is re-solved for the deeper in-flight count (Steps 2-3). Swapping-aware recomputation offloads a fraction
  beta of each adjusted micro-batch's activations to host memory over PCIe while it waits for its backward and
  re-solves the knapsack for the memory it frees (Step 4). The paper's feasibility inequality
  (beta a <= (3 f + r) B) is *not* used: every candidate is simulated with its swaps on the PCIe channels, so a
  plan whose transfers do not hide behind compute is slower (its backwards wait for loads) or does not fit
  (its evicts fall behind and the activations pile up, measured on the timeline), and the planner's score is
  the simulated iteration time. The knapsack needs a guess of how many micro-batches are fully resident
  while being evicted or loaded (start: 2); a stage whose measured peak exceeds its memory gets one more and
  is re-solved. Partition adjustment then moves half-layers (attention or MLP halves) from the slowest
  adjusted stage to the fastest non-adjusted one while that shortens the iteration (Step 5). The plan search
  enumerates e and beta on a grid and keeps the best simulated iteration.

Each mechanism is a knob of the search (``Knobs``: operator dropping, migration, swapping, partition
adjustment), so the reproduction can measure each alone and all but one on the same workload.

The paper's closed-form time model (its Eqs. 2-5) is not used to pick plans; the simulator is, so what is
compared is what runs. Cost: one plan search is O(grid x rounds x p m log(p m)).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from syslab.core.errors import InputError
from syslab.core.models import Transformer
from syslab.training import pipeline as P
from syslab.training.obscura import swapsim as S
from syslab.training.obscura.operators import BYTES, Group, half_forward_s, layer_groups

GB = 1e9
STATE_BYTES_PER_PARAM = 16          # mixed-precision Adam: 2 (bf16 w) + 2 (bf16 grad) + 4 (fp32 w) + 4 + 4 (m, v)
RESERVED_GB = 4.0                   # CUDA context, NCCL and cuBLAS workspaces, fragmentation (our assumption)
# PCIe copy and pipeline-message times come from core.gpu (copy_s, collective_s); the switch sharing is in swapsim.


def llama2_like(layers: int, name: str) -> Transformer:
    """Llama-2-style models at the paper's sizes (its 18B/23B/28B are not public configs): Llama-2's 6,144
    hidden / 48 heads / 16,384 MLP shape, sized by depth."""
    return Transformer(name, layers, 6144, 48, 48, 16384, 32000,
                       source="our Llama-2-style sizing of the paper's models")


MODELS = {"llama2-18b": llama2_like(40, "llama2-18b"), "llama2-23b": llama2_like(48, "llama2-23b"),
          "llama2-28b": llama2_like(60, "llama2-28b")}


@dataclass
class Cluster:
    """p stages of one GPU each (a ``core.hardware`` name), its memory, the sequence and micro-batch, and how
    many GPUs share one PCIe switch uplink (None: the GPU's usual server, ``swapsim.topology_for``)."""

    stages: int = 8
    gpu_gb: float = 80.0
    seq: int = 4096
    micro_batch: int = 1
    gpu: str = "A100-SXM-80GB"
    gpus_per_switch: int | None = None
    free_swaps: bool = False            # swaps take no time (what the paper's inequality assumes): a reference


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
    message_bytes: float = 0.0          # one micro-batch's activation (or gradient) sent to the next stage


def stage_costs(t: Transformer, parts: list[StageLoad], c: Cluster) -> list[StageCost]:
    groups = layer_groups(t, c.seq, c.micro_batch, c.gpu)
    halves = half_forward_s(t, c.seq, c.micro_batch, c.gpu)
    message = c.seq * c.micro_batch * t.hidden * BYTES
    per_half_params = {"attn": t.attn_params_per_layer + t.hidden,
                       "mlp": t.mlp_params_per_expert * t.experts + t.hidden}
    out = []
    for load in parts:
        count = {"attn": load.attn, "mlp": load.mlp}
        gs = [(g, count[g.half]) for g in groups]
        out.append(StageCost(forward_s=halves["attn"] * load.attn + halves["mlp"] * load.mlp, groups=gs,
                             activation=sum(g.bytes * k for g, k in gs),
                             states=STATE_BYTES_PER_PARAM * sum(per_half_params[h] * count[h] for h in count),
                             message_bytes=message))
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
    buffers: int = 0                        # micro-batches the knapsack budgeted as fully resident while swapping


@dataclass
class Plan:
    name: str
    parts: list[StageLoad]
    stages: list[StagePlan] | None          # None: out of memory
    sim: S.SimResult | None = None
    oom_stages: list[int] = field(default_factory=list)
    e: int = 0                              # the common migration depth the search chose
    beta: float = 0.0                       # the swap ratio it chose
    _schedule: object = field(default=None, repr=False)

    @property
    def time_s(self) -> float:
        return self.sim.makespan if self.sim is not None else float("inf")

    @property
    def schedule(self):
        """The simulated iteration as a ``core.timeline.Schedule`` (built on first use)."""
        if self.sim is None:
            return None
        if self._schedule is None:
            self._schedule = self.sim.schedule()
        return self._schedule


@dataclass(frozen=True)
class Knobs:
    """The paper's mechanisms as switches of the plan search: operator dropping (the knapsack; off: a stage
    recomputes all or nothing), forward migration (dependency relaxation), swapping, partition adjustment."""

    drop: bool = True
    migrate: bool = True
    swap: bool = True
    adjust: bool = True

    def label(self) -> str:
        on = [n for n, k in (("drop", self.drop), ("migrate", self.migrate), ("swap", self.swap),
                             ("partition", self.adjust)) if k]
        return " + ".join(on) or "none (Recomp-k)"


ALL = Knobs()
STRAWMAN_SWAP = Knobs(drop=True, migrate=False, swap=True, adjust=False)


def activation_budget(sc: StageCost, c: Cluster) -> float:
    return c.gpu_gb * GB - RESERVED_GB * GB - sc.states


def in_flight(stage: int, p: int, m: int, extra: int) -> int:
    return min(m, p - stage + extra)


def fits(sc: StageCost, c: Cluster, stage: int, m: int, sp: StagePlan) -> bool:
    """Without swapping, exact: 1F1B-like orders hold ``in_flight`` micro-batches at their peak."""
    return in_flight(stage, c.stages, m, sp.extra_warmup) * sp.recompute.activation <= activation_budget(sc, c) + 1e-6


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


def topology(costs: list[StageCost], c: Cluster) -> S.Topology:
    return S.topology_for(c.gpu, costs[0].message_bytes if costs else 0.0, c.gpus_per_switch)


def simulate(costs: list[StageCost], plan: list[StagePlan], m: int, c: Cluster, keep_ops: bool = True,
             free_swaps: bool = False) -> S.SimResult:
    """One iteration on ``swapsim``: compute, pipeline messages and swaps on the GPU's links."""
    topo = topology(costs, c)
    if free_swaps or c.free_swaps:
        topo = S.free_swaps(topo)
    return S.simulate([sc.forward_s for sc in costs],
                      [2 * sc.forward_s + sp.recompute.recompute_s for sc, sp in zip(costs, plan, strict=True)],
                      [sp.recompute.activation for sp in plan], [sp.swap for sp in plan],
                      orders(len(costs), m, [sp.extra_warmup for sp in plan]), topo, keep_ops=keep_ops)


def swap_inequality(sc: StageCost, sp: StagePlan, c: Cluster) -> bool:
    """The paper's Step-4 constraint, for reporting only: evicting beta x a over PCIe (``core.gpu.copy_s``) fits
    in one steady-state period 3 f + r. The planner does not use it; the simulation decides."""
    from syslab.core import gpu as G
    period = 3 * sc.forward_s + sp.recompute.recompute_s
    return G.copy_s(sp.swap * sp.recompute.activation, c.gpu, "d2h") <= period + 1e-12


def overflowing(costs: list[StageCost], c: Cluster, m: int) -> list[int]:
    """Stages whose 1F1B in-flight activations exceed their memory (Step 1's adjusted stages)."""
    return [s for s, sc in enumerate(costs)
            if not fits(sc, c, s, m, StagePlan(no_recompute(sc)))]


def plan_uniform(name: str, costs: list[StageCost], parts: list[StageLoad], c: Cluster, m: int, how: str) -> Plan:
    """DAPPLE (``none``), DAPPLE+ (``full`` everywhere), Recomp-k (``on-demand``: full on overflowing stages) and
    the Strawman (``knapsack`` on overflowing stages), all in 1F1B order without swapping."""
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
    return Plan(name, parts, stages, simulate(costs, stages, m, c, keep_ops=False))


SWAP_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
MAX_BUFFERS = 5                     # the knapsack's resident-while-swapping guess goes 2, 3, ... up to this


def stage_plan(sc: StageCost, c: Cluster, stage: int, m: int, extra: int, swap: float, drop: bool = True,
               buffers: int = 2) -> StagePlan | None:
    """The cheapest recomputation that fits ``stage`` with ``extra`` migrated forwards and ``swap``, budgeting
    ``buffers`` micro-batches as fully resident while they are evicted or loaded. Without ``drop`` the stage
    recomputes nothing or everything. Returns None if nothing fits."""
    mu = in_flight(stage, c.stages, m, extra)
    k = min(buffers, mu) if swap > 0 else 0
    denom = (mu - k) * (1 - swap) + k
    budget = activation_budget(sc, c) / denom
    if drop:
        rc = recompute_plan(sc, budget)
    else:
        rc = next((r for r in (no_recompute(sc), full_recompute(sc)) if r.activation <= budget + 1e-6), None)
    if rc is None:
        return None
    return StagePlan(rc, extra, swap, k)


def _fit_by_simulation(costs: list[StageCost], c: Cluster, m: int, over: list[int], extra: int, beta: float,
                       drop: bool) -> tuple[list[StagePlan], S.SimResult] | None:
    """Plan the adjusted stages, simulate, and re-plan any stage whose measured peak exceeds its memory with
    one more resident micro-batch budgeted, until every stage fits (or a stage cannot)."""
    p = len(costs)
    stages = [StagePlan(no_recompute(sc)) for sc in costs]
    buffers = dict.fromkeys(over, 2)
    while True:
        for s in over:
            sp = stage_plan(costs[s], c, s, m, min(extra, 2 * (p - s - 1)), beta, drop, buffers[s])
            if sp is None:
                return None
            stages[s] = sp
        sim = simulate(costs, stages, m, c, keep_ops=False)
        bad = [s for s in over if sim.peaks[s] > activation_budget(costs[s], c) + 1e-3]
        if not bad:
            return stages, sim
        for s in bad:
            if beta == 0 or buffers[s] >= min(MAX_BUFFERS, in_flight(s, p, m, min(extra, 2 * (p - s - 1)))):
                return None
            buffers[s] += 1


def search_grid(p: int, knobs: Knobs) -> list[tuple[int, float]]:
    """Every (migration depth e, swap ratio beta) the search tries under ``knobs``."""
    return [(e, beta) for e in (range(0, 2 * (p - 1) + 1) if knobs.migrate else (0,))
            for beta in (SWAP_GRID if knobs.swap else (0.0,))]


def plan_search(costs: list[StageCost], parts: list[StageLoad], c: Cluster, m: int, knobs: Knobs = ALL,
                name: str = "Obscura", grid: list[tuple[int, float]] | None = None) -> Plan:
    """Steps 2-4 under ``knobs``: search a common migration depth e (stage s migrates min(e, 2 (p - s - 1))
    forwards, its forward bubble) and one swap ratio for the adjusted stages (``grid``: those pairs only);
    keep the best simulated iteration that fits in memory as measured on its timeline."""
    p = len(costs)
    over = overflowing(costs, c, m)
    best: Plan | None = None
    for e, beta in (grid if grid is not None else search_grid(p, knobs)):
        got = _fit_by_simulation(costs, c, m, over, e, beta, knobs.drop)
        if got is None:
            continue
        stages, sim = got
        if best is None or sim.makespan < best.time_s - 1e-12:
            best = Plan(name, parts, stages, sim, e=e, beta=beta)
    return best if best is not None else Plan(name, parts, None, oom_stages=over)


def plan_obscura(costs: list[StageCost], parts: list[StageLoad], c: Cluster, m: int, swap: bool = True,
                 name: str = "Obscura") -> Plan:
    """Steps 2-4 with every knob but partition adjustment (``swap`` False: dependency relaxation only)."""
    return plan_search(costs, parts, c, m, Knobs(swap=swap, adjust=False), name)


def adjust_partition(t: Transformer, c: Cluster, m: int, parts: list[StageLoad] | None = None,
                     max_moves: int = 64, knobs: Knobs = ALL, name: str = "Obscura", start: Plan | None = None) -> Plan:
    """Step 5: move one half-layer at a time from the slowest adjusted stage towards the fastest
    non-adjusted stage (shifting the boundaries in between by one unit so the model stays contiguous)
    while the re-planned iteration gets shorter; revert the move that does not help. Each move re-plans
    around the current (e, beta) (e +- 1, beta +- one grid step; the paper's Alg. 1 uses its closed form
    here instead), and the final partition gets the full search. Without ``knobs.adjust`` this is the plan
    search on the even partition. ``start``: that search's result, if already known."""
    parts = parts or even_partition(t, c.stages)
    costs = stage_costs(t, parts, c)
    best = replace(start, name=name) if start is not None else plan_search(costs, parts, c, m, knobs, name)
    moved_any = False
    full_grid = set(search_grid(c.stages, knobs))
    for _ in range(max_moves if knobs.adjust else 0):
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
        b = SWAP_GRID.index(best.beta) if best.beta in SWAP_GRID else 0
        near = [(e, beta) for e in (best.e - 1, best.e, best.e + 1)
                for beta in SWAP_GRID[max(0, b - 1):b + 2] if (e, beta) in full_grid]
        cand = plan_search(new_costs, moved, c, m, knobs, name, grid=near)
        if cand.time_s >= best.time_s - 1e-12:
            break
        parts, costs, best, moved_any = moved, new_costs, cand, True
    if moved_any:
        final = plan_search(costs, parts, c, m, knobs, name)
        if final.time_s < best.time_s - 1e-12:
            best = final
    return best


def _shift(parts: list[StageLoad], src: int, dst: int) -> list[StageLoad] | None:
    """Move one half-layer from ``src`` to ``dst`` through the stages between them (each passes its edge
    unit on), keeping the attention/MLP sequence contiguous."""
    units: list[str] = []
    for load in parts:
        first = "attn" if len(units) % 2 == 0 else "mlp"
        units += [first if i % 2 == 0 else ("mlp" if first == "attn" else "attn") for i in range(load.halves)]
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


def with_ops(plan: Plan, costs: list[StageCost], c: Cluster, m: int) -> Plan:
    """``plan`` re-simulated keeping every op (for validation, plots and traces)."""
    if plan.stages is None:
        return plan
    return replace(plan, sim=simulate(costs, plan.stages, m, c, keep_ops=True), _schedule=None)


def validate_plan(plan: Plan, costs: list[StageCost], c: Cluster, m: int) -> list[str]:
    """Dependencies and overlaps on every compute and link channel (the shared validator) of the re-simulated
    plan, and each stage's peak memory measured on its timeline (states + reserve + activations, swaps
    included) against the GPU."""
    if plan.stages is None:
        return []
    full = with_ops(plan, costs, c, m)
    problems = [f"{plan.name}: {x}" for x in P.validate(full.schedule)]
    if abs(full.time_s - plan.time_s) > 1e-9 * max(1.0, plan.time_s):
        problems.append(f"{plan.name}: re-simulation gives {full.time_s:.6f} s, the plan said {plan.time_s:.6f}")
    for s, sc in enumerate(costs):
        total = sc.states + RESERVED_GB * GB + full.sim.peaks[s]
        if total > c.gpu_gb * GB + 1e-3:
            problems.append(f"{plan.name}: stage {s} peaks at {total / GB:.1f} GB of {c.gpu_gb:g}")
    return problems


def check_cluster(c: Cluster, m: int) -> None:
    if c.stages < 2 or m < 1 or c.seq < 1:
        raise InputError(f"{c.stages} stages, {m} micro-batches, {c.seq} tokens.", field="cluster",
                         fix="use >= 2 stages and positive micro-batches and sequence length.")


__all__ = ["ALL", "Cluster", "Knobs", "MODELS", "Plan", "STRAWMAN_SWAP", "adjust_partition", "plan_obscura",
           "plan_search", "plan_uniform", "replace"]
