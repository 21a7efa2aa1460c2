"""What-if analysis (§4, §5): ideal durations, slowdown S, attribution, M_S, M_W, custom what-ifs."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from syslab.core.errors import InputError
from syslab.core.timeline import Span, chrome_trace
from syslab.training.stragglers.model import build_dependency_model
from syslab.training.stragglers.simulator import Simulator, TraceTensor, to_tensor
from syslab.training.stragglers.trace import (
    ATTRIBUTION_GROUP,
    BWD,
    CLOCK_EPS_S,
    COMM_OPTYPES,
    DECOMPOSE_THRESHOLD,
    FWD,
    GC,
    WORKER_TOP_PERCENT,
    JobMeta,
    load_meta,
    load_trace,
)

# ---------------------------------------------------------------------------------------------------------
# What-if analysis (§4): transfer durations, launch delays, the ideal trace, S, attribution, M_S and M_W
# ---------------------------------------------------------------------------------------------------------

def transfer_durations(t: TraceTensor) -> np.ndarray:
    """A collective's transfer duration = its end - the latest start among its group (time not spent
    waiting for peers). Negative values below -10 ms (only PP sends, clock skew) are clamped to 0."""
    transfer = np.full_like(t.start, np.nan)
    index = {n: i for i, n in enumerate(t.model.nodes)}
    for g in t.model.groups:
        members = [index[m] for m in g]
        go = t.start[members].max(axis=0)
        if any(m in t.model.dp_sync for m in g):
            go = np.repeat(go.reshape(t.n_steps, t.dp).max(axis=1), t.dp)
        transfer[members] = t.end[members] - go
    transfer[transfer <= -CLOCK_EPS_S] = 0.0
    return transfer


def launch_delays(t: TraceTensor) -> np.ndarray:
    """An op's launch delay = its start - the latest end of its dependencies (CPU-side gaps)."""
    delay = np.empty_like(t.start)
    index = {n: i for i, n in enumerate(t.model.nodes)}
    for i, n in enumerate(t.model.nodes):
        deps = [index[u] for u in t.model.deps[n]]
        ready = t.end[deps].max(axis=0) if deps else 0.0
        delay[i] = t.start[i] - ready
    delay[delay <= -CLOCK_EPS_S] = 0.0
    return delay


