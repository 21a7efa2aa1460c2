"""Expert-parallel MoE layers on modelled hardware: vanilla expert parallelism, FasterMoE-like shadowing, a
Janus-like static push/pull, and PopFetcher's predicted, per-worker expert prefetch.

**Model** (assumptions, set before running; GPT-MoE-like shapes): ``workers`` A100s, one per node, joined by
InfiniBand HDR (one 200 Gb/s NIC each: ``core.gpu.Fabric(nic="ib-hdr", nics_per_node=1)``); kernel and link
times come from the shared GPU cost model (``syslab.core.gpu``, calibrated on published cuBLAS/CUTLASS GEMM,
FlashAttention-2, NCCL and InfiniBand measurements; see ``core/gpu/calibration.py``); ``experts``
experts placed round-robin (expert e on worker e mod workers); each worker holds ``tokens`` tokens per
iteration, routed top-2, and each worker's tokens follow the layer's global routing distribution. A token
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
savings exceed its broadcast cost to all workers (on the critical path, knowing the true loads). Janus-like:
a static set of "pulled" experts chosen once from the first iterations' mean loads (every worker fetches them
each iteration, in the attention window). PopFetcher: per worker, pull the remote experts predicted to receive
the most of its tokens (``routing.predict_next_layer``) when the token bytes they save (dispatch, combine and
their gradients) exceed the expert's bytes (pull plus gradient return), at most ``k`` per worker: the pruned
candidate set of our notes (<= k x workers); pulls that overflow the attention window delay the layer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from syslab.core import gpu as G
from syslab.training.popfetcher.routing import RoutingTrace, predict_next_layer

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


def _scaled(counts: np.ndarray, c: Cluster, top_k: int) -> np.ndarray:
    """Global token-assignments per expert for one layer, scaled to the cluster's tokens (top-k rows each)."""
    return counts / max(counts.sum(), 1) * c.tokens * c.workers * top_k


def layer_time(load: np.ndarray, c: Cluster, replicas: np.ndarray, prefetched: bool, priority: bool,
               critical_s: float = 0.0) -> LayerTime:
    """One MoE layer, forward and backward. ``load[e]``: token rows routed to expert e (all workers);
    ``replicas[w, e]``: worker w holds a copy of expert e (its own tokens for e stay local). ``prefetched``:
    replicas were pulled in the attention window (else their fetch is ``critical_s`` on the critical path)."""
    n, e = c.workers, c.experts
    per_worker = load / n                                        # rows for expert e from each worker
    owner = np.array([c.owner(x) for x in range(e)])
    local = replicas.copy()
    local[owner, np.arange(e)] = True
    send = np.array([(per_worker * ~local[w]).sum() for w in range(n)])          # rows w sends away
    # rows each owner receives: from every worker without a copy; rows[w, x]: rows of expert x computed on w
    recv = np.zeros(n)
    rows = np.zeros((n, e))
    for x in range(e):
        remote = (~local[:, x]).sum()
        recv[owner[x]] += per_worker[x] * remote
        rows[owner[x], x] += per_worker[x] * (remote + 1)
        for w in np.flatnonzero(local[:, x]):
            if w != owner[x]:
                rows[w, x] += per_worker[x]
    a2a_rows = np.maximum(send, recv).max()
    a2a_s = c.a2a_s(a2a_rows)
    fwd_compute = float(c.expert_s(rows).sum(axis=1).max())
    copies = replicas.copy()
    copies[owner, np.arange(e)] = False
    per_worker_replicas = copies.sum(axis=1)
    pull_s = c.p2p_s(per_worker_replicas.max() * c.expert_bytes)
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


def vanilla(load: np.ndarray, c: Cluster) -> LayerTime:
    return layer_time(load, c, np.zeros((c.workers, c.experts), dtype=bool), True, False)


def fastermoe(load: np.ndarray, c: Cluster) -> LayerTime:
    """Shadow experts whose savings beat a broadcast, decided after the gate from the true loads."""
    shadow = [x for x in range(c.experts) if _worth_it(load[x] / c.workers * (c.workers - 1) / c.workers, c)]
    rep = np.zeros((c.workers, c.experts), dtype=bool)
    rep[:, shadow] = True
    broadcast_s = c.broadcast_s(len(shadow) * c.expert_bytes)     # pipelined ring broadcast
    return layer_time(load, c, rep, False, False, critical_s=broadcast_s)


