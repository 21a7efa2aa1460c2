"""Synthetic 1F1B traces with injectable straggler causes, for testing attribution (labelled synthetic)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from syslab.core.errors import InputError
from syslab.training.pipeline import one_f_one_b_order
from syslab.training.stragglers.model import DependencyModel, chain_deps
from syslab.training.stragglers.simulator import Simulator
from syslab.training.stragglers.trace import (
    AG,
    BRECV,
    BSEND,
    BWD,
    CLIP,
    EMBEDDING_AR,
    FRECV,
    FSEND,
    FWD,
    GC,
    LAYERNORM_AR,
    OPTIMIZER,
    P2P,
    RS,
    TRACE_COLUMNS,
    JobMeta,
    Node,
    validate_trace,
)

# ---------------------------------------------------------------------------------------------------------
# Synthetic traces: a 1F1B job with injectable causes (for the attribution test; labelled synthetic)
# ---------------------------------------------------------------------------------------------------------

CAUSES = ("last-stage", "sequence-imbalance", "gc", "slow-worker")


@dataclass(frozen=True)
class SynthConfig:
    """A pp x dp job running Megatron-style 1F1B. Durations are round numbers of our choosing (seconds),
    not measurements: the attribution test depends on which op is slow, not on absolute times."""

    pp: int = 4
    dp: int = 4
    microbatches: int = 8
    steps: int = 20
    forward_s: float = 0.05          # backward = 2 x forward (the usual FLOP ratio)
    p2p_s: float = 0.002
    all_gather_s: float = 0.02
    reduce_scatter_s: float = 0.04
    embedding_ar_s: float = 0.01
    clip_s: float = 0.01
    optimizer_s: float = 0.03
    gc_s: float = 0.0005             # a GC pass with nothing to collect
    compute_jitter: float = 0.02     # lognormal sigma of compute-time noise
    comm_jitter: float = 0.10        # lognormal sigma of transfer-time noise
    launch_delay_s: float = 0.0005   # mean CPU launch gap (exponential), on 5% of ops
    last_stage_factor: float = 1.3   # cause 'last-stage': loss + vocabulary layers (+30% compute)
    gc_pause_s: float = 0.2          # cause 'gc': a 200 ms Python GC pause ...
    gc_probability: float = 0.1      # ... on each rank in 10% of steps
    slow_worker_factor: float = 1.5  # cause 'slow-worker': one GPU's compute runs 1.5x slower
    seq_sigma: float = 1.0           # cause 'sequence-imbalance': lognormal document lengths per micro-batch


def synthetic_model(cfg: SynthConfig) -> DependencyModel:
    """The job's true dependency model, with the same semantics the analysis infers from a trace."""
    pp, m = cfg.pp, cfg.microbatches
    deps: dict[Node, list[Node]] = defaultdict(list)
    nodes: list[Node] = []
    groups: list[list[Node]] = []
    for s in range(pp):
        order = [(FWD if kind == "F" else BWD, j) for kind, j in one_f_one_b_order(s, pp, m)]
        comp = [(t, i, s) for t, i in order]
        nodes += comp
        chain_deps(deps, comp)
        streams = {FRECV: s > 0, FSEND: s < pp - 1, BRECV: s < pp - 1, BSEND: s > 0}
        for optype, exists in streams.items():
            if not exists:
                continue
            ops = [(optype, i, s) for i in range(m)]
            nodes += ops
            chain_deps(deps, ops)
            compute = FWD if optype.startswith("forward") else BWD
            for i, op in enumerate(ops):
                if optype.endswith("send"):
                    deps[op].append((compute, i, s))
                else:
                    deps[(compute, i, s)].append(op)
                    if i:
                        deps[op].append((compute, i - 1, s))
        first_bwd = [t for t, _ in order].index(BWD)
        if first_bwd >= 2:
            for optype in (BRECV, BSEND):
                if streams[optype]:
                    deps[(optype, 0, s)].append(comp[first_bwd - 2])
        if s < pp - 1:
            groups += [[(FSEND, i, s), (FRECV, i, s + 1)] for i in range(m)]
            groups += [[(BRECV, i, s), (BSEND, i, s + 1)] for i in range(m)]
        data_parallel = cfg.dp > 1     # without DP there are no parameter all-gathers or grad reduce-scatters
        tail = [(GC, 0, s), (LAYERNORM_AR, 0, s)] + ([(EMBEDDING_AR, 0, s)] if s in (0, pp - 1) else [])
        tail += [(RS, 0, s)] if data_parallel else []
        tail += [(CLIP, 0, s), (OPTIMIZER, 0, s)]
        nodes += tail
        if data_parallel:
            nodes.append((AG, 0, s))
            deps[(FWD, 0, s)].append((AG, 0, s))
            chain_deps(deps, [(AG, 0, s), (RS, 0, s)])
            groups += [[(AG, 0, s)], [(RS, 0, s)]]
        chain_deps(deps, tail, [comp[-1]])
    groups.append([(EMBEDDING_AR, 0, 0), (EMBEDDING_AR, 0, pp - 1)] if pp > 1 else [(EMBEDDING_AR, 0, 0)])
    groups.append([(CLIP, 0, s) for s in range(pp)])
    dp_sync = {n for g in groups for n in g if n[0] in (AG, RS, CLIP)}
    return DependencyModel(nodes=nodes, deps={n: list(dict.fromkeys(deps[n])) for n in nodes}, groups=groups,
                           dp_sync=dp_sync)