def ideal_values(t: TraceTensor, duration: np.ndarray, transfer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every compute op takes its op type's mean duration; every communication op its type's median
    (reduced over DP ranks, stages and steps)."""
    ideal_d, ideal_t = duration.copy(), transfer.copy()
    optypes = np.array([n[0] for n in t.model.nodes])
    for optype in np.unique(optypes):
        rows = optypes == optype
        if optype in COMM_OPTYPES:
            ideal_d[rows] = np.median(duration[rows])
            values = transfer[rows]
            if np.isfinite(values).any():
                ideal_t[rows] = np.nanmedian(values)
        else:
            ideal_d[rows] = duration[rows].mean()
    return ideal_d, ideal_t


@dataclass
class Explained:
    """rem/add of explain-slowdown: the share of (T_ori - T_ideal) removed/added by one set of ops."""

    t_ori: float
    t_ideal: float
    t_rem: float
    t_add: float

    @property
    def rem(self) -> float:
        return (self.t_ori - self.t_rem) / (self.t_ori - self.t_ideal) if self.t_ori != self.t_ideal else math.nan

    @property
    def add(self) -> float:
        return (self.t_add - self.t_ideal) / (self.t_ori - self.t_ideal) if self.t_ori != self.t_ideal else math.nan


@dataclass
class Analysis:
    """The what-if analysis of one trace. Slowdowns are ratios of mean step times."""

    meta: JobMeta
    steps: list[int]
    slowdown: float                                   # S = mean(T_nodelay) / mean(T_ideal), Eq. 1
    launch_slowdown: float                            # mean(T_trace) / mean(T_nodelay)
    step_slowdown: dict[int, float]
    step_t_trace: list[float]
    step_t_nodelay: list[float]
    step_t_ideal: list[float]
    sim_error: float                                  # |simulated - traced| step time, relative, with delays
    by_optype: dict[str, float] | None = None         # S_t (Eq. 2): ideal trace with type t restored
    by_dp_rank: dict[int, float] | None = None
    by_stage: dict[int, float] | None = None
    m_s: Explained | None = None
    m_w: Explained | None = None
    worst_workers: list[dict[str, int]] = field(default_factory=list)
    # positive evidence of sequence imbalance: Spearman rho (and its p-value) between a micro-batch's forward
    # and backward compute time, within each step, DP rank and stage (``microbatch_work_agreement``)
    work_agreement: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `syslab stragglers analyze --json`."""
        return {
            "trial": self.meta.trial_name,
            "slowdown": self.slowdown,
            "launch_slowdown": self.launch_slowdown,
            "by_optype": self.by_optype,
            "by_dp_rank": None if self.by_dp_rank is None else {str(k): v for k, v in self.by_dp_rank.items()},
            "by_stage": None if self.by_stage is None else {str(k): v for k, v in self.by_stage.items()},
            "m_w": None if self.m_w is None else self.m_w.rem,
            "m_s": None if self.m_s is None else self.m_s.rem,
            "worst_workers": self.worst_workers,
            "work_agreement": None if self.work_agreement is None else
            {"spearman_rho": self.work_agreement[0], "p_value": self.work_agreement[1]},
            "root_cause": name_root_cause(self),
            "sim_error": self.sim_error,
            "steps": len(self.steps),
        }

    def heatmap(self) -> np.ndarray | None:
        """[stage, dp_rank] = min(S_dp_rank, S_stage): the per-worker score M_W ranks workers by."""
        if self.by_dp_rank is None or self.by_stage is None:
            return None
        dp, pp = len(self.by_dp_rank), len(self.by_stage)
        grid = np.zeros((pp, dp))
        for d, s_d in self.by_dp_rank.items():
            for s, s_s in self.by_stage.items():
                grid[s, d] = min(s_d, s_s)
        return grid


def _sorted_desc(d: dict) -> dict:
    return dict(sorted(d.items(), key=lambda kv: -kv[1]))


class Replay:
    """A trace ready for what-if questions: its dependency model, per-op durations and the simulator.

    ``step_times(duration, transfer)`` re-simulates every step with the given [op, copy] matrices;
    ``ops(optype=..., stage=..., dp_rank=...)`` selects entries to change. This is what ``analyze`` uses,
    and what a user's custom what-if ("what if PP communication were free?") starts from.
    """

    def __init__(self, df: pd.DataFrame, meta: JobMeta, source: str = "<trace>") -> None:
        pp = int(df.stage.max()) + 1
        if pp != meta.pp_size:
            raise InputError(f"the trace has {pp} stages but the metadata says pp_size={meta.pp_size}.",
                             file=source, field="pp_size", fix="pass the metadata of the job that recorded this trace.")
        dp = int(df.dp_rank.max()) + 1
        if dp > meta.dp_size:
            raise InputError(f"the trace has {dp} DP ranks but the metadata says dp_size={meta.dp_size}.",
                             file=source, field="dp_size", fix="pass the metadata of the job that recorded this trace.")
        self.meta, self.pp = meta, pp
        self.model = build_dependency_model(df, meta.dsp_size, source)
        self.tensor = to_tensor(df, self.model, source)
        self.sim = Simulator(self.model, self.tensor.n_steps, self.tensor.dp)
        t = self.tensor
        self.duration = t.end - t.start
        self.transfer = transfer_durations(t)
        self.delay = launch_delays(t)
        self.optypes = np.array([n[0] for n in self.model.nodes], dtype=object)
        self.stages = np.array([n[2] for n in self.model.nodes])
        self.dp_ranks = np.tile(np.arange(t.dp), t.n_steps)

    def ops(self, optype: str | tuple[str, ...] | None = None, stage: int | None = None,
            dp_rank: int | None = None) -> np.ndarray:
        """Boolean [op, copy] mask of the ops matching every given criterion."""
        rows = np.ones(len(self.model.nodes), dtype=bool)
        if optype is not None:
            rows &= np.isin(self.optypes, [optype] if isinstance(optype, str) else list(optype))
        if stage is not None:
            rows &= self.stages == stage
        cols = np.ones(self.duration.shape[1], dtype=bool) if dp_rank is None else self.dp_ranks == dp_rank
        return rows[:, None] & cols[None, :]

    def simulate(self, duration: np.ndarray | None = None, transfer: np.ndarray | None = None,
                 with_delays: bool = False) -> tuple[np.ndarray, np.ndarray]:
        return self.sim.run(self.duration if duration is None else duration,
                            self.transfer if transfer is None else transfer,
                            self.delay if with_delays else None)

    def step_times(self, duration: np.ndarray | None = None, transfer: np.ndarray | None = None) -> np.ndarray:
        """Per-step time (first start to last end over all ranks) without launch delays."""
        return self.sim.span(*self.simulate(duration, transfer))

    def spans(self, step_index: int, start: np.ndarray, end: np.ndarray, label: str) -> list[Span]:
        """One step of a simulated (or recorded) timeline as Chrome-trace spans, one track per worker."""
        t, out = self.tensor, []
        for d in range(t.dp):
            k = step_index * t.dp + d
            for i, (optype, seq, stage) in enumerate(self.model.nodes):
                out.append(Span(f"{optype} {seq}", f"dp{d:03d} stage{stage:02d} (rank {t.rank[i, d]})",
                                float(start[i, k]), float(end[i, k]), optype, {"seq_id": seq}, label))
        return out


def write_timeline(df: pd.DataFrame, meta: JobMeta, path: str | Path, step: int | None = None) -> Path:
    """Chrome trace (Perfetto) of one step three ways: as recorded, replayed without launch delays, and
    ideal. ``step`` defaults to the step with the largest straggler slowdown."""
    r = Replay(df, meta)
    t = r.tensor
    ideal_d, ideal_t = ideal_values(t, r.duration, r.transfer)
    ideal = r.sim.run(ideal_d, ideal_t)
    nodelay = r.simulate()
    if step is None:
        i = int(np.argmax(r.sim.span(*nodelay) / r.sim.step_time(ideal[1])))
    elif step in set(t.steps.tolist()):
        i = int(np.searchsorted(t.steps, step))
    else:
        raise InputError(f"step {step} is not in the trace.", field="--step",
                         fix=f"choose one of {t.steps.tolist()[:10]}{' ...' if len(t.steps) > 10 else ''}.")
    spans = (r.spans(i, t.start, t.end, "recorded") + r.spans(i, *nodelay, "no launch delays")
             + r.spans(i, *ideal, "ideal"))
    path = Path(path)
    path.write_text(json.dumps(chrome_trace(spans)))
    return path


def analyze(df: pd.DataFrame, meta: JobMeta, source: str = "<trace>",
            decompose_threshold: float = DECOMPOSE_THRESHOLD) -> Analysis:
    """Run the what-if analysis on a validated trace (see ``load_trace``)."""
    r = Replay(df, meta, source)
    t, sim, pp = r.tensor, r.sim, r.pp
    duration, transfer = r.duration, r.transfer
    t_trace = sim.span(t.start, t.end)
    sim_error = float(np.max(np.abs(sim.span(*r.simulate(with_delays=True)) - t_trace) / t_trace))

    # 1. T_nodelay: launch delays removed. Comm ops now wait only for peers, not for the CPU.
    t_nodelay = r.step_times()
    # 2. T_ideal: every op at its type's mean (compute) or median (communication).
    ideal_d, ideal_t = ideal_values(t, duration, transfer)
    s_id, e_id = sim.run(ideal_d, ideal_t)
    t_ideal = sim.step_time(e_id)
    slowdown = float(t_nodelay.mean() / t_ideal.mean())                      # Eq. 1

    a = Analysis(meta=meta, steps=[int(s) for s in t.steps], slowdown=slowdown,
                 launch_slowdown=float(t_trace.mean() / t_nodelay.mean()),
                 step_slowdown={int(s): float(x) for s, x in zip(t.steps, t_nodelay / t_ideal, strict=True)},
                 step_t_trace=t_trace.tolist(), step_t_nodelay=t_nodelay.tolist(), step_t_ideal=t_ideal.tolist(),
                 sim_error=sim_error)
    original, ideal = (duration, transfer), (ideal_d, ideal_t)

    # 3. M_S: idealise every op of the last PP stage (rem) / restore them in the ideal trace (add).
    t_ideal_span = float(sim.span(s_id, e_id).mean())
    a.m_s = _explain(r, r.ops(stage=pp - 1), original, ideal, float(t_nodelay.mean()), t_ideal_span)

    if slowdown < decompose_threshold:
        return a

    # 4. Attribution (Eqs. 2, 4): restore one group's original durations in the ideal trace.
    def attribute(mask: np.ndarray) -> float:
        _, e = sim.run(*_restored(mask, ideal, original))
        return float(sim.step_time(e).mean() / t_ideal.mean())

    groups: dict[str, list[str]] = defaultdict(list)
    for optype in dict.fromkeys(r.optypes):
        groups[ATTRIBUTION_GROUP.get(optype, optype)].append(optype)
    a.by_optype = _sorted_desc({g: attribute(r.ops(optype=tuple(ts))) for g, ts in groups.items()})
    a.by_dp_rank = _sorted_desc({d: attribute(r.ops(dp_rank=d)) for d in range(t.dp)})
    a.by_stage = _sorted_desc({s: attribute(r.ops(stage=s)) for s in range(pp)})
    a.work_agreement = microbatch_work_agreement(df)

    # 5. M_W: idealise the top 3% of workers ranked by min(S_dp_rank, S_stage).
    workers = sorted({(int(t.rank[i, d]), d, int(r.stages[i])) for i in range(len(r.stages)) for d in range(t.dp)})
    score = {w[0]: min(a.by_dp_rank[w[1]], a.by_stage[w[2]]) for w in workers}
    n_top = -(-len(workers) * WORKER_TOP_PERCENT // 100)
    top = sorted(workers, key=lambda w: (-score[w[0]], w[0]))[:n_top]
    mask = np.zeros(duration.shape, dtype=bool)
    for _, d, s in top:
        mask |= r.ops(stage=s, dp_rank=d)
    a.worst_workers = [{"rank": w, "dp_rank": d, "stage": s} for w, d, s in top]
    a.m_w = _explain(r, mask, original, ideal, float(t_nodelay.mean()), t_ideal_span)
    return a


def _restored(mask: np.ndarray, base: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray]:
    """``base`` durations with the masked entries taken from ``other``."""
    return np.where(mask, other[0], base[0]), np.where(mask, other[1], base[1])


def _explain(r: Replay, mask: np.ndarray, original: tuple[np.ndarray, np.ndarray],
             ideal: tuple[np.ndarray, np.ndarray], t_ori: float, t_ideal: float) -> Explained:
    """explain-slowdown: idealise the masked ops in the original (rem) and restore them in the ideal (add)."""
    t_rem = float(r.step_times(*_restored(mask, original, ideal)).mean())
    t_add = float(r.step_times(*_restored(mask, ideal, original)).mean())
    return Explained(t_ori=t_ori, t_ideal=t_ideal, t_rem=t_rem, t_add=t_add)


def analyze_files(trace: str | Path, meta: str | Path) -> Analysis:
    """Load, validate and analyse a trace parquet with its metadata YAML."""
    job = load_meta(meta)
    df = load_trace(trace)
    return analyze(df, job, source=str(trace))


def microbatch_work_agreement(df: pd.DataFrame) -> tuple[float, float]:
    """Spearman rho and p-value between each micro-batch's forward and backward compute time (log, minus the
    median of its step, DP rank and stage). A micro-batch's sequence lengths set the work of both passes, so
    sequence imbalance makes them agree; compute noise, a slow GPU or a heavy stage do not (they move whole
    ranks, stages or steps, which the median removes). The paper correlates compute time with sequence
    length; our traces carry no lengths, so this agreement is the evidence we can compute. O(ops)."""
    from scipy import stats

    c = df[df["optype"].isin([FWD, BWD])]
    g = (c.groupby(["step", "dp_rank", "stage", "seq_id", "optype"], observed=True)["duration"].sum()
         .unstack("optype").dropna())
    if len(g) < 8 or g.shape[1] < 2 or (g <= 0).to_numpy().any():
        return 0.0, 1.0
    lg = np.log(g[[FWD, BWD]])
    res = lg - lg.groupby(level=["step", "dp_rank", "stage"]).transform("median")
    rho, p = stats.spearmanr(res[FWD], res[BWD])
    return (0.0, 1.0) if not np.isfinite(rho) else (float(rho), float(p))


# ---------------------------------------------------------------------------------------------------------
# Naming the root cause (§5)
# ---------------------------------------------------------------------------------------------------------

WORK_AGREEMENT_MIN = 0.5      # rho: a micro-batch's two passes clearly share their work (ours)
WORK_AGREEMENT_P = 0.01


def name_root_cause(a: Analysis) -> str:
    """Name the dominant cause: 'none' below the threshold; 'gc' when GC tops the op types; 'slow-worker'
    when idealising the top 3% of workers removes at least half of the slowdown (M_W >= 0.5); 'last-stage'
    when idealising the last stage takes the job *below* the ideal (M_S > 1: that stage is systematically
    heavier, not just noisy); when compute tops the op types, 'sequence-imbalance' only with positive evidence
    (a micro-batch's forward and backward times agree, ``microbatch_work_agreement``: rho >= 0.5, p < 0.01),
    else 'noise' (compute varies, but not with the micro-batch); else 'other'."""
    if a.slowdown < DECOMPOSE_THRESHOLD or a.by_optype is None:
        return "none"
    top_type = next(iter(a.by_optype))
    if top_type == GC:
        return "gc"
    if a.m_w is not None and a.m_w.rem >= 0.5:
        return "slow-worker"
    if a.m_s is not None and a.m_s.rem > 1.0:
        return "last-stage"
    if top_type in (FWD, BWD):
        rho, p = a.work_agreement if a.work_agreement is not None else (0.0, 1.0)
        return "sequence-imbalance" if rho >= WORK_AGREEMENT_MIN and p < WORK_AGREEMENT_P else "noise"
    return "other"


def synchronized_gc_recovery(df: pd.DataFrame, meta: JobMeta, pause_threshold_s: float = 0.05,
                             synchronise: bool = True) -> dict[str, float]:
    """What if every rank collected garbage in the same steps? Each rank keeps its number of GC pauses
    (on average), but all pauses land in the same steps, so a step pays one pause instead of waiting for
    whichever rank paused. Returns T_nodelay, T_sync, T_nogc and the share of GC slowdown recovered.
    ``synchronise=False`` is the baseline (every pause stays where it was recorded), for a negative control."""
    r = Replay(df, meta)
    gc = r.ops(optype=GC)
    if not gc.any():
        raise InputError("the trace has no gc ops.", field="optype", fix="record Python GC pauses as 'gc' ops.")
    rows = np.flatnonzero(gc.any(axis=1))
    pauses = r.duration[rows] > pause_threshold_s          # [stage, copy]
    quiet = float(np.median(r.duration[rows][~pauses])) if (~pauses).any() else 0.0
    n_steps, dp = r.tensor.n_steps, r.tensor.dp
    events_per_worker = pauses.sum() / (len(rows) * dp)
    n_sync = int(round(events_per_worker))
    per_step = pauses.reshape(len(rows), n_steps, dp).sum(axis=(0, 2))
    sync_steps = np.argsort(-per_step, kind="stable")[:n_sync]
    mean_pause = float(r.duration[rows][pauses].mean()) if pauses.any() else 0.0

    no_gc, synced = r.duration.copy(), r.duration.copy()
    no_gc[rows] = quiet
    if synchronise:
        synced[rows] = quiet
        in_sync = np.isin(np.repeat(np.arange(n_steps), dp), sync_steps)
        synced[np.ix_(rows, np.flatnonzero(in_sync))] = mean_pause
    t_now = float(r.step_times().mean())
    t_sync = float(r.step_times(synced).mean())
    t_nogc = float(r.step_times(no_gc).mean())
    recovered = (t_now - t_sync) / (t_now - t_nogc) if t_now > t_nogc else math.nan
    return {"t_nodelay_s": t_now, "t_sync_gc_s": t_sync, "t_no_gc_s": t_nogc, "recovered": recovered,
            "pauses_per_worker": float(events_per_worker)}
