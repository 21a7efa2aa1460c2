"""BlitzScale: Fast and Live Large Model Autoscaling with O(1) Host Caching (OSDI 2025).

STATUS: work in progress, not registered in the catalog. The multicast schedules, the source planner and
the control law are tested; the end-to-end autoscaling comparison is not yet validated (a first replay had
both autoscaled fleets flapping and missing the SLO that a static fleet of 3 meets, which points at our
simplified control law: one pool instead of separate prefill/decode pools, backlog instead of rate signals,
no request migration). Nothing here is reported until that is resolved.

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

**What is modelled.** GPU compute (the engine's H100 roofline for Llama-3-8B) and every transfer: NVLink 4
(450 GB/s, H100 datasheet), 100 Gb/s RDMA as in the paper's testbed, host-to-GPU PCIe 5 (63 GB/s, PCI-SIG),
and NVMe SSD reads at 3 GB/s (our assumption for a Gen4 drive). Live scaling ("ZigZag") is approximated by
its capacity integral: while layers arrive linearly, the partial instance contributes on average half an
instance, so it counts as ready halfway through its load; a variant without live scaling is reported too.
Baselines: ServerlessLLM-style stop-the-world loading (host cache if that host loaded the model before,
otherwise SSD) driven by the same planner, and static provisioning for the peak (the smallest fixed fleet
meeting the same TTFT SLO).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from syslab.core.errors import InputError
from syslab.core.hardware import Link, gpu, link
from syslab.core.models import model
from syslab.core.timeline import Op, schedule
from syslab.serving.engine import ClusterView, Instance, IterationCost, ServingResult, requests_from_frame, simulate

RDMA_100G = Link("rdma-100g", 12.5, 3.0, "100 Gb/s RDMA NIC per GPU, as in the paper's testbed")
SSD = Link("nvme-ssd", 3.0, 100.0, "NVMe Gen4 SSD sequential read, our assumption (~3 GB/s)")


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
    """GPUs in hosts; which GPU runs which instance; which hosts keep the model in host memory."""

    nodes: int = 4
    gpus_per_node: int = 4
    placement: dict[int, tuple[int, int]] = field(default_factory=dict)     # instance id -> (node, gpu)
    host_cached: set[int] = field(default_factory=set)

    def free_gpus(self) -> list[tuple[int, int]]:
        used = set(self.placement.values())
        return [(n, g) for n in range(self.nodes) for g in range(self.gpus_per_node) if (n, g) not in used]


@dataclass
class Scaler:
    """Drives an engine cluster: the control law decides how many instances; ``mode`` decides how they load.

    mode: 'blitzscale' (multicast from live instances, fast link first, optionally live), 'serverlessllm'
    (stop-the-world from the host cache or SSD)."""

    cost: IterationCost
    mode: str
    live: bool = True
    cluster: Cluster = field(default_factory=Cluster)
    min_num: int = 2
    max_num: int = 14
    loads: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        size = self.cost.shape.weight_bytes(self.cost.dtype)
        t = self.cost.time_s(8192, 8192 * 8193 / 2, 0)
        self.prefill_tok_s = 8192 / t                       # one instance's prefill throughput (the engine's)
        self.size = size

    def place_initial(self, n: int) -> None:
        for i in range(n):
            self.cluster.placement[i] = (0, i)
        self.cluster.host_cached.add(0)

    def __call__(self, view: ClusterView) -> None:
        live = [i for i in view.instances if not i.draining]
        kv_used = sum(i.held_blocks() * i.block_tokens for i in live)
        kv_cap = live[0].total_blocks * live[0].block_tokens if live else 1
        waiting = sum(r.needed - r.kv for i in live for r in list(i.waiting) + i.running if r.prefilling)
        bands = [Band(waiting, self.prefill_tok_s, 0.7, 0.5), Band(kv_used, kv_cap, 0.95, 0.75)]
        target = scale_target(len(live), bands, self.min_num, self.max_num)
        if target > len(live):
            self._scale_up(view, live, target - len(live))
        elif target < len(live):
            victim = min(live, key=lambda i: (i.load, -i.id))
            view.drain(victim)
            self.cluster.placement.pop(victim.id, None)

    def _scale_up(self, view: ClusterView, live: list[Instance], n: int) -> None:
        free = self.cluster.free_gpus()
        if not free:
            return
        warm_nodes = {self.cluster.placement[i.id][0] for i in live
                      if i.id in self.cluster.placement and i.ready_s <= view.now}
        # Fast link first: GPUs on hosts that already run a warm instance (NVLink), then the others.
        free.sort(key=lambda ng: (ng[0] not in warm_nodes, ng))
        chosen = free[:n]
        by_source: dict[str, list[tuple[int, int]]] = {}
        for node, g in chosen:
            if self.mode == "blitzscale":
                src = "nvlink" if node in warm_nodes else ("rdma" if warm_nodes else "ssd")
            else:
                src = "host" if node in self.cluster.host_cached else "ssd"
            by_source.setdefault(f"{src}:{node}" if src in ("nvlink", "host", "ssd") else src, []).append((node, g))
        for key, gpus in by_source.items():
            src = key.split(":")[0]
            if self.mode == "blitzscale" and src in ("nvlink", "rdma"):
                lk = link("nvlink4") if src == "nvlink" else RDMA_100G
                load_s = chain_time_s(self.size, len(gpus), lk)      # one chain per source kind
            else:
                lk = link("pcie5") if src == "host" else SSD
                load_s = lk.transfer_s(self.size)                     # every GPU loads for itself
            ready_in = load_s / 2 if (self.mode == "blitzscale" and self.live) else load_s
            for node, g in gpus:
                inst = view.launch(ready_in)
                self.cluster.placement[inst.id] = (node, g)
                self.cluster.host_cached.add(node)
                self.loads.append({"t": view.now, "source": src, "load_s": load_s})


# ---------------------------------------------------------------------------------------------------------
# Replays
# ---------------------------------------------------------------------------------------------------------

COST = IterationCost(model("llama3-8b"), gpu("H100-SXM"))


def _make(cost: IterationCost) -> Callable[[int, float, float], Instance]:
    kv = cost.kv_capacity_tokens()
    return lambda i, start, ready: Instance(cost, kv, id=i, start_s=start, ready_s=ready)


def run_policy(trace: pd.DataFrame, policy: str, cost: IterationCost = COST, static_n: int = 0,
               tick_s: float = 0.5) -> tuple[ServingResult, list[dict]]:
    """Replay a trace (arrival_s, prompt_tokens, output_tokens) under 'blitzscale', 'blitzscale-nolive',
    'serverlessllm' or 'static' (``static_n`` fixed instances)."""
    reqs = requests_from_frame(trace)
    if policy == "static":
        return simulate(reqs, _make(cost), initial_instances=static_n), []
    if policy not in ("blitzscale", "blitzscale-nolive", "serverlessllm"):
        raise InputError(f"unknown policy {policy!r}.", field="policy",
                         fix="use blitzscale, blitzscale-nolive, serverlessllm or static.")
    scaler = Scaler(cost, "serverlessllm" if policy == "serverlessllm" else "blitzscale",
                    live=policy == "blitzscale")
    scaler.place_initial(scaler.min_num)
    res = simulate(reqs, _make(cost), initial_instances=scaler.min_num, autoscaler=scaler, tick_s=tick_s)
    return res, scaler.loads


def unloaded_ttft_s(trace: pd.DataFrame, cost: IterationCost = COST) -> np.ndarray:
    """Each request's TTFT on an idle instance: its (chunked) prefill alone."""
    out = []
    for p in trace.prompt_tokens.to_numpy():
        t, done = 0.0, 0
        while done < p:
            n = min(8192, p - done)
            t += cost.time_s(n, n * done + n * (n + 1) / 2, done)
            done += n
        out.append(t)
    return np.array(out)