def synthesize_trace(cfg: SynthConfig, cause: str | None, rng: np.random.Generator) -> tuple[pd.DataFrame, JobMeta]:
    """Simulate ``cfg.steps`` steps of the job with one injected ``cause`` and return a trace in the
    artifact's schema (plus its metadata). The job model is the shared max-plus simulator over the true
    dependency model; the analysis later rebuilds that model from timestamps alone."""
    if cause is not None and cause not in CAUSES:
        raise InputError(f"unknown cause {cause!r}.", field="cause", fix=f"use one of {', '.join(CAUSES)}.")
    model = synthetic_model(cfg)
    n, k = len(model.nodes), cfg.steps * cfg.dp
    optype = np.array([x[0] for x in model.nodes], dtype=object)
    seq = np.array([x[1] for x in model.nodes])
    stage = np.array([x[2] for x in model.nodes])
    base = {FWD: cfg.forward_s, BWD: 2 * cfg.forward_s, AG: cfg.all_gather_s, RS: cfg.reduce_scatter_s,
            EMBEDDING_AR: cfg.embedding_ar_s, CLIP: cfg.clip_s, OPTIMIZER: cfg.optimizer_s, GC: cfg.gc_s,
            LAYERNORM_AR: 1e-4, **{p: cfg.p2p_s for p in P2P}}
    is_compute = np.isin(optype, [FWD, BWD])
    dur = np.array([base[o] for o in optype])[:, None] * np.ones((1, k))
    dur *= np.where(is_compute[:, None], rng.lognormal(0, cfg.compute_jitter, (n, k)),
                    rng.lognormal(0, cfg.comm_jitter, (n, k)))
    dp_of = np.tile(np.arange(cfg.dp), cfg.steps)
    if cause == "last-stage":
        dur[is_compute & (stage == cfg.pp - 1)] *= cfg.last_stage_factor
    elif cause == "slow-worker":
        d, s = int(rng.integers(cfg.dp)), int(rng.integers(cfg.pp))
        dur[np.ix_(is_compute & (stage == s), dp_of == d)] *= cfg.slow_worker_factor
    elif cause == "sequence-imbalance":
        # Work of a packed micro-batch ~ sum(d) + c * sum(d^2) with c chosen so attention equals the linear
        # part for a document filling the whole context; normalised to mean 1 over micro-batches.
        work = np.empty((cfg.microbatches, k))
        for mb in range(cfg.microbatches):
            for col in range(k):
                docs = np.minimum(rng.lognormal(np.log(0.05), cfg.seq_sigma, 64), 1.0)
                docs = docs[np.cumsum(docs) <= 1.0] if docs[0] <= 1.0 else docs[:1]
                work[mb, col] = docs.sum() + (docs ** 2).sum()
        work /= work.mean()
        dur[is_compute] *= work[seq[is_compute]]   # a micro-batch is equally heavy on every stage
    elif cause == "gc":
        pauses = rng.random((cfg.pp, k)) < cfg.gc_probability
        gc_rows = np.flatnonzero(optype == GC)
        dur[gc_rows] += np.where(pauses[stage[gc_rows]], cfg.gc_pause_s, 0.0)
    delay = np.where(rng.random((n, k)) < 0.05, rng.exponential(cfg.launch_delay_s, (n, k)), 0.0)

    sim = Simulator(model, cfg.steps, cfg.dp)
    gid = model.group_of()
    transfer = np.where(np.array([x in gid for x in model.nodes])[:, None], dur, np.nan)
    start, end = sim.run(dur, transfer, delay)
    step_len = sim.span(start, end)
    offsets = np.concatenate([[0.0], np.cumsum(step_len[:-1] + 0.1)])   # steps back to back, 100 ms apart
    step_of = np.repeat(np.arange(cfg.steps), cfg.dp)
    rows = pd.DataFrame({
        "dp_rank": np.tile(dp_of, n), "stage": np.repeat(stage, k), "step": np.tile(step_of, n),
        "optype": np.repeat(optype, k).astype(str), "start_ts": (start + offsets[step_of]).ravel(),
        "duration": (end - start).ravel(), "seq_id": np.repeat(seq, k),
    })
    rows["rank"] = rows.stage * cfg.dp + rows.dp_rank
    computed = rows.optype.isin((FWD, BWD))
    rows["mc"] = np.where(computed | rows.optype.isin((AG, RS)), 0, -1)
    rows["gmc"] = np.where(computed, rows.stage, -1)
    rows["mb_id"] = np.where(computed, rows.seq_id, -1)
    meta = JobMeta(trial_name=f"synthetic-{cause or 'none'}", dp_size=cfg.dp, pp_size=cfg.pp,
                   world_size=cfg.dp * cfg.pp)
    return validate_trace(rows[list(TRACE_COLUMNS)]), meta
