"""BlitzScale: Fast and Live Large Model Autoscaling with O(1) Host Caching (OSDI 2025).

Deviations from the paper, stated up front: instances are colocated (chunked prefill), not split into
prefill and decode pools, so the planner's prefill signal is the arrival rate of prompt tokens rather than a
prefill pool's queue; queued requests are not migrated to new instances.

Zhang, Wei, et al. (SJTU IPADS and Huawei Cloud); artifact blitz-serving/blitz-scale. Written from the paper
and our notes on its public planner; no artifact code is reused.

**What it does.** To scale out an LLM service, BlitzScale loads a new instance's parameters from GPUs that
already serve the model, over the compute network (NVLink inside a host, RDMA across hosts), instead of
from SSD or a host-memory cache. Receivers form a serial *chain* that forwards chunk c while receiving
c + 1, so n new instances load in about the time of one transfer; planning uses the fastest link first.
Scaling is also *live*: a new instance holding its first k layers already runs them for an overloaded one.

**What runs for real here (HYBRID).** The chain, star and binary-tree multicast schedules (simulated chunk
by chunk on ``core.timeline`` and checked against their closed forms), the fast-link-first source planner,
and the scaling control law (a [min, max] target band from prefill-throughput and KV-memory signals; scale
up to the band's middle, down by at most one instance per loop, clamped to [2, 14] instances). They drive
the shared serving simulator (``serving.engine``) on the real Azure conversation trace, time-compressed.

**What is modelled.** GPU compute (the engine's iteration cost, from the shared ``core.gpu`` model, for
Llama-3-8B on H100) and every transfer, also from ``core.gpu``: the NVLink 4 chain hop at the measured-calibrated
NCCL point-to-point bandwidth and hop latency of an HGX H100 node (``G.collective_s("sendrecv")``'s fit), 100 Gb/s
RDMA as in the paper's testbed (RoCE 100 GbE at ``core.gpu``'s fitted NIC efficiency), host-cache loads as pinned
PCIe 5 copies (``G.copy_s``) and SSD loads at the measured local-NVMe sequential read (``G.storage_s``).
Live scaling ("ZigZag") is approximated by
its capacity integral: while layers arrive linearly, the partial instance contributes on average half an
instance, so it counts as ready halfway through its load; a variant without live scaling is reported too.
Baselines: ServerlessLLM-style stop-the-world loading (host cache if that host loaded the model before,
otherwise SSD) driven by the same planner, and static provisioning for the peak (the smallest fixed fleet
meeting the same TTFT SLO).

**Sensitivity** (tables, not claims). At quick scale the fleet scales up about once and an 8B model reloads in
0.3 s, so the report sweeps the load time (the weights a new instance loads, compute held at Llama-3-8B's, and
whether stop-the-world loading hits a host cache or reads local NVMe) for the P99 claim, and the TTFT SLO (which
sizes the static fleet) for the GPU-time claim; each failing finding's note says, from the sweep, where its
verdict would flip. The GPU-time finding also reports ServerlessLLM's saving under the same planner (what the
negative control measures), i.e. how much of the saving is autoscaling's rather than BlitzScale's loading's.

**Negative control** (``run.control``): the BlitzScale rows load like ServerlessLLM (stop-the-world from the
host cache or SSD), under the same planner; the sweeps run the same control path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from syslab.core import gpu as G
from syslab.core.claims import CHECK, Claim, Expect, Fidelity, Result, System, Table
from syslab.core.errors import InputError
from syslab.core.gpu.comm import busbw_gbps, net_eff
from syslab.core.hardware import Link, gpu, link
from syslab.core.models import model
from syslab.core.run import Run, pyplot
from syslab.core.stats import cdf
from syslab.core.timeline import Op, schedule
from syslab.core.workloads import load_azure_llm, time_scale
from syslab.serving.engine import (
    ClusterView,
    HostCache,
    Instance,
    IterationCost,
    LayerSplit,
    ServingResult,
    requests_from_frame,
    simulate,
)

GPU_NAME = "H100-SXM"


def _nvlink_p2p(g: str = GPU_NAME) -> Link:
    """One NVLink hop of a chain: NCCL point-to-point bandwidth and latency of ``g``'s node (core.gpu's fit)."""
    fabric = G.default_fabric(g)
    return Link(f"{fabric.intra}-p2p", busbw_gbps(fabric.intra, "sendrecv"),
                G.collective_s("sendrecv", 1.0, 2, g) * 1e6, "core.gpu: NCCL send/recv on the node's NVLink")


def _rdma(g: str = GPU_NAME, nic: str = "roce-100") -> Link:
    """One RDMA hop between hosts over a 100 Gb/s NIC per GPU (the paper's testbed), at core.gpu's fitted NIC
    efficiency and inter-node hop latency."""
    fabric = G.Fabric(G.default_fabric(g).intra, 1, nic, 1)
    t1 = G.collective_s("sendrecv", 1.0, 2, g, nodes=2, fabric=fabric)
    return Link(f"{nic}-p2p", link(nic).gbps * net_eff(nic), t1 * 1e6, "core.gpu: NIC line rate x fitted efficiency")


NVLINK_P2P = _nvlink_p2p()
RDMA_100G = _rdma()
SSD_MEDIUM = "nvme"   # core.gpu's measured local-NVMe sequential read (G.storage_s)
SLO_MULTIPLE = 5.0    # the TTFT SLO as a multiple of the unloaded P99 TTFT (our notes, shared/papers/blitzscale.md)


# ---------------------------------------------------------------------------------------------------------
# Multicast: chain vs star vs tree
# ---------------------------------------------------------------------------------------------------------

def chain_time_s(size_bytes: float, receivers: int, lk: Link, chunks: int = 32) -> float:
    """Closed form of a serial forwarding chain: the first chunk crosses n hops, the rest stream behind it:
    T = S/B * (1 + (n - 1) / k) (+ one message latency per hop)."""
    if receivers < 1:
        return 0.0
    per_chunk = size_bytes / chunks / (lk.gbps * 1e9)
    return per_chunk * (chunks + receivers - 1) + receivers * lk.latency_us * 1e-6


def multicast_schedule(size_bytes: float, receivers: int, lk: Link, topology: str = "chain", chunks: int = 32):
    """Chunk-level schedule of sending a model to ``receivers`` GPUs: each GPU's outgoing link sends one chunk
    at a time. 'chain': each receiver forwards to the next; 'star': the source sends everything to everyone;
    'tree': a binary tree of forwarders. Returns the ``core.timeline`` schedule."""
    if topology not in ("chain", "star", "tree"):
        raise InputError(f"unknown topology {topology!r}.", field="topology", fix="use chain, star or tree.")
    dt = lk.transfer_s(size_bytes / chunks)
    parent = {r: (r - 1 if topology == "chain" else -1 if topology == "star" else (r - 1) // 2)
              for r in range(receivers)}   # node -1 is the source; receivers are 0..n-1
    ops = []
    # Each sender sends chunk by chunk, child by child; a chunk can be forwarded once it has arrived.
    for c in range(chunks):
        for r in range(receivers):
            p = parent[r]
            deps = (f"c{c}->{p}",) if p >= 0 else ()
            ops.append(Op(f"c{c}->{r}", dt, f"link{p}", deps, "chunk"))
    return schedule(ops)


# ---------------------------------------------------------------------------------------------------------
# The scaling policy (control law) and the data plane
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Band:
    """A [min, max] instance target from one load signal and its high/low utilisation factors."""

    load: float          # tokens waiting to prefill, or KV tokens in use
    capacity: float      # per instance: prefill tokens per second, or KV tokens
    high: float
    low: float

    def interval(self) -> tuple[int, int]:
        lo = math.ceil(self.load / (self.high * self.capacity)) if self.load > 0 else 0
        hi = math.ceil(self.load / (self.low * self.capacity)) if self.load > 0 else 0
        return lo, hi


def scale_target(current: int, bands: list[Band], min_num: int = 2, max_num: int = 14) -> int:
    """BlitzScale's planner rule: below the band -> its middle; above -> remove at most one; clamp."""
    lo = max((b.interval()[0] for b in bands), default=0)
    hi = max((b.interval()[1] for b in bands), default=0)
    target = current
    if current < lo:
        target = math.ceil((lo + hi) / 2)
    elif current > hi:
        target = current - 1
    return max(min_num, min(max_num, target))


@dataclass
class Cluster:
    """GPUs in hosts; which GPUs run which instance; each host's DRAM model cache (``engine.HostCache``, up to
    ``host_capacity_bytes`` of weights, LRU; unbounded by default, as one model never fills a host); and when
    each shared transfer resource is next free (FCFS): a chain source (the paper's NVLink semaphore: a source
    serves one chain at a time; likewise a host's RDMA NICs) and each host's local NVMe."""

    nodes: int = 4
    gpus_per_node: int = 4
    placement: dict[int, tuple[int, tuple[int, ...]]] = field(default_factory=dict)   # instance -> (node, GPUs)
    host_capacity_bytes: float = math.inf
    caches: dict[int, HostCache] = field(default_factory=dict)
    busy_until: dict[tuple[str, int], float] = field(default_factory=dict)

    def cache(self, node: int) -> HostCache:
        if node not in self.caches:
            self.caches[node] = HostCache(self.host_capacity_bytes)
        return self.caches[node]

    def free_groups(self, tp: int = 1) -> list[tuple[int, tuple[int, ...]]]:
        """Free groups of ``tp`` GPUs inside one host (a TP group never spans hosts), host 0 first."""
        used = {(n, g) for n, gpus in self.placement.values() for g in gpus}
        out = []
        for n in range(self.nodes):
            free = [g for g in range(self.gpus_per_node) if (n, g) not in used]
            out += [(n, tuple(free[k * tp:(k + 1) * tp])) for k in range(len(free) // tp)]
        return out

    def reserve(self, resource: tuple[str, int], now: float, duration_s: float) -> float:
        """Queue a transfer of ``duration_s`` on a shared resource; returns when it starts."""
        start = max(now, self.busy_until.get(resource, 0.0))
        self.busy_until[resource] = start + duration_s
        return start


@dataclass
class Scaler:
    """Drives an engine cluster: the control law decides how many instances; ``mode`` decides how they load.

    mode: 'blitzscale' (multicast from live instances, fast link first; ``live``: ZigZag, each new instance
    runs the layers it has received for a warm instance until it holds them all), 'serverlessllm'
    (stop-the-world from the host's DRAM cache if it holds the model, else from the host's NVMe).
    A TP instance holds ``cost.tp`` GPUs of one host; its ranks receive their 1/tp shards in parallel (one NIC
    and one NVLink path per GPU, as in the paper's testbed), while stop-the-world loads of a host share its NVMe."""

    cost: IterationCost
    mode: str
    live: bool = True
    cluster: Cluster = field(default_factory=Cluster)
    min_num: int = 2
    max_num: int = 14
    size_bytes: float | None = None    # bytes a new instance loads (default: the model's weights)
    host_cache: bool = True            # stop-the-world loading hits a host that loaded the model before
    loads: list[dict] = field(default_factory=list)
    _rate: float = 0.0
    _last_t: float | None = None
    _last_tokens: int = 0
    _below_since: float | None = None

    def __post_init__(self) -> None:
        size = self.cost.shape.weight_bytes(self.cost.dtype) if self.size_bytes is None else self.size_bytes
        t = self.cost.time_s(8192, 8192 * 8193 / 2, 0)
        self.prefill_tok_s = 8192 / t                       # one instance's prefill throughput (the engine's)
        self.size = size

    def place_initial(self, ids: range | list[int]) -> None:
        """The starting instances ``ids`` on the first free GPU groups (host 0 first), their weights in those
        hosts' DRAM."""
        groups = self.cluster.free_groups(self.cost.tp)
        if len(groups) < len(ids):
            raise InputError(f"{len(ids)} starting instances of {self.cost.shape.name} need {len(ids)} groups of "
                             f"{self.cost.tp} GPUs; {len(groups)} are free.", field="nodes",
                             fix="use more hosts or GPUs per host, or fewer models.")
        for i, (node, gpus) in zip(ids, groups, strict=False):
            self.cluster.placement[i] = (node, gpus)
            self.cluster.cache(node).touch(self.cost.shape.name, self.size)

    def __call__(self, view: ClusterView) -> None:
        live = [i for i in view.instances if not i.draining]
        # Prefill demand: prompt tokens arriving per second (EWMA over ~2 s), against one instance's prefill
        # throughput with the paper's factors 0.7 / 0.5. (The paper's planner reads waiting prefill tokens of a
        # separate prefill pool; on colocated instances we use the arrival rate, a documented deviation.)
        arrived = view.arrived_prompt_tokens   # counted by the engine: stopped instances' requests stay counted
        dt = view.now - self._last_t if self._last_t is not None else 0.0
        if dt > 0:
            rate = (arrived - self._last_tokens) / dt
            self._rate += (1 - math.exp(-dt / 2.0)) * (rate - self._rate)
        self._last_t, self._last_tokens = view.now, arrived
        kv_used = sum(i.held_blocks() * i.block_tokens for i in live)
        kv_cap = live[0].total_blocks * live[0].block_tokens if live else 1
        bands = [Band(self._rate, self.prefill_tok_s, 0.7, 0.5), Band(kv_used, kv_cap, 0.95, 0.75)]
        target = scale_target(len(live), bands, self.min_num, self.max_num)
        if target > len(live):
            self._below_since = None
            self._scale_up(view, live, target - len(live))
        elif target < len(live):
            # Keep-alive: remove an instance only once the target has stayed lower for 333 ms (the planner's
            # scale_down_threshold), then at most one per loop.
            self._below_since = view.now if self._below_since is None else self._below_since
            if view.now - self._below_since >= 0.333:
                victim = min(live, key=lambda i: (i.load, -i.id))
                view.drain(victim)
                self.cluster.placement.pop(victim.id, None)
        else:
            self._below_since = None

    def _source(self, node: int, warm_nodes: set[int]) -> tuple[str, int]:
        """Where a new instance on ``node`` loads from: (kind, the host whose resource the transfer queues on)."""
        c = self.cluster
        if self.mode == "blitzscale":
            if node in warm_nodes:
                return "nvlink", node
            if warm_nodes:               # the warm host whose NICs free up first
                return "rdma", min(warm_nodes, key=lambda n: (c.busy_until.get(("rdma", n), 0.0), n))
            return "ssd", node
        cached = self.host_cache and self.cost.shape.name in c.cache(node)
        return ("host" if cached else "ssd"), node

    def _scale_up(self, view: ClusterView, live: list[Instance], n: int) -> None:
        c, tp, name = self.cluster, self.cost.tp, self.cost.shape.name
        groups = c.free_groups(tp)
        if not groups:
            return
        warm = [i for i in live if i.id in c.placement and i.ready_s <= view.now]
        warm_nodes = {c.placement[i.id][0] for i in warm}
        # Fast link first: GPUs on hosts that already run a warm instance (NVLink), then the others.
        groups.sort(key=lambda ng: (ng[0] not in warm_nodes, ng))
        by_source: dict[tuple[str, int], list[tuple[int, tuple[int, ...]]]] = {}
        for node, gpus in groups[:n]:
            by_source.setdefault(self._source(node, warm_nodes), []).append((node, gpus))
        helped = sorted(warm, key=lambda i: -i.load)       # ZigZag pairs a new instance with the busiest first
        shard = self.size / tp
        for (kind, host), members in by_source.items():
            if kind in ("nvlink", "rdma"):                 # one chain per source, its tp shards in parallel
                lk = NVLINK_P2P if kind == "nvlink" else RDMA_100G
                load_s = chain_time_s(shard, len(members), lk)
                start = c.reserve((kind, host), view.now, load_s)
                timing = [(start, load_s)] * len(members)
            elif kind == "host":                           # each GPU copies its shard over its own PCIe link
                load_s = G.copy_s(shard, self.cost.device, "h2d")
                timing = [(view.now, load_s)] * len(members)
            else:                                          # the host's NVMe reads each instance's weights in turn
                load_s = G.storage_s(self.size, SSD_MEDIUM)
                timing = [(c.reserve(("ssd", host), view.now, load_s), load_s) for _ in members]
            for (node, gpus), (start, load_s) in zip(members, timing, strict=True):
                inst = view.launch(start + load_s - view.now)
                c.placement[inst.id] = (node, gpus)
                c.cache(node).touch(name, self.size)       # the weights pass through the host's DRAM
                if self.mode == "blitzscale" and self.live and kind in ("nvlink", "rdma") and helped:
                    helped.pop(0).help_by(LayerSplit(start, start + load_s))
                self.loads.append({"t": view.now, "source": kind, "load_s": load_s, "wait_s": start - view.now})


# ---------------------------------------------------------------------------------------------------------
# Replays
# ---------------------------------------------------------------------------------------------------------

COST = IterationCost(model("llama3-8b"), gpu(GPU_NAME))


def _make(cost: IterationCost) -> Callable[[int, float, float], Instance]:
    kv = cost.kv_capacity_tokens()
    return lambda i, start, ready: Instance(cost, kv, id=i, start_s=start, ready_s=ready)


def run_policy(trace: pd.DataFrame, policy: str, cost: IterationCost = COST, static_n: int = 0,
               tick_s: float = 0.5, size_bytes: float | None = None,
               host_cache: bool = True) -> tuple[ServingResult, list[dict]]:
    """Replay a trace (arrival_s, prompt_tokens, output_tokens) under 'blitzscale', 'blitzscale-nolive',
    'serverlessllm' or 'static' (``static_n`` fixed instances). For sensitivity studies: ``size_bytes`` (what a
    new instance loads) and ``host_cache`` (False: stop-the-world loads always read local NVMe)."""
    reqs = requests_from_frame(trace)
    if policy == "static":
        return simulate(reqs, _make(cost), initial_instances=static_n), []
    if policy not in ("blitzscale", "blitzscale-nolive", "serverlessllm"):
        raise InputError(f"unknown policy {policy!r}.", field="policy",
                         fix="use blitzscale, blitzscale-nolive, serverlessllm or static.")
    scaler = Scaler(cost, "serverlessllm" if policy == "serverlessllm" else "blitzscale",
                    live=policy == "blitzscale", size_bytes=size_bytes, host_cache=host_cache)
    scaler.place_initial(range(scaler.min_num))
    res = simulate(reqs, _make(cost), initial_instances=scaler.min_num, autoscaler=scaler, tick_s=tick_s)
    return res, scaler.loads


def unloaded_ttft_s(trace: pd.DataFrame, cost: IterationCost = COST) -> np.ndarray:
    """Each request's TTFT on an idle instance: its (chunked) prefill alone."""
    out = []
    for p in trace.prompt_tokens.to_numpy():
        t, done = 0.0, 0
        while done < p:
            n = min(8192, p - done)
            t += cost.time_s(n, n * done + n * (n + 1) / 2, 0)
            done += n
        out.append(t)
    return np.array(out)


def static_for_slo(trace: pd.DataFrame, slo_p99_s: float, max_n: int = 16, cost: IterationCost = COST,
                   runs: dict[int, ServingResult] | None = None) -> tuple[int, ServingResult]:
    """The smallest static fleet whose P99 TTFT meets the SLO (or the largest tried). ``runs`` caches the
    replays by fleet size (for several SLOs on one trace)."""
    res = None
    runs = {} if runs is None else runs
    for n in range(1, max_n + 1):
        if n not in runs:
            runs[n] = run_policy(trace, "static", cost, static_n=n)[0]
        res = runs[n]
        if res.ttft_quantile(0.99) <= slo_p99_s:
            return n, res
    return max_n, res


def compare(trace: pd.DataFrame, cost: IterationCost = COST,
            ttft_samples: dict[str, np.ndarray] | None = None, control: bool = False,
            static_runs: dict[int, ServingResult] | None = None) -> dict[str, dict[str, float]]:
    """P99 TTFT and GPU-seconds per policy on one trace (the tool's output). ``control``: the BlitzScale rows
    run ServerlessLLM (a negative control). ``static_runs`` receives the static replays by fleet size."""
    slo = SLO_MULTIPLE * float(np.quantile(unloaded_ttft_s(trace, cost), 0.99))
    out = {}
    for policy in ("blitzscale", "blitzscale-nolive", "serverlessllm"):
        # the negative control loads ServerlessLLM-style where BlitzScale would multicast
        res, loads = run_policy(trace, "serverlessllm" if control else policy, cost)
        if ttft_samples is not None:
            ttft_samples[policy] = res.requests.ttft_s.to_numpy()
        out[policy] = {"p99_ttft_s": res.ttft_quantile(0.99), "gpu_seconds": res.gpu_seconds,
                       "slo_attainment": res.slo_attainment(ttft_s=slo), "instances": res.instances,
                       "mean_load_s": float(np.mean([x["load_s"] for x in loads])) if loads else 0.0,
                       "slo_p99_ttft_s": slo}
    n, res = static_for_slo(trace, slo, cost=cost, runs=static_runs)
    if ttft_samples is not None:
        ttft_samples["static"] = res.requests.ttft_s.to_numpy()
    out["static"] = {"p99_ttft_s": res.ttft_quantile(0.99), "gpu_seconds": res.gpu_seconds,
                     "slo_attainment": res.slo_attainment(ttft_s=slo), "instances": n, "mean_load_s": 0.0,
                     "slo_p99_ttft_s": slo}
    return out


# ---------------------------------------------------------------------------------------------------------
# Several models on one cluster under a host-DRAM budget (where O(1) host caching can matter)
# ---------------------------------------------------------------------------------------------------------

# The paper's mix of sizes (§6: Llama-2-7B, Llama-3-8B, Mistral-24B on TP 2, Qwen-72B on TP 4): Llama-3-8B on one
# GPU, LLaMA-33B on 2 (core.models has no Mistral-24B; its 40 x 5120 shape with 128-wide heads is not expressible
# there) and Qwen2.5-72B on 4, on 4 hosts x 8 H100s (our notes' DES). Each request of the trace is given a model
# at random with these shares (a labelled synthetic assignment: the Azure trace names no model), seeded.
MULTI_MODELS = (("llama3-8b", 1, 0.5), ("llama-30b", 2, 0.3), ("qwen2.5-72b", 4, 0.2))
MULTI_HOSTS, MULTI_GPUS_PER_HOST = 4, 8
# Host DRAM for model weights per host, GB: none, one 72B model's worth, two, and unbounded (every host that
# loaded a model keeps it: the single-model claims' setting). A DGX H100 has 2 TB, shared with everything else.
MULTI_HOST_GB = (0.0, 160.0, math.inf)
MULTI_CLAIM_GB = 160.0     # the claim's budget: one model's worth per host (our notes: "LRU of 1 model per host")


@dataclass
class MultiScaler:
    """One ``Scaler`` per model on one shared ``Cluster`` (GPUs and host caches); each sees its model's view."""

    scalers: dict[str, Scaler]

    def __call__(self, view: ClusterView) -> None:
        for name, sc in self.scalers.items():
            sc(view.of(name))


def assign_models(trace: pd.DataFrame, seed: int = 0, models=MULTI_MODELS) -> pd.DataFrame:
    names, _, shares = zip(*models, strict=True)
    rng = np.random.default_rng(seed)
    return trace.assign(model=rng.choice(list(names), size=len(trace), p=np.array(shares) / sum(shares)))


def run_multi(trace: pd.DataFrame, policy: str, host_gb: float, device: str = GPU_NAME, models=MULTI_MODELS,
              tick_s: float = 0.5) -> tuple[ServingResult, list[dict]]:
    """Replay a trace whose rows name a ``model`` (``assign_models``) under 'blitzscale', 'blitzscale-nolive' or
    'serverlessllm' on ``MULTI_HOSTS`` x ``MULTI_GPUS_PER_HOST`` GPUs with ``host_gb`` of DRAM for weights per
    host (LRU). Every model starts with 2 instances on its TP groups."""
    if policy not in ("blitzscale", "blitzscale-nolive", "serverlessllm"):
        raise InputError(f"unknown policy {policy!r}.", field="policy",
                         fix="use blitzscale, blitzscale-nolive or serverlessllm.")
    tps = {m: tp for m, tp, _ in models}
    names = sorted(set(trace.model))
    costs = {m: IterationCost(model(m), gpu(device), tp=tps[m]) for m in names}
    cluster = Cluster(MULTI_HOSTS, MULTI_GPUS_PER_HOST, host_capacity_bytes=host_gb * 1e9)
    mode = "serverlessllm" if policy == "serverlessllm" else "blitzscale"
    scalers = {m: Scaler(costs[m], mode, live=policy == "blitzscale", cluster=cluster) for m in names}
    ids = iter(range(1 << 30))
    for m in names:
        scalers[m].place_initial([next(ids) for _ in range(scalers[m].min_num)])
    res = simulate(requests_from_frame(trace), {m: _make(c) for m, c in costs.items()},
                   {m: sc.min_num for m, sc in scalers.items()}, autoscaler=MultiScaler(scalers), tick_s=tick_s)
    return res, [dict(x, model=m) for m, sc in scalers.items() for x in sc.loads]


def multi_model_sensitivity(trace: pd.DataFrame, control: bool = False, seed: int = 0) -> list[dict]:
    """BlitzScale against ServerlessLLM on the three-model cluster at each host-DRAM budget (``control``: the
    BlitzScale rows load like ServerlessLLM)."""
    mixed = assign_models(trace, seed)
    rows = []
    for gb in MULTI_HOST_GB:
        blitz, bl = run_multi(mixed, "serverlessllm" if control else "blitzscale", gb)
        sllm, sl = run_multi(mixed, "serverlessllm", gb)
        nolive = (run_multi(mixed, "serverlessllm" if control else "blitzscale-nolive", gb)[0].ttft_quantile(0.99)
                  if gb == MULTI_CLAIM_GB else math.nan)
        rows.append({"host_gb": gb, "nolive_p99_s": nolive, "blitz_p99_s": blitz.ttft_quantile(0.99),
                     "sllm_p99_s": sllm.ttft_quantile(0.99),
                     "blitz_load_s": float(np.mean([x["load_s"] + x["wait_s"] for x in bl])) if bl else 0.0,
                     "sllm_load_s": float(np.mean([x["load_s"] + x["wait_s"] for x in sl])) if sl else 0.0,
                     "sllm_loads": len(sl), "sllm_host_hits": sum(x["source"] == "host" for x in sl),
                     "blitz_gpu_s": blitz.gpu_seconds, "sllm_gpu_s": sllm.gpu_seconds,
                     "reduction": 1 - blitz.ttft_quantile(0.99) / sllm.ttft_quantile(0.99)})
    return rows


# ---------------------------------------------------------------------------------------------------------
# Sensitivity (tables, not claims): the assumptions the end-to-end verdicts hang on
# ---------------------------------------------------------------------------------------------------------

# What a new instance loads and where stop-the-world loading reads it. Weights: Llama-3-8B's (the claims), and
# Qwen2.5-72B's and GPT-3-175B's (core.models; the paper's largest model is a Qwen-72B), with compute held at
# Llama-3-8B's on one GPU so that only the load time changes. Source: the host's memory on any host that loaded the
# model before (the claims), or local NVMe (core.gpu's measured read) always, as when host memory holds other
# models (the paper's case for O(1) host caching).
SWEEP_LOADS = (("llama3-8b", True), ("llama3-8b", False), ("qwen2.5-72b", False), ("gpt3-175b", False))
# The TTFT SLO (SLO_MULTIPLE x the unloaded P99 TTFT; the claims: 5x) swept from a tight 1.5x to a loose 10x;
# the SLO sizes the static fleet the GPU-seconds are compared with.
SWEEP_SLO_MULTIPLES = (1.5, 2.0, 3.0, 5.0, 10.0)


def _stats(res: ServingResult, loads: list[dict], slo: float) -> dict[str, float]:
    return {"p99_ttft_s": res.ttft_quantile(0.99), "gpu_seconds": res.gpu_seconds, "slo_p99_ttft_s": slo,
            "mean_load_s": float(np.mean([x["load_s"] for x in loads])) if loads else 0.0}


def load_sensitivity(trace: pd.DataFrame, out: dict[str, dict[str, float]], control: bool = False,
                     loads: tuple[tuple[str, bool], ...] = SWEEP_LOADS, cost: IterationCost = COST) -> list[dict]:
    """P99 TTFT of BlitzScale and ServerlessLLM when new instances load a model's weights (compute unchanged),
    with (True) or without host-cache hits for stop-the-world loading. ``out`` is ``compare``'s result on the
    same trace (the claims' row is taken from it); ``control``: BlitzScale's rows load ServerlessLLM-style."""
    slo = out["static"]["slo_p99_ttft_s"]
    default_size = cost.shape.weight_bytes(cost.dtype)
    blitz: dict[float, dict[str, float]] = {}
    rows = []
    for name, host_cache in loads:
        size = model(name).weight_bytes(cost.dtype)
        default = size == default_size and host_cache
        if default:
            b, sl = out["blitzscale"], out["serverlessllm"]
        else:
            sl = _stats(*run_policy(trace, "serverlessllm", cost, size_bytes=size, host_cache=host_cache), slo)
            if control:              # the negative control loads ServerlessLLM-style where BlitzScale would multicast
                b = sl
            else:                    # BlitzScale never reads the host cache: one run per size
                if size not in blitz:
                    blitz[size] = (out["blitzscale"] if size == default_size else
                                   _stats(*run_policy(trace, "blitzscale", cost, size_bytes=size), slo))
                b = blitz[size]
        rows.append({"model": name, "size_bytes": size, "host_cache": host_cache, "default": default,
                     "blitz": b, "sllm": sl, "reduction": 1 - b["p99_ttft_s"] / sl["p99_ttft_s"]})
    return rows


def slo_sensitivity(trace: pd.DataFrame, out: dict[str, dict[str, float]], static_runs: dict[int, ServingResult],
                    multiples: tuple[float, ...] = SWEEP_SLO_MULTIPLES, cost: IterationCost = COST) -> list[dict]:
    """GPU-seconds BlitzScale (``out``: its replay does not depend on the SLO) and ServerlessLLM save against the
    smallest static fleet meeting an SLO of ``multiples`` x the unloaded P99 TTFT, and whether BlitzScale meets
    that SLO itself. ``static_runs``: compare's static replays by fleet size (reused, extended as needed)."""
    unloaded = out["static"]["slo_p99_ttft_s"] / SLO_MULTIPLE
    b, sl = out["blitzscale"], out["serverlessllm"]
    rows = []
    for k in multiples:
        n, res = static_for_slo(trace, k * unloaded, cost=cost, runs=static_runs)
        rows.append({"multiple": k, "slo_s": k * unloaded, "default": k == SLO_MULTIPLE, "static_n": n,
                     "static_meets": res.ttft_quantile(0.99) <= k * unloaded, "static_gpu_s": res.gpu_seconds,
                     "saving": 1 - b["gpu_seconds"] / res.gpu_seconds,
                     "sllm_saving": 1 - sl["gpu_seconds"] / res.gpu_seconds,
                     "blitz_meets": b["p99_ttft_s"] <= k * unloaded})
    return rows


def _holds_where(rows: list[dict], holds: list[bool], label: Callable[[dict], str]) -> str:
    """A sweep's verdict in words: where the band is met, or that it is met nowhere / everywhere."""
    at = [label(r) for r, h in zip(rows, holds, strict=True) if h]
    if not at:
        return "does not flip anywhere in the sweep"
    if len(at) == len(rows):
        return "holds across the sweep"
    return "holds only at " + "; ".join(at)


def _multi_note(row: dict, rows: list[dict]) -> str:
    others = ", ".join(f"{r['reduction']:.0%} at {r['host_gb']:g} GB" for r in rows if r is not row)
    live = ("" if math.isnan(row["nolive_p99_s"]) else
            f"; without ZigZag BlitzScale's P99 is {row['nolive_p99_s']:.2f}s")
    return (f"P99 TTFT {row['blitz_p99_s']:.2f}s vs {row['sllm_p99_s']:.2f}s; ServerlessLLM loaded {row['sllm_loads']} "
            f"times, {row['sllm_host_hits']} from DRAM, mean {row['sllm_load_s']:.2f}s against BlitzScale's "
            f"{row['blitz_load_s']:.2f}s{live}; the reduction is {others}")


def _load_flip(rows: list[dict]) -> str:
    """Where the P99 claim holds in the load-time sweep, as a threshold on ServerlessLLM's load time when the
    sweep is one (every row at or above it holds, none below), otherwise row by row."""
    held = [CLAIMS[0].expect.check(r["reduction"]) for r in rows]
    load = [r["sllm"]["mean_load_s"] for r in rows]
    default = next(r for r in rows if r["default"])["sllm"]["mean_load_s"]
    if any(held) and not all(held):
        x = min(v for v, h in zip(load, held, strict=True) if h)
        if all(h == (v >= x) for v, h in zip(load, held, strict=True)):
            below = max(v for v in load if v < x)
            return (f"flips between {below:.1f} s and {x:.1f} s of stop-the-world loading: holds at >= {x:.1f} s "
                    f"(swept {min(load):.2f}-{max(load):.1f} s; {default:.2f} s in the claims' setting)")
    return _holds_where(rows, held, lambda r: f"{r['model']} weights from "
                                              f"{'the host cache' if r['host_cache'] else 'NVMe'}")


# ---------------------------------------------------------------------------------------------------------
# Reproduction
# ---------------------------------------------------------------------------------------------------------

CLAIMS = (
    Claim("p99-vs-serverlessllm", "P99 TTFT reduction of BlitzScale over ServerlessLLM (same planner), three "
          "models (8B, 33B on TP 2, 72B on TP 4) on 4 x 8 H100s, host DRAM for one 72B model per host (LRU)",
          paper=0.94, unit="", expect=Expect(at_least=0.5), source="abstract (up to 94%)"),
    Claim("gpu-vs-static", "GPU-seconds saved by BlitzScale against static provisioning for the same SLO",
          paper=0.49, unit="", expect=Expect(at_least=0.3), source="abstract (49% less GPU time)"),
    Claim("meets-slo", "BlitzScale's P99 TTFT relative to the SLO (5x the unloaded P99 TTFT)", paper=None,
          unit="x", expect=Expect(at_most=1.0), source="§6 (same SLA)",
          kind=CHECK),  # an absolute level, the condition of gpu-vs-static: ServerlessLLM meets it too here
    Claim("chain-8", "chain multicast to 8 receivers, in units of one transfer (32 layer chunks: the closed form "
          "gives 1 + 7/32 = 1.22)", paper="~1", unit="x", expect=Expect(at_most=1.25), source="§4",
          kind=CHECK),  # a schedule against its closed form
    Claim("star-vs-chain", "a star from one source vs the chain, 8 receivers", paper="~8x", unit="x",
          expect=Expect(at_least=6.0), source="§4", kind=CHECK),  # n / (1 + (n - 1) / k) by construction
)


def reproduce(run: Run) -> Result:
    result = Result(system="blitzscale")
    if not run.data.has("azure_llm_2023"):
        result.notes.append("dataset azure_llm_2023 is missing: the end-to-end claims were not measured.")
        trace = None
    else:
        df = load_azure_llm(run.data.path("azure_llm_2023", "azure_conv_2023.csv"))
        minutes = 15 if run.quick else 60                 # fixed before running: the trace's first minutes
        trace = time_scale(df[df.arrival_s < 60 * minutes], 8.0)
        result.notes.append(f"Workload: the first {minutes} min of azure_llm_2023 compressed 8x "
                            f"({len(trace)} requests in {trace.arrival_s.max():.0f} s); Llama-3-8B on H100s, "
                            "4 hosts x 4 GPUs, 2 to 14 instances.")
    lk = NVLINK_P2P
    one = lk.transfer_s(COST.shape.weight_bytes())
    chain = multicast_schedule(COST.shape.weight_bytes(), 8, lk, "chain").makespan / one
    star = multicast_schedule(COST.shape.weight_bytes(), 8, lk, "star").makespan / one
    tree = multicast_schedule(COST.shape.weight_bytes(), 8, lk, "tree").makespan / one
    ttfts: dict[str, np.ndarray] = {}
    static_runs: dict[int, ServingResult] = {}    # static replays by fleet size, reused by the SLO sweep
    out = (compare(trace, ttft_samples=ttfts, control=run.control, static_runs=static_runs)
           if trace is not None else None)
    if out is not None:
        b, s, st = out["blitzscale"], out["serverlessllm"], out["static"]
        run.progress("the paper's setting: three models under a host-DRAM budget")
        multi = multi_model_sensitivity(trace, run.control, seed=run.seed)
        claim_row = next(r for r in multi if r["host_gb"] == MULTI_CLAIM_GB)
        run.progress("sensitivity: load time and SLO")
        loads = load_sensitivity(trace, out, run.control)
        slos = slo_sensitivity(trace, out, static_runs)
        p99_flip = _load_flip(loads)
        gpu_saving = 1 - b["gpu_seconds"] / st["gpu_seconds"]
        sllm_saving = 1 - s["gpu_seconds"] / st["gpu_seconds"]
        gpu_flip = _holds_where(slos, [CLAIMS[1].expect.check(r["saving"]) for r in slos],
                                lambda r: f"an SLO of {r['multiple']:g}x (saving {r['saving']:.2f} against "
                                          f"{r['static_n']} static instances; BlitzScale "
                                          f"{'meets' if r['blitz_meets'] else 'misses'} that SLO)")
        fair = [r for r in slos if CLAIMS[1].expect.check(r["saving"]) and r["blitz_meets"]]
        gpu_flip += ("" if fair else "; nowhere in the sweep does BlitzScale both save >= "
                     f"{CLAIMS[1].expect.at_least:g} and meet the SLO")
        autoscaling_share = sllm_saving / gpu_saving if gpu_saving > 0 else math.nan
        control_text = (f"ServerlessLLM's loading under the same planner saves {sllm_saving:.3f} (what the negative "
                        f"control measures), {autoscaling_share:.0%} of BlitzScale's {gpu_saving:.3f}"
                        + (": this claim mostly measures autoscaling against static provisioning, not BlitzScale's "
                           "loading" if autoscaling_share >= 0.8 else ""))
        result.findings += [
            CLAIMS[0].measure(claim_row["reduction"], _multi_note(claim_row, multi)
                              + f"; one 8B model alone (every host caches it): P99 {b['p99_ttft_s']:.2f}s vs "
                              f"{s['p99_ttft_s']:.2f}s ({1 - b['p99_ttft_s'] / s['p99_ttft_s']:.0%} lower), and "
                              f"the load-time sweep there: {p99_flip}"),
            CLAIMS[1].measure(gpu_saving,
                              f"{b['gpu_seconds']:.0f} vs {st['gpu_seconds']:.0f} GPU-s ({st['instances']} static "
                              f"instances); {control_text}; sensitivity to the SLO: {gpu_flip}"),
            CLAIMS[2].measure(b["p99_ttft_s"] / b["slo_p99_ttft_s"], f"SLO {b['slo_p99_ttft_s']:.2f}s"),
        ]
        result.tables.append(Table("Autoscaling on the compressed Azure trace (modelled H100s and links)",
                                   ["policy", "P99 TTFT (s)", "SLO attainment", "GPU-seconds", "instances",
                                    "mean load (s)"],
                                   [[p, round(v["p99_ttft_s"], 3), round(v["slo_attainment"], 3),
                                     round(v["gpu_seconds"], 1), v["instances"], round(v["mean_load_s"], 3)]
                                    for p, v in out.items()]))
        result.tables.append(Table(
            "Sensitivity to the load time (not a claim): weights a new instance loads (compute held at Llama-3-8B's) "
            "and where stop-the-world loading reads them; the first row is the claims' setting",
            ["weights", "ServerlessLLM reads", "ServerlessLLM mean load (s)", "BlitzScale mean load (s)",
             "BlitzScale P99 TTFT (s)", "ServerlessLLM P99 TTFT (s)", "P99 reduction"],
            [[f"{r['model']} ({r['size_bytes'] / 1e9:.0f} GB)",
              "host cache if loaded before" if r["host_cache"] else f"local NVMe ({SSD_MEDIUM})",
              round(r["sllm"]["mean_load_s"], 2), round(r["blitz"]["mean_load_s"], 2),
              round(r["blitz"]["p99_ttft_s"], 3), round(r["sllm"]["p99_ttft_s"], 3), round(r["reduction"], 3)]
             for r in loads]))
        result.tables.append(Table(
            f"Sensitivity to the TTFT SLO (not a claim), as a multiple of the unloaded P99 TTFT "
            f"({out['static']['slo_p99_ttft_s'] / SLO_MULTIPLE:.3f} s; the claims use {SLO_MULTIPLE:g}x): the SLO "
            "sizes the static fleet; ServerlessLLM's saving is what the negative control measures",
            ["SLO (x unloaded)", "SLO (s)", "static instances", "static GPU-s", "BlitzScale saving",
             "BlitzScale meets SLO", "ServerlessLLM saving"],
            [[r["multiple"], round(r["slo_s"], 3), r["static_n"] if r["static_meets"] else f"> {r['static_n']}",
              round(r["static_gpu_s"], 1), round(r["saving"], 3), "yes" if r["blitz_meets"] else "no",
              round(r["sllm_saving"], 3)] for r in slos]))
        result.tables.append(Table(
            f"The paper's setting: three models on {MULTI_HOSTS} hosts x {MULTI_GPUS_PER_HOST} H100s, "
            f"{', '.join(f'{m} (TP {tp}) {w:.0%}' for m, tp, w in MULTI_MODELS)} of the requests (a seeded random "
            "assignment of the same trace); host DRAM for weights per host (LRU); the claim's row is "
            f"{MULTI_CLAIM_GB:g} GB; loads include waiting for a busy chain source or NVMe",
            ["host DRAM (GB)", "ServerlessLLM loads", "of them from DRAM", "ServerlessLLM mean load (s)",
             "BlitzScale mean load (s)", "BlitzScale P99 TTFT (s)", "without ZigZag", "ServerlessLLM P99 TTFT (s)",
             "P99 reduction"],
            [[f"{r['host_gb']:g}", r["sllm_loads"], r["sllm_host_hits"], round(r["sllm_load_s"], 2),
              round(r["blitz_load_s"], 2), round(r["blitz_p99_s"], 3),
              "" if math.isnan(r["nolive_p99_s"]) else round(r["nolive_p99_s"], 3), round(r["sllm_p99_s"], 3),
              round(r["reduction"], 3)] for r in multi]))
        result.metrics["multi_model"] = multi
        result.metrics["policies"] = out
        result.metrics["load_sensitivity"] = loads
        result.metrics["slo_sensitivity"] = slos
        size = COST.shape.weight_bytes()
        result.notes.append(f"Reading the result: loads are short for an 8B model ({G.copy_s(size, COST.device):.2f} s "
                            f"from a host cache, {G.storage_s(size, SSD_MEDIUM):.2f} s from local NVMe, "
                            f"{chain_time_s(size, 1, NVLINK_P2P):.2f} s by NVLink chain), so stop-the-world loading "
                            "costs little; and our colocated, rate-driven planner reacts to bursts no better than a "
                            "static fleet with headroom.")
    else:
        result.findings += [CLAIMS[i].measure(None, "azure_llm_2023 missing") for i in range(3)]
    result.findings += [CLAIMS[3].measure(chain), CLAIMS[4].measure(star / chain, f"tree: {tree:.2f}x")]
    result.tables.append(Table("Multicast of Llama-3-8B (16 GB) to 8 GPUs over NVLink 4, chunk-level schedule",
                               ["topology", "time / one transfer"],
                               [["chain", round(chain, 3)], ["binary tree", round(tree, 3)], ["star", round(star, 3)]]))
    plt = pyplot()
    if ttfts:
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for name, v in ttfts.items():
            ax.plot(*cdf(v), label=name)
        ax.axvline(out["static"]["slo_p99_ttft_s"], color="k", ls=":", lw=0.8, label="SLO (P99)")
        ax.set_xscale("log")
        ax.set_xlabel("TTFT (s)")
        ax.set_ylabel("CDF")
        ax.legend(fontsize=8)
        result.figures.append(run.save_figure(fig, "ttft", "TTFT CDF per scaling policy on the compressed Azure "
                                              "trace (modelled H100s)."))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ns = [1, 2, 4, 8, 16]
    for topo in ("chain", "tree", "star"):
        ax.plot(ns, [multicast_schedule(COST.shape.weight_bytes(), n, lk, topo).makespan / one for n in ns],
                marker="o", label=topo)
    ax.set_xlabel("receivers")
    ax.set_ylabel("time / one transfer")
    ax.set_xscale("log", base=2)
    ax.legend()
    result.figures.append(run.save_figure(fig, "multicast", "Parameter multicast: a forwarding chain stays near one "
                                          "transfer as receivers grow; a star grows linearly."))
    return result


SYSTEM = System(
    key="blitzscale",
    name="BlitzScale",
    paper="BlitzScale: Fast and Live Large Model Autoscaling with O(1) Host Caching",
    venue="OSDI 2025",
    domain="serving",
    fidelity=Fidelity.HYBRID,
    real="chain/star/tree multicast schedules, fast-link-first planning and the scaling rule, driving the shared "
         "serving simulator on the real Azure trace",
    modelled="GPU compute and NVLink/RDMA/PCIe/SSD transfers from the shared core.gpu model (H100); live scaling "
             "by its capacity integral",
    claims=CLAIMS,
    reproduce=reproduce,
)
