"""Expert-parallel MoE layers on modelled hardware: vanilla expert parallelism, FasterMoE-like shadowing, a
Janus-like static push/pull, and PopFetcher's predicted, per-worker expert prefetch.

**Model** (assumptions, set before running; GPT-MoE-like shapes): ``workers`` A100s, one per node, joined by
InfiniBand HDR (one 200 Gb/s NIC each: ``core.gpu.Fabric(nic="ib-hdr", nics_per_node=1)``); kernel and link
times come from the shared GPU cost model (``syslab.core.gpu``, calibrated on published cuBLAS/CUTLASS GEMM,
FlashAttention-2, NCCL and InfiniBand measurements; see ``core/gpu/calibration.py``); ``experts``
experts placed round-robin (expert e on worker e mod workers); each worker holds ``tokens`` tokens per
iteration, routed top-2 as its own batch was in the trace (``RoutingTrace.per_worker``; a trace without per-worker
counts gives every worker the global distribution). A token
row is ``hidden`` x 2 bytes (fp16); an expert (two ``hidden`` x 4 ``hidden`` matrices) is 16 ``hidden``^2 bytes.

* Forward of one MoE layer: all-to-all dispatch, expert compute, all-to-all combine. A skewed all-to-all takes
  as long as a uniform one (``collective_s("alltoall")`` over ``workers`` nodes) in which every worker moves
  as many bytes as the busiest worker's larger direction (send or receive). Expert compute: the busiest
  worker's expert FFNs, each its two GEMMs (rows x h) @ (h x 4h) and (rows x 4h) @ (4h x h) (``gemm_s``).
  Replica pulls and gradient returns are point-to-point (``collective_s("sendrecv")``), FasterMoE's shadowing
  a broadcast (``collective_s("broadcast")``).
* Backward: the same two all-to-alls (gradients), expert compute x 2 (input and weight gradients), and the
  gradient all-reduce of replicated experts back to their owners. With all-to-all priority (PopFetcher) that
  reduction only uses the link when the all-to-alls do not (it hides under the backward compute); in FIFO
  sharing it queues in front of them.
* The attention before each MoE layer leaves the link idle for ``attention_s`` (QKV, output projection and
  causal attention of 2,048-token sequences, twice, and one dense FFN, at ``heads`` heads; ``gemm_s`` and
  ``attention_s``): PopFetcher pulls its predicted
  experts then; whatever does not fit delays the layer.

**Policies.** Vanilla: no replicas. FasterMoE-like: after the gate, broadcast every expert whose all-to-all
savings exceed its broadcast cost to all workers (on the critical path, knowing the true loads; the shadows'
gradient reduction gets all-to-all priority). Janus-like: a static set of "pulled" experts chosen once from the
first iterations' mean loads (the most popular ones that fit the free pull slots, then any past the push/pull
break-even), fetched by every worker each iteration in the attention window, with all-to-all priority. So both
baselines get PopFetcher's window and priority rules. PopFetcher: per worker, the prefetch plan that minimises
the layer's predicted latency (``PrefetchProgram``: the layer model made linear, solved exactly over each
worker's top-``k`` predicted remote experts, the pruned candidate set of <= k x workers; a MILP cross-checks it)
from ``routing.predict_worker_loads``; pulls that overflow the attention window delay the layer. The
perfect-foresight plan (``oracle``) solves the same program on the true loads: a bound, not a baseline.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from syslab.core import gpu as G
from syslab.training.popfetcher.routing import RoutingTrace, predict_worker_loads

SEQ = 2048                # tokens per sequence


@dataclass(frozen=True)
class Cluster:
    workers: int = 8
    experts: int = 16
    tokens: int = 8192                 # tokens per worker per iteration (e.g. 4 sequences of 2,048)
    hidden: int = 1024
    heads: int = 16                    # attention heads (head dim 64 at hidden 1,024)
    device: str = "A100-80GB"
    fabric: G.Fabric = G.Fabric(intra="nvlink3", gpus_per_node=1, nic="ib-hdr", nics_per_node=1)

    @property
    def row_bytes(self) -> float:
        return self.hidden * 2

    @property
    def expert_bytes(self) -> float:
        return 16.0 * self.hidden ** 2

    def a2a_s(self, rows: float) -> float:
        """An all-to-all in which every worker sends ``rows`` token rows to the others."""
        n = self.workers
        return G.collective_s("alltoall", rows * self.row_bytes * n / (n - 1), n, self.device, nodes=n,
                              fabric=self.fabric) if n > 1 else 0.0

    def p2p_s(self, n_bytes: float) -> float:
        """A point-to-point transfer between two workers (two nodes)."""
        return G.collective_s("sendrecv", n_bytes, 2, self.device, nodes=2, fabric=self.fabric)

    def broadcast_s(self, n_bytes: float) -> float:
        n = self.workers
        return G.collective_s("broadcast", n_bytes, n, self.device, nodes=n, fabric=self.fabric)

    def expert_s(self, rows: np.ndarray | float) -> np.ndarray | float:
        """Forward of one expert FFN over ``rows`` token rows (vectorised; 0 for none)."""
        h = self.hidden
        return G.gemm_s(rows, 4 * h, h, self.device) + G.gemm_s(rows, h, 4 * h, self.device)

    @functools.cached_property
    def attention_s(self) -> float:
        """The non-MoE compute before a MoE layer, when MoE replaces every other FFN (as in GShard, Switch and
        DeepSpeed-MoE's GPT models): one dense layer (attention and FFN) plus the MoE layer's own attention,
        over sequences of 2,048 tokens."""
        h, m = self.hidden, self.tokens
        attention = (G.gemm_s(m, 3 * h, h, self.device) + G.gemm_s(m, h, h, self.device)
                     + G.attention_s(m / SEQ, SEQ, self.heads, h // self.heads, self.device, causal=True))
        return 2 * attention + float(self.expert_s(m))

    def owner(self, e: int) -> int:
        return e % self.workers


@dataclass
class LayerTime:
    forward_s: float
    backward_s: float
    replicas: int
    replica_bytes: float
    a2a_bytes: float
    details: dict = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return self.forward_s + self.backward_s


def scaled_loads(counts: np.ndarray, c: Cluster, top_k: int) -> np.ndarray:
    """Token rows per (worker, expert) for one layer, each worker's own routing scaled to the cluster's tokens
    per worker (top-k rows each): [workers, experts] from per-worker counts [workers, experts]."""
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) * c.tokens * top_k


def _owners(c: Cluster) -> np.ndarray:
    return np.arange(c.experts) % c.workers


def layer_time(load: np.ndarray, c: Cluster, replicas: np.ndarray, prefetched: bool, priority: bool,
               critical_s: float = 0.0) -> LayerTime:
    """One MoE layer, forward and backward. ``load[w, e]``: token rows of worker w's batch routed to expert e
    (a 1-d ``load`` is split evenly over the workers); ``replicas[w, e]``: worker w holds a copy of expert e
    (its own rows for e then stay local). ``prefetched``: replicas were pulled in the attention window (else
    their fetch is ``critical_s`` on the critical path). Cost: O(workers x experts)."""
    n, e = c.workers, c.experts
    load = np.asarray(load, dtype=np.float64)
    if load.ndim == 1:
        load = np.repeat(load[None, :] / n, n, axis=0)
    owner = _owners(c)
    local = replicas.copy()
    local[owner, np.arange(e)] = True
    away = load * ~local                                          # rows each worker sends to an owner
    send = away.sum(axis=1)
    recv = np.bincount(owner, weights=away.sum(axis=0), minlength=n)
    rows = load * local                                            # rows computed where they are
    rows[owner, np.arange(e)] += away.sum(axis=0)                  # plus what the owners receive
    a2a_rows = float(np.maximum(send, recv).max())
    a2a_s = c.a2a_s(a2a_rows)
    fwd_compute = float(c.expert_s(rows).sum(axis=1).max())
    copies = replicas.copy()
    copies[owner, np.arange(e)] = False
    pull_s = c.p2p_s(copies.sum(axis=1).max() * c.expert_bytes)
    exposed_pull = max(0.0, pull_s - c.attention_s) if prefetched else critical_s
    forward = exposed_pull + 2 * a2a_s + fwd_compute
    # backward: gradients of the replicas go back to their owners (a reduction of one expert per replica)
    grad_s = pull_s
    bwd_compute = 2 * fwd_compute          # input- and weight-gradient GEMMs, each the forward's FLOPs
    if priority:                       # all-to-all first; the reduction fills the link during backward compute
        backward = 2 * a2a_s + bwd_compute + max(0.0, grad_s - bwd_compute)
    else:                              # FIFO: the reduction queues ahead of the gradient all-to-alls
        backward = 2 * a2a_s + bwd_compute + grad_s
    return LayerTime(forward, backward, int(copies.sum()), float(copies.sum() * c.expert_bytes),
                     float(2 * a2a_rows * c.row_bytes), {"a2a_s": a2a_s, "compute_s": fwd_compute,
                                                          "pull_s": pull_s})


def _worth_it(rows: float, c: Cluster) -> bool:
    """Pull (replicate) rather than push: the rows' four trips (dispatch, combine and their gradients) carry
    more bytes than the expert's two (pull and gradient return)."""
    return 4 * rows * c.row_bytes > 2 * c.expert_bytes


def free_pulls(c: Cluster, total_rows: float) -> int:
    """How many expert pulls per worker cost nothing on the critical path: they fit both in the attention window
    (the pull) and under the backward compute with the load balanced (the gradient return, all-to-all first).
    Every policy that pulls in the window with all-to-all priority gets these slots."""
    backward_s = 2 * c.experts / c.workers * float(c.expert_s(total_rows / c.experts))
    window = min(c.attention_s, backward_s)
    free = 0
    while free < c.experts and c.p2p_s((free + 1) * c.expert_bytes) <= window:
        free += 1
    return free


def vanilla(load: np.ndarray, c: Cluster) -> LayerTime:
    return layer_time(load, c, np.zeros((c.workers, c.experts), dtype=bool), True, False)


def fastermoe(load: np.ndarray, c: Cluster, priority: bool = True) -> LayerTime:
    """Shadow (broadcast to every worker) the experts whose savings beat a broadcast, decided after the gate from
    the true loads, so the broadcast is on the critical path (the attention window has passed by then); the
    shadows' gradient reduction gets all-to-all priority, as PopFetcher's replicas do."""
    load = np.asarray(load, dtype=np.float64)
    remote_rows = load.sum(axis=0) * (c.workers - 1) / c.workers ** 2     # per worker, on average
    shadow = [x for x in range(c.experts) if _worth_it(remote_rows[x], c)]
    rep = np.zeros((c.workers, c.experts), dtype=bool)
    rep[:, shadow] = True
    broadcast_s = c.broadcast_s(len(shadow) * c.expert_bytes) if shadow else 0.0    # pipelined ring broadcast
    return layer_time(load, c, rep, False, priority, critical_s=broadcast_s)


def janus_static(mean_load: np.ndarray, c: Cluster, priority: bool = True):
    """A static pull set chosen once from the first iterations' mean loads: the most popular experts that fit
    the free pull slots (``free_pulls``), and beyond them any that pass the push/pull break-even; every worker
    fetches them in the attention window each iteration, with all-to-all priority (PopFetcher's rules)."""
    mean_load = np.asarray(mean_load, dtype=np.float64)
    total = mean_load.sum(axis=0) if mean_load.ndim == 2 else mean_load
    per_worker = total / c.workers
    free = free_pulls(c, float(total.sum()))
    ranked = np.argsort(-per_worker, kind="stable")
    pulled = [x for i, x in enumerate(ranked) if per_worker[x] > 0 and (i < free or _worth_it(per_worker[x], c))]

    def run(load: np.ndarray) -> LayerTime:
        rep = np.zeros((c.workers, c.experts), dtype=bool)
        rep[:, pulled] = True
        return layer_time(load, c, rep, True, priority)
    return run


@dataclass(frozen=True)
class PrefetchProgram:
    """PopFetcher's plan as an optimisation over the pruned candidates ``cand`` (each worker's top-k predicted
    remote experts, <= k x workers binaries y): ``layer_time`` made linear in y. Per candidate j,
    ``send[j, w]`` / ``recv[j, o]`` are the rows it keeps off worker w's outgoing / owner o's incoming
    all-to-all and ``comp[j, w]`` the compute it moves onto (+) or off (-) worker w; the all-to-all's rows are
    the max of rows sent and received (time affine in rows); compute per worker is rows x a per-row cost plus
    a per-expert cost (the GEMM model's secant around the mean load); each worker's pulls cost an affine p2p
    time, exposed beyond the attention window, and the replicas' gradient return is exposed beyond the
    backward compute (2 x forward). Objective: exposed pull + 4 all-to-alls + 3 x compute + exposed return."""

    cand: tuple[tuple[int, int], ...]
    base_send: np.ndarray
    base_recv: np.ndarray
    base_comp: np.ndarray
    send: np.ndarray
    recv: np.ndarray
    comp: np.ndarray
    pulls: np.ndarray              # [candidates, workers]: 1 where the candidate is that worker's pull
    a2a_slope: float
    pull_base: float
    pull_slope: float
    window_s: float

    @classmethod
    def build(cls, predicted: np.ndarray, c: Cluster, k: int) -> PrefetchProgram:
        P = np.asarray(predicted, dtype=np.float64)
        n, e = c.workers, c.experts
        owner = _owners(c)
        cand = tuple((w, int(x)) for w in range(n)
                     for x in [x for x in np.argsort(-P[w], kind="stable") if owner[x] != w][:k] if P[w, x] > 0)
        rows0 = max(float(P.sum()) / e, 1.0)
        cost_row = (float(c.expert_s(2 * rows0)) - float(c.expert_s(rows0))) / rows0
        cost_expert = max(float(c.expert_s(rows0)) - cost_row * rows0, 0.0)
        a2a0 = max(float(P.sum()) / n, 1.0)
        pull1, pull2 = c.p2p_s(c.expert_bytes), c.p2p_s(2 * c.expert_bytes)
        away = P.copy()
        away[owner, np.arange(e)] = 0.0
        m = len(cand)
        send, recv, comp, pulls = (np.zeros((m, n)) for _ in range(4))
        for j, (w, x) in enumerate(cand):
            send[j, w] = P[w, x]
            recv[j, owner[x]] = P[w, x]
            comp[j, w] += cost_row * P[w, x] + cost_expert
            comp[j, owner[x]] -= cost_row * P[w, x]
            pulls[j, w] = 1.0
        mine = owner[None, :] == np.arange(n)[:, None]             # [workers, experts]: w owns e
        base_comp = cost_row * (mine * P.sum(axis=0)).sum(axis=1) + cost_expert * mine.sum(axis=1)
        return cls(cand, away.sum(axis=1), (mine * away.sum(axis=0)).sum(axis=1), base_comp, send, recv, comp,
                   pulls, (c.a2a_s(2 * a2a0) - c.a2a_s(a2a0)) / a2a0, 2 * pull1 - pull2, pull2 - pull1,
                   c.attention_s)

    def objective(self, y: np.ndarray) -> np.ndarray:
        """The predicted layer time of each choice (rows of ``y``, [choices, candidates])."""
        n = self.send.shape[1]
        # one product for all four families of rows, [4 x workers, choices]: maxima run over contiguous rows
        z = np.vstack([-self.send.T, -self.recv.T, self.comp.T, self.pull_slope * self.pulls.T]) @ y.T
        z += np.r_[self.base_send, self.base_recv, self.base_comp, np.full(n, self.pull_base)][:, None]
        a2a = z[: 2 * n].max(axis=0)
        compute = z[2 * n: 3 * n].max(axis=0)
        pull = z[3 * n:].max(axis=0)
        return (np.maximum(pull - self.window_s, 0.0) + 4 * self.a2a_slope * a2a + 3 * compute
                + np.maximum(pull - 2 * compute, 0.0))

    def solve(self) -> np.ndarray:
        """The exact optimum by enumerating every subset of the candidates (2^m <= 2^16 here, vectorised; the
        pruning is what makes this small), ties to the fewest pulls. Cost: O(2^m x m x workers)."""
        m = len(self.cand)
        if m == 0:
            return np.zeros(0, dtype=bool)
        if m > 20:
            raise ValueError(f"{m} candidates: too many to enumerate (use solve_milp)")
        y = _subsets(m)
        value = self.objective(y)
        best = np.flatnonzero(value <= value.min() * (1 + 1e-12))
        return y[best[np.argmin(y[best].sum(axis=1))]].astype(bool)

    def solve_milp(self) -> np.ndarray:
        """The same program as a mixed-integer linear program (HiGHS): a cross-check of ``solve``."""
        from scipy.optimize import Bounds, LinearConstraint, milp

        m, n = self.send.shape
        A_, C_, P_, U_, G_ = m, m + 1, m + 2, m + 3, m + 4            # a2a rows, compute, pull, exposures
        nv = m + 5
        rows, hi = [], []

        def add(y_coeffs: np.ndarray, extra: dict[int, float], upper: float) -> None:
            r = np.zeros(nv)
            r[:m] = y_coeffs
            for j, v in extra.items():
                r[j] = v
            rows.append(r)
            hi.append(upper)
        for w in range(n):
            add(-self.send[:, w], {A_: -1.0}, -self.base_send[w])
            add(-self.recv[:, w], {A_: -1.0}, -self.base_recv[w])
            add(self.comp[:, w], {C_: -1.0}, -self.base_comp[w])
            add(self.pull_slope * self.pulls[:, w], {P_: -1.0}, -self.pull_base)
        add(np.zeros(m), {U_: -1.0, P_: 1.0}, self.window_s)
        add(np.zeros(m), {G_: -1.0, P_: 1.0, C_: -2.0}, 0.0)
        cost = np.zeros(nv)
        cost[A_], cost[C_], cost[U_], cost[G_] = 4 * self.a2a_slope, 3.0, 1.0, 1.0
        res = milp(cost, constraints=LinearConstraint(np.array(rows), -np.inf, np.array(hi)),
                   integrality=np.r_[np.ones(m), np.zeros(5)],
                   bounds=Bounds(np.r_[np.zeros(m), np.full(3, -np.inf), 0.0, 0.0],      # exposures >= 0
                                 np.r_[np.ones(m), np.full(5, np.inf)]))
        if not res.success:  # pragma: no cover - always feasible (no pulls)
            raise RuntimeError(res.message)
        return res.x[:m] > 0.5


@functools.lru_cache(maxsize=4)
def _subsets(m: int) -> np.ndarray:
    """Every subset of m candidates as a 0/1 matrix [2^m, m] (8 MB at m = 16; built once)."""
    return ((np.arange(2 ** m)[:, None] >> np.arange(m)) & 1).astype(np.float64)


def plan_prefetch(predicted: np.ndarray, c: Cluster, k: int = 2) -> np.ndarray:
    """PopFetcher's prefetch plan from per-worker predicted loads ``predicted[w, e]`` (rows worker w is
    predicted to send to expert e): the exact optimum of ``PrefetchProgram`` over each worker's top-``k``
    remote experts. Returns replicas [workers, experts]."""
    program = PrefetchProgram.build(predicted, c, k)
    rep = np.zeros((c.workers, c.experts), dtype=bool)
    for (w, x), take in zip(program.cand, program.solve(), strict=True):
        rep[w, x] = take
    return rep


def popfetcher(predicted: np.ndarray, load: np.ndarray, c: Cluster, k: int = 2) -> LayerTime:
    """The plan from the predicted per-worker loads, pulled in the attention window, all-to-all priority."""
    return layer_time(load, c, plan_prefetch(predicted, c, k), True, True)


POLICIES = ("vanilla", "fastermoe", "janus", "popfetcher", "popfetcher-fifo", "oracle")


def run_policies(trace: RoutingTrace, c: Cluster, start: int = 10, k: int = 2, control: bool = False,
                 policies: tuple[str, ...] = POLICIES, blend: float = 0.5) -> dict[str, np.ndarray]:
    """Per iteration >= ``start``, the summed forward + backward time of every MoE layer but the first (whose
    predecessor gives no prediction), per policy; each worker's tokens follow its own batch's routing where the
    trace records it. ``popfetcher-fifo``: PopFetcher's plan without all-to-all priority; ``oracle``: the same
    program on the true loads (perfect foresight, a bound). ``control``: vanilla expert parallelism in
    PopFetcher's slots (a negative control; the oracle stays). ``policies``: the subset to time."""
    unknown = set(policies) - set(POLICIES)
    if unknown:
        raise ValueError(f"unknown policies {sorted(unknown)}; known: {', '.join(POLICIES)}")
    counts = trace.per_worker(c.workers)
    janus = None
    if "janus" in policies:
        first = [scaled_loads(counts[i, j], c, trace.top_k) for i in range(start) for j in range(trace.layers)]
        janus = janus_static(np.mean(first, axis=0), c)
    out: dict[str, list[float]] = {p: [] for p in policies}
    for it in range(start, trace.iterations):
        totals = dict.fromkeys(out, 0.0)
        for layer in range(trace.layers - 1):
            load = scaled_loads(counts[it, layer + 1], c, trace.top_k)
            pred = scaled_loads(predict_worker_loads(trace, it, layer, c.workers, blend=blend), c, trace.top_k)
            plan = plan_prefetch(pred, c, k) if {"popfetcher", "popfetcher-fifo"} & set(out) and not control \
                else None
            for p in totals:
                totals[p] += _policy_time(p, plan, load, c, k, control, janus)
        for p in out:
            out[p].append(totals[p])
    return {p: np.array(v) for p, v in out.items()}


def _policy_time(policy: str, plan: np.ndarray | None, load: np.ndarray, c: Cluster, k: int, control: bool,
                 janus) -> float:
    """One MoE layer's forward + backward time under ``policy``; ``control``: vanilla in PopFetcher's slots."""
    if policy == "vanilla" or (control and policy.startswith("popfetcher")):
        return vanilla(load, c).total_s
    if policy == "fastermoe":
        return fastermoe(load, c).total_s
    if policy == "janus":
        return janus(load).total_s
    if policy == "oracle":
        return layer_time(load, c, plan_prefetch(load, c, k), True, True).total_s
    return layer_time(load, c, plan, True, policy == "popfetcher").total_s