def janus_static(mean_load: np.ndarray, c: Cluster):
    """A static pull set, chosen once from mean loads; every worker fetches those experts each iteration."""
    pulled = [x for x in range(c.experts) if _worth_it(mean_load[x] / c.workers, c)]

    def run(load: np.ndarray) -> LayerTime:
        rep = np.zeros((c.workers, c.experts), dtype=bool)
        rep[:, pulled] = True
        return layer_time(load, c, rep, True, False)
    return run


def popfetcher(predicted: np.ndarray, load: np.ndarray, c: Cluster, k: int = 2) -> LayerTime:
    """Per worker, the up to ``k`` remote experts predicted to take most of its tokens, if worth pulling and
    if the pulls fit in the attention window."""
    return layer_time(load, c, _replicas_of(predicted, c, k), True, True)


POLICIES = ("vanilla", "fastermoe", "janus", "popfetcher", "popfetcher-fifo")


def run_policies(trace: RoutingTrace, c: Cluster, start: int = 10, k: int = 2, control: bool = False,
                 policies: tuple[str, ...] = POLICIES) -> dict[str, np.ndarray]:
    """Per iteration >= ``start``, the summed forward + backward time of every MoE layer but the first (whose
    predecessor gives no prediction), per policy; also PopFetcher without all-to-all priority. ``control``:
    vanilla expert parallelism in both of PopFetcher's slots (a negative control). ``policies``: the subset to
    time (a sensitivity sweep needs only vanilla and PopFetcher)."""
    unknown = set(policies) - set(POLICIES)
    if unknown:
        raise ValueError(f"unknown policies {sorted(unknown)}; known: {', '.join(POLICIES)}")
    janus = None
    if "janus" in policies:
        first = [_scaled(trace.counts[i, j], c, trace.top_k) for i in range(start) for j in range(trace.layers)]
        janus = janus_static(np.mean(first, axis=0), c)
    out: dict[str, list[float]] = {p: [] for p in policies}
    for it in range(start, trace.iterations):
        totals = dict.fromkeys(out, 0.0)
        for layer in range(trace.layers - 1):
            load = _scaled(trace.counts[it, layer + 1], c, trace.top_k)
            pred = _scaled(predict_next_layer(trace, it, layer), c, trace.top_k)
            for p in totals:
                totals[p] += _policy_time(p, pred, load, c, k, control, janus)
        for p in out:
            out[p].append(totals[p])
    return {p: np.array(v) for p, v in out.items()}


def _policy_time(policy: str, pred: np.ndarray, load: np.ndarray, c: Cluster, k: int, control: bool,
                 janus) -> float:
    """One MoE layer's forward + backward time under ``policy``; ``control``: vanilla in PopFetcher's slots."""
    if policy == "vanilla" or (control and policy.startswith("popfetcher")):
        return vanilla(load, c).total_s
    if policy == "fastermoe":
        return fastermoe(load, c).total_s
    if policy == "janus":
        return janus(load).total_s
    if policy == "popfetcher":
        return popfetcher(pred, load, c, k).total_s
    return layer_time(load, c, _replicas_of(pred, c, k), True, False).total_s     # popfetcher-fifo


def _replicas_of(predicted: np.ndarray, c: Cluster, k: int) -> np.ndarray:
    """PopFetcher's plan: per worker, its top-``k`` predicted remote experts. As many as fit both in the
    attention window (the pull) and under the backward compute (the gradient return, all-to-all first) cost
    nothing on the critical path, so they are taken if they carry any of the worker's tokens; beyond that a
    replica delays the layer, so it must pass the push/pull break-even (``_worth_it``)."""
    rep = np.zeros((c.workers, c.experts), dtype=bool)
    per_worker = predicted / c.workers
    # a worker's backward with the load balanced: its experts / workers experts, each with the mean load
    backward_s = 2 * c.experts / c.workers * float(c.expert_s(predicted.sum() / c.experts))
    window = min(c.attention_s, backward_s)
    free = 0
    while free < c.experts and c.p2p_s((free + 1) * c.expert_bytes) <= window:
        free += 1
    for w in range(c.workers):
        remote = [x for x in np.argsort(-per_worker, kind="stable") if c.owner(x) != w][:k]
        chosen = [x for i, x in enumerate(remote) if per_worker[x] > 0 and (i < free or _worth_it(per_worker[x], c))]
        rep[w, chosen] = True
    return rep
