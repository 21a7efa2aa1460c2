"""Optimus's planner and bubble scheduler, and the two baselines (Feng et al., ATC'25).

**Baselines, as the paper ran them (§5.1 and Appendix D, Table 12).** *Megatron-LM*: "we place multimodal
encoders in the pre-process in the first pipeline stage"; (DP, PP = 8, TP = 8) with no virtual chunks, so
Megatron's plain 1F1B with stage 0 holding the whole encoder and its 12 LLM layers (Megatron-LM's own
multimodal models build the vision encoder where ``pre_process`` is set, the first stage, the same layout).
*Megatron-LM balanced*: interleaved 1F1B with V = 12 chunks, and the concatenated encoder + LLM layers split
over the 96 virtual stages by an exact min-max contiguous partition (Appendix B's DP over the layer sequence,
here exact rather than FLOP-estimated). Both run the DP all-gather before and the reduce-scatter after.

**Optimus.** The LLM keeps its even partition over the same V chunks; the encoder gets its own pipelines over
the same GPUs: with ``enc_pp`` encoder stages (dividing PP), there are m = PP / enc_pp encoder pipelines per
LLM pipeline, pipeline e's stage k on LLM stage e x enc_pp + k (TP stays 8). Encoder kernels are packed into
the LLM's idle time:

* a compute kernel needs a gap in the device's compute (PP bubbles, TP bubbles, the DP all-gather and
  reduce-scatter windows); a TP all-reduce kernel needs the device's NVLink free, i.e. it may only overlap
  LLM *compute*, never LLM communication (the paper's placement rule); kernels are never preempted;
* each encoder micro-batch's kernels run in order, stage after stage (backward in reverse);
* dependencies (the paper's CheckEncLLMDep, §4.3): sorting the encoder forwards' finish times EF and the
  LLM's forward dependency points F (when the first stage starts chunk 0's forward of a micro-batch),
  EF_i <= F_i for every i; sorting the encoder backwards' starts EB and the backward dependency points B
  (when the first stage ends chunk 0's backward), EB_i >= B_i.

**GetEncLLMDep (§4.3, Fig. 12).** The dependency points come from the LLM's interleaved 1F1B after the
paper's warm-up adjustment: "deferring forward data dependency points for the last [micro-batches] is
feasible without exerting any adverse effects on the overall pipeline latency ... we can adjust the number of
warmup microbatches at each pipeline stage". ``get_enc_llm_dep`` starts from Megatron's warm-up counts,
(p - s - 1) x 2 + (V - 1) x p, and lowers one stage's count at a time, keeping a change only if the LLM's
makespan does not grow, no backward point B_i moves later, and the forward points do not move earlier in
sum (a local search; the paper gives no procedure). Fewer warm-up forwards push the later micro-batches'
chunk-0 forwards past the first backwards, into the warm-up-to-steady transition, so their encoder forwards
get that much more time. On the paper's Fig. 12 case (p = 4, V = 2, 8 micro-batches, B = 2F) it defers F5..F8
at an unchanged makespan; on GPT-175B (p = 8, V = 12) it lands on (p - s - 1) + (V - 1) p.

*Coarse* scheduling may only use the time before a device's first LLM kernel (the all-gather plus the
warm-up bubble) and after its last (cool-down plus reduce-scatter); *fine* scheduling may use any gap,
including the interleaved PP and TP bubbles. Our packer is earliest-fit in deadline order: forwards are packed
from time 0, and the LLM's start is the earliest (bisected to 2 ms) at which no forward misses its deadline;
backwards are packed after their releases and may run past the LLM's end. This is our simplification
of the paper's Alg. 2 (which moves one micro-batch at a time along the critical path).

The planner enumerates encoder stage counts and, for m = 2 encoder pipelines, every split of the micro-
batches between them within 25% of even (the paper tries all; m > 2: the even split), prunes plans whose
extra encoder model states exceed 15% of the LLM's (k (DP_enc - DP_llm) Phi_enc / n_gpu, k = 6), and keeps
the shortest iteration.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from syslab.core.errors import InputError
from syslab.training.optimus import model as M

MEMORY_BOUND = 0.15
SHIFT_TOL = 0.002                   # seconds: how finely the LLM's start is searched


# ---------------------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------------------


def megatron(job: M.LLMJob) -> tuple[float, M.P.Schedule]:
    """Megatron-LM as the paper ran it: 1F1B over PP stages (no virtual chunks), the encoder in the first
    stage's pre-process ahead of its share of the LLM's layers."""
    enc = [job.enc.depth] + [0] * (job.pp - 1)
    llm = [job.layers // job.pp] * job.pp
    sch = M.pipeline(job, enc, llm, chunks=1)
    dp = _dp_comm(job, device_params=job.enc.params + job.params / job.pp)
    return dp[0] + sch.makespan + dp[1], sch


def min_max_partition(costs: list[float], parts: int) -> list[int]:
    """Split ``costs`` (in order) into ``parts`` contiguous non-empty groups minimising the largest group
    sum; returns group sizes. Exact DP, O(parts x n^2)."""
    n = len(costs)
    if not 1 <= parts <= n:
        raise InputError(f"{n} layers into {parts} stages.", field="parts", fix="use 1 <= stages <= layers.")
    prefix = np.concatenate([[0.0], np.cumsum(costs)])
    best = np.full((parts + 1, n + 1), np.inf)
    cut = np.zeros((parts + 1, n + 1), dtype=int)
    best[0, 0] = 0.0
    for k in range(1, parts + 1):
        for i in range(k, n - (parts - k) + 1):
            js = np.arange(k - 1, i)
            vals = np.maximum(best[k - 1, js], prefix[i] - prefix[js])
            a = int(np.argmin(vals))
            best[k, i], cut[k, i] = vals[a], js[a]
    sizes, i = [], n
    for k in range(parts, 0, -1):
        sizes.append(i - cut[k, i])
        i = cut[k, i]
    return sizes[::-1]


def balanced(job: M.LLMJob) -> tuple[float, M.P.Schedule, list[int]]:
    """Megatron-LM balanced: the encoder + LLM layers over the pp x V virtual stages by the exact min-max
    partition, interleaved 1F1B."""
    n_v = job.pp * job.chunks
    depth = job.enc.depth
    enc_layer = M.encoder_layer_s(False, job.enc_scale, job.enc) + M.encoder_layer_s(True, job.enc_scale, job.enc)
    layer = [enc_layer] * depth + [job.layer_fwd_s() + job.layer_bwd_s()] * job.layers
    sizes = min_max_partition(layer, n_v)
    enc, llm, i = [], [], 0
    for s in sizes:
        e = max(0, min(s, depth - i))
        enc.append(e)
        llm.append(s - e)
        i += s
    sch = M.pipeline(job, enc, llm)
    dp = _dp_comm(job, device_params=max(sum(enc[v] * job.enc.params / depth + llm[v] * job.params / job.layers
                                             for v in range(d, n_v, job.pp)) for d in range(job.pp)))
    return dp[0] + sch.makespan + dp[1], sch, sizes


def _dp_comm(job: M.LLMJob, device_params: float | None = None) -> tuple[float, float]:
    """All-gather and reduce-scatter time of the device holding ``device_params`` parameters (default: an even
    LLM stage's), a ring over DP on InfiniBand NDR; the times scale with the bytes."""
    scale = 1.0 if device_params is None else device_params / (job.params / job.pp)
    return job.all_gather_s * scale, job.reduce_scatter_s * scale


# ---------------------------------------------------------------------------------------------------------
# The LLM's dependency points: GetEncLLMDep
# ---------------------------------------------------------------------------------------------------------


@dataclass
class LLMTimeline:
    """The LLM alone (no encoder, even layers) under interleaved 1F1B with per-stage ``warmups``, and its
    encoder-LLM dependency points at LLM start 0: ``forward_points`` (F_i, sorted: the first stage starts
    chunk 0's forward) and ``backward_points`` (B_i, sorted: it ends chunk 0's backward)."""

    job: M.LLMJob
    schedule: M.P.Schedule
    warmups: tuple[int, ...]
    forward_points: np.ndarray
    backward_points: np.ndarray
    _busy: dict[int, dict[str, np.ndarray]] | None = field(default=None, repr=False)

    @property
    def makespan(self) -> float:
        return self.schedule.makespan

    def busy(self, offset: float = 0.0) -> dict[int, dict[str, np.ndarray]]:
        """Busy compute and link intervals per device (``model.kernel_intervals``) with the LLM starting at
        ``offset``; the kernels are opened once per timeline and shifted per call."""
        if self._busy is None:
            self._busy = M.kernel_intervals(self.job, self.schedule)
        return {d: {r: a + offset for r, a in res.items()} for d, res in self._busy.items()}


def llm_timeline(job: M.LLMJob, warmups: list[int] | None = None) -> LLMTimeline:
    """The LLM alone with the given warm-up counts (default Megatron's)."""
    n_v = job.pp * job.chunks
    sch = M.pipeline(job, [0] * n_v, [job.layers_per_virtual_stage] * n_v, warmups=warmups)
    if warmups is None:
        warmups = [M.P.interleaved_warmup(s, job.pp, job.chunks, job.microbatches) for s in range(job.pp)]
    m = job.microbatches
    return LLMTimeline(job, sch, tuple(warmups), np.array(sorted(sch.start[f"F0.{j}"] for j in range(m))),
                       np.array(sorted(sch.end[f"B0.{j}"] for j in range(m))))


def get_enc_llm_dep(job: M.LLMJob, adjust: bool = True) -> LLMTimeline:
    """GetEncLLMDep (§4.3): the LLM timeline whose warm-up counts defer the forward dependency points as far
    as the pipeline allows without lengthening it (see the module docstring); ``adjust=False``: Megatron's
    counts. One chunk per stage has no warm-up to adjust here (Optimus's LLM is interleaved)."""
    base = llm_timeline(job)
    if not adjust or job.chunks == 1:
        return base
    tol = 1e-9 * base.makespan
    best, warm = base, list(base.warmups)
    changed = True
    while changed:
        changed = False
        for s in range(job.pp):
            while warm[s] > 0:
                cand = warm[:s] + [warm[s] - 1] + warm[s + 1:]
                try:
                    t = llm_timeline(job, cand)
                except InputError:                         # too few warm-up forwards: the order stalls
                    break
                if (t.makespan > base.makespan + tol or (t.backward_points > base.backward_points + tol).any()
                        or t.forward_points.sum() < best.forward_points.sum() - tol):
                    break
                best, warm, changed = t, cand, True
    return best


class Gaps:
    """Free time of one resource: sorted disjoint gaps; ``place`` takes the earliest fit at or after t."""

    def __init__(self, busy: np.ndarray, windows: list[tuple[float, float]]):
        """``busy``: sorted, disjoint [n, 2] intervals; ``windows``: where this resource may be used."""
        starts = np.concatenate([[-np.inf], busy[:, 1]])
        ends = np.concatenate([busy[:, 0], [np.inf]])
        gs, ge = [], []
        for lo, hi in windows:
            s0, e0 = np.maximum(starts, lo), np.minimum(ends, hi)
            keep = e0 - s0 > 1e-15
            gs.append(s0[keep])
            ge.append(e0[keep])
        self.starts = np.concatenate(gs).tolist()
        self.ends = np.concatenate(ge).tolist()

    def place(self, t: float, duration: float) -> float:
        i = bisect.bisect_right(self.ends, t)
        while i < len(self.ends):
            s = max(self.starts[i], t)
            if s + duration <= self.ends[i] + 1e-15:
                self._take(i, s, s + duration)
                return s
            i += 1
        raise RuntimeError("no room until infinity: the last window must be open-ended")

    def _take(self, i: int, s: float, e: float) -> None:
        g0, g1 = self.starts[i], self.ends[i]
        new = [(a, b) for a, b in ((g0, s), (e, g1)) if b - a > 1e-15]
        self.starts[i:i + 1] = [a for a, _ in new]
        self.ends[i:i + 1] = [b for _, b in new]


@dataclass
class EncoderPlan:
    enc_pp: int
    split: tuple[int, ...]                          # micro-batches per encoder pipeline

    @property
    def pipelines(self) -> int:
        return len(self.split)


@dataclass
class Packed:
    iteration_s: float
    llm_start: float
    enc_forward_end: list[float]
    enc_backward_start: list[float]
    llm_forward_start: list[float]
    llm_backward_end: list[float]
    placed: list[tuple[int, str, float, float, bool]] = field(default_factory=list)   # device, name, start, end, comm
    timeline: LLMTimeline | None = field(default=None, repr=False)                   # the LLM it was packed into


def _assignment(split: tuple[int, ...]) -> list[int]:
    """Encoder pipeline of the k-th micro-batch: interleaved in proportion to the split."""
    keys = [(k / n, e) for e, n in enumerate(split) for k in range(n)]
    return [e for _, e in sorted(keys)]


def pack(job: M.LLMJob, plan: EncoderPlan, fine: bool = True, keep: bool = False,
         timeline: LLMTimeline | None = None) -> Packed:
    """Iteration time with the encoder packed into the LLM's idle time (see the module docstring), against
    ``timeline``'s dependency points (default ``get_enc_llm_dep(job)``)."""
    llm = get_enc_llm_dep(job) if timeline is None else timeline
    first_f, last_b = llm.forward_points.tolist(), llm.backward_points.tolist()
    ag, rs = _dp_comm(job)
    enc_share = job.enc.params / plan.enc_pp / (job.params / job.pp) / plan.pipelines
    enc_ag = ag * enc_share
    owner = _assignment(plan.split)
    layers = job.enc.depth // plan.enc_pp
    fwd_k, bwd_k = (M.encoder_kernels(b, job.enc_scale, job.enc) for b in (False, True))

    def forwards(shift: float):
        gaps = _gaps(job, llm.busy(shift), fine)
        placed: list[tuple[int, str, float, float, bool]] = []
        ef = []
        for j, e in enumerate(owner):
            t = enc_ag
            for k in range(plan.enc_pp):
                d = e * plan.enc_pp + k
                for _ in range(layers):
                    for kern in fwd_k:
                        s = gaps[d]["link" if kern.comm else "compute"].place(t, kern.duration_s)
                        t = s + kern.duration_s
                        if keep:
                            placed.append((d, f"enc-F{j}:{kern.name}", s, t, kern.comm))
            ef.append(t)
        late = max(a - (b + shift) for a, b in zip(sorted(ef), first_f, strict=True))
        return late, gaps, placed, ef

    # The smallest LLM start (to within SHIFT_TOL) at which every encoder forward meets its deadline:
    # pushing the LLM back by the worst miss always works (the misses only come from LLM kernels in the
    # way), then bisect between the last start that failed and the first that worked.
    lo, hi = ag, None
    late, *_ = forwards(lo)
    if late > 1e-12:
        hi = lo + late
        while forwards(hi)[0] > 1e-12:
            hi += forwards(hi)[0]
        while hi - lo > SHIFT_TOL:
            mid = (lo + hi) / 2
            if forwards(mid)[0] > 1e-12:
                lo = mid
            else:
                hi = mid
    shift = lo if hi is None else hi
    _, gaps, placed, ef = forwards(shift)
    eb = []
    end = 0.0
    for j, e in enumerate(owner):
        t = last_b[j] + shift
        eb_j = None
        for k in reversed(range(plan.enc_pp)):
            d = e * plan.enc_pp + k
            for _ in range(layers):
                for kern in bwd_k:
                    s = gaps[d]["link" if kern.comm else "compute"].place(t, kern.duration_s)
                    eb_j = s if eb_j is None else eb_j
                    t = s + kern.duration_s
                    if keep:
                        placed.append((d, f"enc-B{j}:{kern.name}", s, t, kern.comm))
        eb.append(eb_j)
        end = max(end, t)
    llm_end = llm.makespan + shift
    iteration = max(llm_end + rs, end + rs * enc_share)
    return Packed(iteration, shift, ef, eb, [f + shift for f in first_f], [b + shift for b in last_b], placed,
                  llm)


def check_dependencies(p: Packed) -> list[str]:
    """CheckEncLLMDep: the i-th encoder forward to finish before the i-th LLM forward starts on the first
    stage, the i-th encoder backward to start after the i-th LLM backward ends there."""
    problems = []
    for i, (ef, f) in enumerate(zip(sorted(p.enc_forward_end), sorted(p.llm_forward_start), strict=True)):
        if ef > f + 1e-9:
            problems.append(f"encoder forward #{i} ends at {ef:.4f} s, after LLM forward #{i} starts ({f:.4f} s)")
    for i, (eb, b) in enumerate(zip(sorted(p.enc_backward_start), sorted(p.llm_backward_end), strict=True)):
        if eb < b - 1e-9:
            problems.append(f"encoder backward #{i} starts at {eb:.4f} s, before LLM backward #{i} ends ({b:.4f} s)")
    return problems


def check_no_overlap(job: M.LLMJob, p: Packed) -> list[str]:
    """Encoder kernels never share a device's compute with LLM compute, nor its links with LLM
    communication, nor with each other."""
    llm = get_enc_llm_dep(job) if p.timeline is None else p.timeline
    busy = llm.busy(p.llm_start)
    problems = []
    for d in range(job.pp):
        for res in ("compute", "link"):
            spans = sorted([(float(a), float(b), "llm") for a, b in busy[d][res]] +
                           [(s, e, n) for dev, n, s, e, comm in p.placed if dev == d and comm == (res == "link")])
            for x, y in zip(spans, spans[1:], strict=False):
                if y[0] < x[1] - 1e-12:
                    problems.append(f"device {d} {res}: {x[2]} and {y[2]} overlap")
    return problems


def _gaps(job: M.LLMJob, busy: dict[int, dict[str, np.ndarray]], fine: bool) -> dict[int, dict[str, Gaps]]:
    out = {}
    for d in range(job.pp):
        c = busy[d]["compute"]
        windows = [(0.0, np.inf)] if fine else [(0.0, float(c[0, 0])), (float(c[-1, 1]), np.inf)]
        out[d] = {"compute": Gaps(c, windows), "link": Gaps(busy[d]["link"], [(0.0, np.inf)])}
    return out


# ---------------------------------------------------------------------------------------------------------
# The planner
# ---------------------------------------------------------------------------------------------------------


def memory_overhead(job: M.LLMJob, plan: EncoderPlan) -> float:
    """Extra encoder model states from replicating it m times, over the LLM's model states (k = 6 for both)."""
    return (plan.pipelines - 1) * job.enc.params / job.params


def candidate_plans(job: M.LLMJob) -> list[EncoderPlan]:
    plans = []
    for enc_pp in [d for d in range(1, job.pp + 1) if job.pp % d == 0 and job.enc.depth % d == 0]:
        m = job.pp // enc_pp
        if m == 1:
            splits = [(job.microbatches,)]
        elif m == 2:                                  # every split within +-25% of even (the paper: all)
            n = job.microbatches
            splits = [(a, n - a) for a in range(max(1, n // 2 - n // 8), min(n - 1, n // 2 + n // 8) + 1)]
        else:
            q, r = divmod(job.microbatches, m)
            splits = [tuple(q + (1 if i < r else 0) for i in range(m))]
        plans += [EncoderPlan(enc_pp, s) for s in splits if min(s) > 0]
    return [p for p in plans if memory_overhead(job, p) <= MEMORY_BOUND + 1e-12]


def optimus(job: M.LLMJob, fine: bool = True, timeline: LLMTimeline | None = None,
            adjust: bool = True) -> tuple[EncoderPlan, Packed, int]:
    """The best plan and its packing; also how many plans were tried. ``timeline``: the LLM's dependency
    points (default ``get_enc_llm_dep(job, adjust)``)."""
    plans = candidate_plans(job)
    if not plans:
        raise InputError(f"no encoder plan over {job.pp} stages keeps the extra encoder states within "
                         f"{MEMORY_BOUND:.0%} of the LLM's.", field="pp",
                         fix="use a stage count with a divisor that divides the encoder's layers, or a larger LLM.")
    llm = get_enc_llm_dep(job, adjust) if timeline is None else timeline
    scored = [(pack(job, p, fine, timeline=llm).iteration_s, i) for i, p in enumerate(plans)]
    _, best = min(scored)
    return plans[best], pack(job, plans[best], fine, keep=True, timeline=llm), len(plans)


def encoder_share_per_device(job: M.LLMJob) -> float:
    """The encoder's work per device if spread perfectly over the pipeline's devices."""
    per_layer = M.encoder_layer_s(False, job.enc_scale, job.enc) + M.encoder_layer_s(True, job.enc_scale, job.enc)
    return job.microbatches * job.enc.depth * per_layer / job.pp


def efficiency(job: M.LLMJob, iteration_s: float, timeline: LLMTimeline | None = None) -> float:
    """Share of the encoder's per-device work that costs no iteration time (1: all of it hides in bubbles),
    for an iteration of ``iteration_s`` (a packed plan's, or a baseline's)."""
    return 1.0 - (iteration_s - llm_only(job, timeline)) / encoder_share_per_device(job)


def llm_only(job: M.LLMJob, timeline: LLMTimeline | None = None) -> float:
    """The LLM alone (Megatron's warm-up: the adjustment never changes the makespan)."""
    ag, rs = _dp_comm(job)
    return ag + (llm_timeline(job) if timeline is None else timeline).makespan + rs
