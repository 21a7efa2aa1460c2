"""DeepServe's platform on the shared serving engine: request -> job -> task, a pre-warm pool, and scale-out.

- **Requests** are the engine's requests (one per trace row). A **job** is a model-serving job: the set of
  tasks serving one model, and the policy of its Job Executor (JE), which runs as the engine's autoscaler hook.
  A **task** is one Task Executor (TE): a process on one GPU that goes pooled -> loading -> serving -> draining
  -> stopped; its serving phase is an engine ``Instance``.
- The **pre-warm pool** holds TEs whose pod is allocated and whose Pre-load stage is done (process started,
  runtime imported, device initialised); each holds its GPU while it waits, which is counted in GPU-seconds. A
  TE taken from the pool is replaced by a new one that becomes ready after the Pre-load stages.
- **Scale-out paths** of one new instance (``Stages``):
  *cold* (the baseline): pod start + process start and runtime import + device init + weights from the host's
  local NVMe (loads started together on one host share its NVMe) + warm-up;
  *DRAM pre-load* (a pooled TE): host-to-device copy of the weights kept in host DRAM + warm-up;
  *fork* (a pooled TE, a running instance as source): fork of the warm process + a device-to-device copy of
  the weights from a source, across hosts over the NIC; forked instances become sources, so the sources double
  every round + warm-up. DeepServe forks when a source is serving, else loads from DRAM; when the pool is
  empty a new instance starts cold.
- The JE's **scaling policy** is ours (the paper gives none), the same for every path: every ``tick_s`` it sets
  the target from the arrival rate of prompt tokens (an EWMA over ~2 s) against ``high`` x one instance's
  prefill throughput (the engine's), launches the difference, and drains one idle-most instance once the target
  has stayed lower for ``keepalive_s``. Requests go to the instance with the least expected wait (time until it
  is ready + its outstanding tokens at its prefill rate), warm or not, so new instances take work as they come
  up (load-aware routing; queued requests are not migrated).

Stage costs and their sources (see the package docstring for the measured ones): pod start 5 s
(``POD_START_S``), device init 4.12 s (``DEVICE_INIT_S``), warm-up 5 s (``WARMUP_S``), NVMe / DRAM / NIC /
NVLink times from ``core.gpu``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from syslab.core import gpu as G
from syslab.core.errors import InputError
from syslab.core.hardware import gpu
from syslab.core.models import model
from syslab.serving.engine import ClusterView, Instance, IterationCost, Request, requests_from_frame, simulate

GPU_NAME = "H100-SXM"     # the shared GPU model has no Ascend NPUs: an H100 stands in (DGX H100 hosts)
MODEL_NAME = "llama3-8b"  # the paper's scale-up example
GPUS_PER_HOST = 8         # DGX H100 (NVIDIA DGX H100 user guide)
HOSTS = 8                 # 64 GPUs: room for the abstract's 64 instances
# Pod start: the Kubernetes scalability SLO for pod startup latency (stateless, schedulable pods, image pull
# excluded): 99th percentile per cluster-day <= 5 s (kubernetes/community sig-scalability/slos/
# pod_startup_latency.md). An SLO bound, not a measurement: a pre-warmed pod skips it.
POD_START_S = 5.0
# Device init: CUDA context creation + first tensor, 4.124 s measured by the reporter of LaurentMazare/tch-rs
# issue #61 ("time to create 1st tensor: 4.124049426s", 2019). Ascend NPU + HCCL init has no public figure.
DEVICE_INIT_S = 4.12
# Warm-up (Post-load: dummy requests / graph capture): vLLM's own comment on CUDA-graph capture, "This usually
# takes 5~20 seconds" (vllm-project/vllm, vllm/worker/model_runner.py, capture_model); the low end. Every path
# pays it (the paper's Post-load stage runs after NPU-fork and DRAM loads too).
WARMUP_S = 5.0
SSD_MEDIUM = "nvme"       # core.gpu's measured local-NVMe sequential read (Azure ND A100 v4 FIO)
PATHS = ("cold", "dram", "fork")
POLICIES = ("cold", "deepserve-dram", "deepserve")   # baseline; pool + DRAM; pool + fork (DRAM without a source)


@dataclass(frozen=True)
class Stages:
    """Per-instance scale-out stage costs (seconds). ``runtime_s`` (process start + runtime import) and
    ``fork_s`` (fork of a warm process to its first forward) are measured on this machine by
    ``deepserve.measure_starts``; the rest are cited constants or ``core.gpu`` times."""

    runtime_s: float
    fork_s: float
    pod_start_s: float = POD_START_S
    device_init_s: float = DEVICE_INIT_S
    warmup_s: float = WARMUP_S
    weights_bytes: float = field(default_factory=lambda: model(MODEL_NAME).weight_bytes("bf16"))
    device: str = GPU_NAME
    ssd_medium: str = SSD_MEDIUM
    ssd_gbps: float | None = None     # override the medium's throughput (sensitivity sweeps only)

    def __post_init__(self) -> None:
        for name in ("runtime_s", "fork_s", "pod_start_s", "device_init_s", "warmup_s", "weights_bytes"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise InputError(f"stage {name} = {v!r}.", field=name, fix="use a finite number >= 0.")

    @property
    def preload_s(self) -> float:
        """What a pre-warmed TE has done before it is needed: pod, process + runtime, device init."""
        return self.pod_start_s + self.runtime_s + self.device_init_s

    def ssd_load_s(self, sharing: int = 1) -> float:
        """Weights from the host's local NVMe while ``sharing`` loads read it together."""
        n = self.weights_bytes * max(sharing, 1)
        return n / (self.ssd_gbps * 1e9) if self.ssd_gbps else G.storage_s(n, self.ssd_medium)

    @property
    def dram_load_s(self) -> float:
        return G.copy_s(self.weights_bytes, self.device, "h2d")

    @property
    def fork_copy_s(self) -> float:
        """One device-to-device copy of the weights from a source on another host (NCCL send/recv over the NIC)."""
        return G.collective_s("sendrecv", self.weights_bytes, 2, self.device, nodes=2)

    def cold_s(self, sharing: int = 1) -> float:
        return self.preload_s + self.ssd_load_s(sharing) + self.warmup_s

    @property
    def dram_s(self) -> float:
        return self.dram_load_s + self.warmup_s

    def fork_s_after(self, rounds: int) -> float:
        return rounds * (self.fork_s + self.fork_copy_s) + self.warmup_s