def static_for_slo(trace: pd.DataFrame, slo_p99_s: float, max_n: int = 16, cost: IterationCost = COST
                   ) -> tuple[int, ServingResult]:
    """The smallest static fleet whose P99 TTFT meets the SLO (or the largest tried)."""
    res = None
    for n in range(1, max_n + 1):
        res, _ = run_policy(trace, "static", cost, static_n=n)
        if res.ttft_quantile(0.99) <= slo_p99_s:
            return n, res
    return max_n, res


def compare(trace: pd.DataFrame, cost: IterationCost = COST) -> dict[str, dict[str, float]]:
    """P99 TTFT and GPU-seconds per policy on one trace (the tool's output)."""
    slo = 5.0 * float(np.quantile(unloaded_ttft_s(trace, cost), 0.99))
    out = {}
    for policy in ("blitzscale", "serverlessllm"):
        res, loads = run_policy(trace, policy, cost)
        out[policy] = {"p99_ttft_s": res.ttft_quantile(0.99), "gpu_seconds": res.gpu_seconds,
                       "slo_attainment": res.slo_attainment(ttft_s=slo), "instances_launched": res.instances,
                       "mean_load_s": float(np.mean([x["load_s"] for x in loads])) if loads else 0.0}
    n, res = static_for_slo(trace, slo, cost=cost)
    out["static"] = {"p99_ttft_s": res.ttft_quantile(0.99), "gpu_seconds": res.gpu_seconds,
                     "slo_attainment": res.slo_attainment(ttft_s=slo), "instances_launched": n, "mean_load_s": 0.0}
    out["slo_p99_ttft_s"] = {"value": slo}
    return out