def fork_rounds(k: int, sources: int) -> list[int]:
    """The round in which each of k targets receives its copy when every holder copies to one target per round
    (sources double each round): target j (0-based) in round ceil(log2((j + 1) / s + 1))."""
    if sources < 1:
        raise ValueError("fork needs a source")
    return [math.ceil(math.log2((j + 1) / sources + 1) - 1e-12) for j in range(k)]


def plan_scaleout(k: int, policy: str, stages: Stages, pooled: int, sources: int, slots: Sequence[int],
                  gpus_per_host: int = GPUS_PER_HOST) -> list[tuple[str, float]]:
    """(path, seconds to ready) of each of k new instances started together on GPU ``slots`` (host = slot //
    gpus_per_host): the first ``pooled`` use pre-warmed TEs (``policy`` decides DRAM or fork), the rest start
    cold; cold loads on one host share its NVMe. The single code path of the tool, the claims and the checks."""
    if policy not in POLICIES:
        raise InputError(f"unknown policy {policy!r}.", field="policy", fix=f"use one of {', '.join(POLICIES)}.")
    warm = min(pooled, k) if policy != "cold" else 0
    out: list[tuple[str, float]] = []
    if warm:
        if policy == "deepserve" and sources > 0:
            out += [("fork", stages.fork_s_after(r)) for r in fork_rounds(warm, sources)]
        else:
            out += [("dram", stages.dram_s)] * warm
    cold_hosts = [s // gpus_per_host for s in slots[warm:k]]
    share = {h: cold_hosts.count(h) for h in set(cold_hosts)}
    out += [("cold", stages.cold_s(share[h])) for h in cold_hosts]
    return out


# ---------------------------------------------------------------------------------------------------------
# Tasks, the pool and the Job Executor
# ---------------------------------------------------------------------------------------------------------

@dataclass(eq=False)
class Task:
    """One Task Executor on one GPU slot. ``held_from``: when it took the GPU (pool entry or cold launch)."""

    id: int
    slot: int
    held_from: float
    state: str = "pooled"        # pooled | loading | serving | draining | stopped
    ready_at: float = 0.0        # pooled: when its Pre-load is done; loading: when it serves
    path: str = ""
    instance: Instance | None = None


@dataclass
class PrewarmPool:
    """Pre-warmed TEs (pod allocated, Pre-load done), refilled as they are taken."""

    size: int
    stages: Stages
    tasks: list[Task] = field(default_factory=list)
    held_s: float = 0.0          # GPU-seconds of TEs while pooled (closed intervals)

    def ready(self, now: float) -> list[Task]:
        return [t for t in self.tasks if t.ready_at <= now]

    def take(self, now: float, n: int) -> list[Task]:
        got = self.ready(now)[:n]
        for t in got:
            self.tasks.remove(t)
            self.held_s += now - t.held_from
        return got

    def open_s(self, end: float) -> float:
        return sum(end - t.held_from for t in self.tasks)


@dataclass
class JobExecutor:
    """A model-serving job's executor: the engine's autoscaler hook. Decides how many tasks serve, takes them
    from the pool or starts them cold (``policy``), and keeps the record of every scale-out."""

    cost: IterationCost
    stages: Stages
    policy: str = "deepserve"
    prewarm: int = 8
    hosts: int = HOSTS
    gpus_per_host: int = GPUS_PER_HOST
    high: float = 0.7            # target utilisation of prefill throughput (ours)
    keepalive_s: float = 30.0    # an instance stays this long after the target drops (ours)
    min_n: int = 1
    tasks: list[Task] = field(default_factory=list)
    scaleouts: list[dict] = field(default_factory=list)
    _rate: float = 0.0
    _last: tuple[float, int] | None = None
    _below_since: float | None = None

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise InputError(f"unknown policy {self.policy!r}.", field="policy",
                             fix=f"use one of {', '.join(POLICIES)}.")
        if not 0 <= self.prewarm < self.hosts * self.gpus_per_host:
            raise InputError(f"{self.prewarm} pre-warmed tasks on {self.hosts * self.gpus_per_host} GPUs.",
                             field="prewarm", fix="use 0 or more, fewer than the cluster's GPUs.")
        n = 8192
        self.prefill_tok_s = n / self.cost.time_s(n, n * (n + 1) / 2, 0)
        self.pool = PrewarmPool(self.prewarm if self.policy != "cold" else 0, self.stages)
        self._next_id = 0
        self.tasks.append(self._task(0.0, "serving", 0.0, "initial"))      # the instance serving at t = 0
        for _ in range(self.pool.size):
            self.pool.tasks.append(self._task(0.0, "pooled", 0.0, ""))     # pre-warmed before the trace

    @property
    def gpus(self) -> int:
        return self.hosts * self.gpus_per_host

    def _free_slots(self) -> list[int]:
        used = {t.slot for t in self.tasks if t.state != "stopped"} | {t.slot for t in self.pool.tasks}
        return [s for s in range(self.gpus) if s not in used]

    def _task(self, now: float, state: str, ready_at: float, path: str) -> Task:
        free = self._free_slots()
        t = Task(self._next_id, free[0], now, state, ready_at, path)
        self._next_id += 1
        return t

    def bind_initial(self, inst: Instance) -> None:
        self.tasks[0].instance = inst

    def router(self, r: Request, instances: Sequence[Instance]) -> Instance:
        """Least expected wait: time until ready plus outstanding tokens at the prefill rate."""
        return min(instances, key=lambda i: (max(i.ready_s - r.arrival_s, 0.0) + i.load / self.prefill_tok_s, i.id))

    def __call__(self, view: ClusterView) -> None:
        now = view.now
        for t in self.tasks:                                   # bookkeeping: loading -> serving, drained -> stopped
            if t.instance is not None and t.state == "loading" and t.instance.ready_s <= now:
                t.state = "serving"
            if t.instance is not None and t.state == "draining" and not math.isnan(t.instance.stop_s):
                t.state = "stopped"
        arrived = view.arrived_prompt_tokens
        if self._last is not None and now > self._last[0]:
            rate = (arrived - self._last[1]) / (now - self._last[0])
            self._rate += (1 - math.exp(-(now - self._last[0]) / 2.0)) * (rate - self._rate)
        self._last = (now, arrived)
        live = [t for t in self.tasks if t.state in ("loading", "serving")]
        target = max(self.min_n, math.ceil(self._rate / (self.high * self.prefill_tok_s)))
        if target > len(live):
            self._below_since = None
            self._scale_out(view, target - len(live))
        elif target < len(live):
            self._below_since = now if self._below_since is None else self._below_since
            serving = [t for t in live if t.state == "serving"]
            if now - self._below_since >= self.keepalive_s and len(serving) > self.min_n:
                victim = min(serving, key=lambda t: (t.instance.load, -t.id))
                view.drain(victim.instance)
                victim.state = "draining"
                self._below_since = now
        else:
            self._below_since = None

    def _scale_out(self, view: ClusterView, k: int) -> None:
        now = view.now
        pooled = self.pool.take(now, k)
        free = self._free_slots()
        k = min(k, len(pooled) + len(free))
        if k <= 0:
            return
        sources = sum(1 for t in self.tasks if t.state == "serving")
        slots = [t.slot for t in pooled] + free[: k - len(pooled)]
        plan = plan_scaleout(k, self.policy, self.stages, len(pooled), sources, slots, self.gpus_per_host)
        for j, (path, ready_in) in enumerate(plan):
            if j < len(pooled):
                task = pooled[j]
                task.held_from = now
            else:
                task = Task(self._next_id, slots[j], now)
                self._next_id += 1
            task.state, task.path, task.ready_at = "loading", path, now + ready_in
            task.instance = view.launch(ready_in)
            self.tasks.append(task)
            self.scaleouts.append({"t": now, "path": path, "ready_in_s": ready_in})
        for _ in pooled:                                        # refill the pool behind them
            if self._free_slots():
                self.pool.tasks.append(self._task(now, "pooled", now + self.stages.preload_s, ""))


# ---------------------------------------------------------------------------------------------------------
# Replays
# ---------------------------------------------------------------------------------------------------------

def default_cost(device: str = GPU_NAME, model_name: str = MODEL_NAME) -> IterationCost:
    return IterationCost(model(model_name), gpu(device))


@dataclass
class Replay:
    policy: str
    p99_ttft_s: float
    mean_ttft_s: float
    gpu_seconds: float           # instances (cold starts included) + pooled TEs
    pool_gpu_seconds: float
    instances: int
    scaleouts: list[dict]

    @property
    def scaleout_s(self) -> dict[str, float]:
        v = [s["ready_in_s"] for s in self.scaleouts]
        return {"count": len(v), "mean": float(np.mean(v)) if v else 0.0, "max": float(max(v)) if v else 0.0}

    def as_dict(self) -> dict:
        paths = {p: sum(1 for s in self.scaleouts if s["path"] == p) for p in PATHS}
        return {"policy": self.policy, "p99_ttft_s": self.p99_ttft_s, "mean_ttft_s": self.mean_ttft_s,
                "gpu_seconds": self.gpu_seconds, "pool_gpu_seconds": self.pool_gpu_seconds,
                "instances": self.instances, "scaleout_s": self.scaleout_s, "paths": paths}


def replay(trace: pd.DataFrame, policy: str, stages: Stages, prewarm: int = 8, cost: IterationCost | None = None,
           tick_s: float = 0.5) -> Replay:
    """Replay a trace (arrival_s, prompt_tokens, output_tokens) from one serving instance under ``policy``."""
    cost = cost or default_cost(stages.device)
    je = JobExecutor(cost, replace(stages, device=cost.device.name), policy, prewarm)
    kv = cost.kv_capacity_tokens()
    made: list[Instance] = []

    def make(i: int, start: float, ready: float) -> Instance:
        inst = Instance(cost, kv, id=i, start_s=start, ready_s=ready)
        if not made:
            je.bind_initial(inst)
        made.append(inst)
        return inst

    reqs = requests_from_frame(trace)
    res = simulate(reqs, make, initial_instances=1, router=je.router, autoscaler=je, tick_s=tick_s)
    end = res.makespan_s + float(trace.arrival_s.min()) if len(trace) else 0.0
    pool_s = je.pool.held_s + je.pool.open_s(end)
    return Replay(policy, res.ttft_quantile(0.99), float(res.requests.ttft_s.mean()), res.gpu_seconds + pool_s,
                  pool_s, res.instances, je.scaleouts)


def compare(trace: pd.DataFrame, stages: Stages, prewarm: int = 8, cost: IterationCost | None = None,
            control: bool = False) -> dict[str, Replay]:
    """Every policy on one trace (the tool's output). ``control``: the DeepServe rows start cold (the baseline)."""
    return {p: replace(replay(trace, "cold" if control else p, stages, prewarm, cost), policy=p) for p in POLICIES}


def burst_window(df: pd.DataFrame, minutes: float, factor: float) -> pd.DataFrame:
    """The trace's first ``minutes`` replayed ``factor`` times faster: a burst against a fleet sized for the
    trace's calm rate (one instance)."""
    w = df[df.arrival_s < 60.0 * minutes].copy()
    w["arrival_s"] = w["arrival_s"] / factor
    return w.reset_index(drop=True)
