"""A trace-driven, iteration-level LLM serving simulator: the substrate of syslab's serving systems.

What it models (vLLM-style continuous batching with chunked prefill, as in Sarathi-Serve):

- **An instance** is one model replica on a tensor-parallel group of GPUs. Each *iteration* runs every
  running request's next decode token plus up to ``max_batch_tokens - decodes`` prefill tokens (a long prompt
  is chunked over iterations; partially prefilled requests go first, then waiting ones in FIFO order).
- **Iteration time** comes from the shared GPU cost model (``IterationCost`` over ``core.gpu.ForwardModel``):
  every layer's GEMMs at the batch's token count (tensor-parallel over ``tp`` GPUs, all-reduces included),
  the memory-bound norms/activations, prefill attention over the batch's causal (query, key) pairs, and decode
  attention reading every decoding request's cached K and V, plus a fixed ``overhead_s`` per iteration (0 by
  default: the engine's CPU-side scheduling, which a system may set and cite). Shapes come from ``core.models``;
  kernel times, with their calibration and citations, from ``core.gpu``; the engine keeps no efficiency of its own.
- **KV cache** in blocks of ``block_tokens``; a request is admitted only when its prompt fits; when decode
  runs out of blocks the newest request is preempted and later re-prefilled (vLLM's recompute preemption).
- **Prefix-cache hits**: a request may arrive with ``cached`` prompt tokens already in the KV cache (a hit of
  a prefix-cache policy, e.g. ``serving.kvcache_wild``); its prefill computes only the rest, attending to them.
- **Lifecycle**: an instance is cold until ``ready_s`` (weights loading over a link, see ``load_time_s``),
  then warm; a draining instance takes no new requests and stops when empty. GPU-seconds count from start
  to stop on every GPU of the group.
- **A cluster** replays arrivals in time order, routes each request to an instance (a pluggable ``router``)
  and lets a pluggable ``autoscaler`` add or drain instances at a fixed tick. A cluster may serve **several
  models**: each request names its model, each instance serves one, a request is routed only among its
  model's instances, and the autoscaler's view can be narrowed to one model (``ClusterView.of``).
- **Partial (layer-split) instances** (``LayerSplit``, BlitzScale's live scaling): while a new instance
  receives a model's layers in order, it runs the layers it already holds for an existing instance, which runs
  the rest; the pair pipelines the existing instance's batches, so its iterations take max(f, 1 - f) of their
  time when the new one holds a fraction f of the layers (the handoff of activations is not charged). The
  factor is read at the start of each iteration (of each fast-forwarded span, which then lasts at most 1/32
  of the split's duration).
- **Host-DRAM model caches** (``HostCache``): a host's memory holds whole models' weights up to a byte
  capacity, least recently used out first; a system asks it where a new instance loads from.

Metrics per request: TTFT (arrival to the end of the iteration that emits the first token), TPOT (mean gap
between later tokens), end-to-end latency, preemptions; per run: SLO attainment and GPU-seconds.

**Speed.** Spans where the batch only decodes (no admissions, prefills or preemptions) are fast-forwarded in
closed form with numpy until the next completion, arrival or KV exhaustion, so the cost grows with the
number of *events* (arrivals, completions, prefill chunks), not with output tokens: O(requests x batch size)
overall. Each instance's load (the router's signal) is kept up to date as work arrives and runs, so routing
an arrival costs O(instances), not a rescan of every queue (an overloaded fleet stays linear in requests).
``fast_forward=False`` runs every iteration one by one (the reference the tests compare against).
"""

from __future__ import annotations

import functools
import heapq
import math
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from syslab.core import gpu as G
from syslab.core.errors import InputError
from syslab.core.hardware import GPU, Link
from syslab.core.models import DTYPE_BYTES, Transformer

MAX_SPAN = 4096   # iterations fast-forwarded at once (bounds the size of the temporary arrays)
SPLIT_PIECES = 32  # a partial instance's load is fast-forwarded in at least this many spans (its factor changes)


# ---------------------------------------------------------------------------------------------------------
# Iteration cost: the shared GPU cost model over the whole batch
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IterationCost:
    """Time of one engine iteration of ``shape`` on a ``tp``-GPU group of ``device``, from ``core.gpu.ForwardModel``.

    ``overhead_s`` is a fixed per-iteration cost outside the GPU kernels (CPU scheduling, sampling); 0 unless a
    system sets and cites one. *Cost*: GEMM times are memoised per token count, so a replay pays for each distinct
    batch size once; ``decode_span_s`` is one numpy expression."""

    shape: Transformer
    device: GPU
    tp: int = 1
    dtype: str = "bf16"
    overhead_s: float = 0.0

    @functools.cached_property
    def forward(self) -> G.ForwardModel:
        return G.ForwardModel(self.shape, self.device, self.tp, self.dtype)

    @property
    def weight_bytes(self) -> float:
        return self.shape.active_params * DTYPE_BYTES[self.dtype]

    def time_s(self, new_tokens: float, attn_pairs: float, kv_read_tokens: float,
               prefill_tokens: float | None = None) -> float:
        """One iteration processing ``new_tokens`` tokens (prefill chunks and decodes). ``attn_pairs``: the
        prefill chunks' causal (query, key) pairs, cached prefixes included (compute-bound attention);
        ``kv_read_tokens``: cached tokens the decoding requests read (memory-bound decode attention).
        ``prefill_tokens`` (default ``new_tokens``) sets the mean keys per query, hence attention efficiency."""
        n = int(new_tokens)
        if n <= 0:
            return self.overhead_s
        fm = self.forward
        q = float(prefill_tokens) if prefill_tokens else float(n)
        mean_keys = max(attn_pairs / q, 1.0) if attn_pairs > 0 else 1.0
        t = fm.linear_s(n) + fm.fixed_s(n) + self.overhead_s
        if attn_pairs > 0:
            t += float(fm.attention_s(attn_pairs, mean_keys))
        if kv_read_tokens > 0:
            t += float(fm.decode_attention_s(kv_read_tokens))
        return t

    def decode_span_s(self, batch: int, context: float, k: int) -> np.ndarray:
        """Times of k consecutive decode-only iterations of ``batch`` sequences whose summed cached context starts
        at ``context`` tokens and grows by ``batch`` each iteration: the GEMM and elementwise part is fixed for the
        batch; decode attention grows with the context (vectorised ``time_s``)."""
        fm = self.forward
        ctx = context + batch * np.arange(k, dtype=np.float64)
        fixed = fm.linear_s(batch) + fm.fixed_s(batch) + self.overhead_s
        return fixed + np.asarray(fm.decode_attention_s(ctx), dtype=np.float64)

    def kv_capacity_tokens(self, memory_fraction: float = 0.9) -> int:
        """Tokens of KV cache that fit in the group's HBM after the weights (vLLM's gpu_memory_utilization)."""
        free = self.device.hbm_gb * 1e9 * self.tp * memory_fraction - self.shape.weight_bytes(self.dtype)
        if free <= 0:
            raise InputError(f"{self.shape.name} does not fit on {self.tp} x {self.device.name}.", field="tp",
                             fix="use more GPUs per instance (tensor parallelism).")
        return int(free // self.shape.kv_bytes_per_token(self.dtype))


def load_time_s(shape: Transformer, link: Link, dtype: str = "bf16", tp: int = 1) -> float:
    """Time to load an instance's weights over ``link`` (each of the tp GPUs loads its 1/tp shard in parallel)."""
    return link.transfer_s(shape.weight_bytes(dtype) / tp)


@dataclass(frozen=True)
class LayerSplit:
    """A partial instance helping an existing one: it holds a linearly growing share f of the layers from
    ``start_s`` (none) to ``ready_s`` (all, when it becomes an instance of its own); meanwhile the pair runs the
    existing instance's iterations in max(f, 1 - f) of their time (see the module docstring)."""

    start_s: float
    ready_s: float

    def factor(self, t: float) -> float:
        if not self.start_s <= t < self.ready_s:
            return 1.0
        f = (t - self.start_s) / (self.ready_s - self.start_s)
        return max(f, 1.0 - f)


class HostCache:
    """One host's DRAM as a cache of whole models' weights: up to ``capacity_bytes``, least recently used out
    first (ServerlessLLM keeps checkpoints in host memory this way; the policy is our reading, see
    ``serving.blitzscale``). ``touch(model, nbytes)`` records a load of the model on this host and says whether
    its weights were already in DRAM (a hit); a model larger than the whole capacity is never kept. O(1) per
    touch, amortised (each model is evicted at most once per insertion)."""

    def __init__(self, capacity_bytes: float) -> None:
        if not capacity_bytes >= 0:                       # also rejects NaN
            raise InputError(f"host cache capacity {capacity_bytes!r} bytes.", field="capacity_bytes",
                             fix="give the host memory for model weights in bytes, 0 or more (math.inf: no limit).")
        self.capacity_bytes = float(capacity_bytes)
        self._models: OrderedDict[str, float] = OrderedDict()
        self.used_bytes = 0.0
        self.hits = self.misses = 0

    def __contains__(self, model: str) -> bool:
        return model in self._models

    @property
    def models(self) -> list[str]:
        """Cached models, least recently used first."""
        return list(self._models)

    def touch(self, model: str, nbytes: float) -> bool:
        if model in self._models:
            self._models.move_to_end(model)
            self.hits += 1
            return True
        self.misses += 1
        if nbytes <= self.capacity_bytes:
            while self.used_bytes + nbytes > self.capacity_bytes:
                _, freed = self._models.popitem(last=False)
                self.used_bytes -= freed
            self._models[model] = nbytes
            self.used_bytes += nbytes
        return False


# ---------------------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------------------

@dataclass(eq=False)
class Request:
    """A request and its progress. ``kv`` tokens are cached; before its next decode a request needs
    ``needed`` = prompt + (generated - 1) tokens cached (after a preemption they are recomputed by prefill).
    ``cached``: prompt tokens found in a prefix cache on arrival (a hit of the KV-cache policies): the prefill
    computes only the rest, attending to them; they hold KV blocks like any cached token. A preempted request
    loses them (recompute preemption recomputes the whole prefix)."""

    id: int
    arrival_s: float
    prompt: int
    output: int
    cached: int = 0
    kv: int = 0
    generated: int = 0
    first_token_s: float = math.nan
    finish_s: float = math.nan
    instance: int = -1
    preemptions: int = 0
    model: str = ""                 # which model serves it ("" in a one-model cluster)

    @property
    def needed(self) -> int:
        return self.prompt + self.generated - 1 if self.generated else self.prompt

    @property
    def prefilling(self) -> bool:              # on the hot path: inlined ``needed``
        return self.kv < (self.prompt + self.generated - 1 if self.generated else self.prompt)

    @property
    def finished(self) -> bool:
        return self.generated >= self.output


def requests_from_frame(df: pd.DataFrame, source: str = "<trace>") -> list[Request]:
    """Requests from a frame with ``arrival_s``, ``prompt_tokens``, ``output_tokens`` (``core.workloads``) and,
    optionally, ``cached_tokens`` (prefix-cache hits) and ``model`` (which model serves it). Unsorted arrivals
    are sorted (with a warning); negative lengths are input errors."""
    for col in ("arrival_s", "prompt_tokens", "output_tokens"):
        if col not in df.columns:
            raise InputError(f"missing column {col}.", file=source, field=col,
                             fix="load traces with syslab.core.workloads (arrival_s, prompt_tokens, output_tokens).")
    if (df.prompt_tokens < 1).any() or (df.output_tokens < 1).any():
        bad = df[(df.prompt_tokens < 1) | (df.output_tokens < 1)].index[0]
        raise InputError(f"row {bad} has a prompt or output of fewer than 1 token.", file=source,
                         field="prompt_tokens/output_tokens", fix="drop empty requests.")
    if df.arrival_s.isna().any():
        raise InputError("some requests have no arrival time.", file=source, field="arrival_s",
                         fix="attach arrivals (e.g. workloads.poisson_arrivals) to length-only traces.")
    order = np.argsort(df.arrival_s.to_numpy(), kind="stable")
    if (np.diff(df.arrival_s.to_numpy()) < 0).any():
        warnings.warn(f"{source}: arrivals were not sorted; sorted them.", stacklevel=2)
    a, p, o = (df[c].to_numpy()[order] for c in ("arrival_s", "prompt_tokens", "output_tokens"))
    c = df["cached_tokens"].to_numpy()[order] if "cached_tokens" in df.columns else np.zeros(len(order), np.int64)
    if (c < 0).any():
        raise InputError("a request has negative cached_tokens.", file=source, field="cached_tokens",
                         fix="cached prefix tokens are 0 or more.")
    m = df["model"].astype(str).to_numpy()[order] if "model" in df.columns else np.full(len(order), "")
    return [Request(i, float(a[i]), int(p[i]), int(o[i]), int(c[i]), model=str(m[i])) for i in range(len(order))]


# ---------------------------------------------------------------------------------------------------------
# One instance
# ---------------------------------------------------------------------------------------------------------

def _blocks(tokens: int | np.ndarray, block: int) -> int | np.ndarray:
    return -(-tokens // block)


def _work_of(r: Request) -> int:
    """A request's outstanding tokens: still to prefill (recomputation after a preemption included) plus still
    to generate."""
    return r.needed - r.kv + r.output - r.generated


@dataclass(eq=False)
class Instance:
    """One model replica. ``advance_to(t)`` runs the iterations that *start* before ``t``.

    KV blocks: a decoding request holds ceil(kv / block); a prefilling one reserves ceil((needed + 1) / block)
    so that once admitted its prefill and first decode always fit. The invariant (held <= capacity) is
    asserted after every iteration.
    """

    cost: IterationCost
    kv_tokens: int
    block_tokens: int = 16
    max_batch_tokens: int = 8192
    max_seqs: int = 256
    ready_s: float = 0.0           # warm from this time (after loading weights)
    start_s: float = 0.0           # GPUs held from this time (cold start included)
    id: int = 0
    fast_forward: bool = True
    model: str = ""                # the model it serves (set by ``simulate`` in a several-model cluster)
    splits: list[LayerSplit] = field(default_factory=list)   # partial instances helping this one (``help_by``)
    clock: float = field(init=False)
    stop_s: float = field(init=False, default=math.nan)
    draining: bool = field(init=False, default=False)
    waiting: deque[Request] = field(init=False, default_factory=deque)
    running: list[Request] = field(init=False, default_factory=list)
    done: list[Request] = field(init=False, default_factory=list)
    iterations: int = field(init=False, default=0)
    busy_s: float = field(init=False, default=0.0)
    peak_blocks: int = field(init=False, default=0)
    # outstanding tokens of work (``load``), kept up to date at every change instead of rescanning the queues
    _work: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.clock = self.ready_s
        self.total_blocks = self.kv_tokens // self.block_tokens
        if self.total_blocks < 1:
            raise InputError("no room for even one KV block.", field="kv_tokens", fix="give the instance more memory.")

    # -- bookkeeping ---------------------------------------------------------------------------------------
    def submit(self, r: Request) -> None:
        if _blocks(r.prompt + r.output, self.block_tokens) > self.total_blocks:
            raise InputError(f"request {r.id} needs {r.prompt + r.output} tokens of KV cache; an instance holds "
                             f"{self.total_blocks * self.block_tokens}.", field="prompt_tokens",
                             fix="use more GPUs per instance or drop over-long prompts.")
        r.instance = self.id
        if r.generated == 0 and r.kv == 0:              # a prefix-cache hit; the last prompt token is always run
            r.kv = min(max(r.cached, 0), r.prompt - 1)
        self.waiting.append(r)
        self._work += _work_of(r)

    @property
    def load(self) -> int:
        """Outstanding work in tokens (a router's signal): every queued or running request's tokens still to
        prefill (a preempted request's recomputation included) plus its tokens still to generate. O(1): kept
        up to date as requests arrive, run and are preempted (``recount_load`` is the O(queue) reference)."""
        return self._work

    def help_by(self, split: LayerSplit) -> None:
        """A partial instance joins this one from ``split.start_s`` until it is ready (BlitzScale's ZigZag)."""
        self.splits.append(split)

    def _time_factor(self) -> float:
        """The fastest pairing active now (one partial instance helps at a time; more would not stack)."""
        if not self.splits:
            return 1.0
        self.splits = [s for s in self.splits if s.ready_s > self.clock]
        return min((s.factor(self.clock) for s in self.splits), default=1.0)

    def _split_horizon(self) -> float:
        """Where a fast-forwarded span must end for the split factor, read at its start, to stay within
        1 / ``SPLIT_PIECES`` of a split's duration of the truth."""
        live = [s for s in self.splits if s.ready_s > self.clock]
        return min((self.clock + (s.ready_s - s.start_s) / SPLIT_PIECES for s in live), default=math.inf)

    def recount_load(self) -> int:
        return sum(_work_of(r) for r in self.running) + sum(_work_of(r) for r in self.waiting)

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    def _blocks_of(self, r: Request) -> int:
        return _blocks(r.needed + 1, self.block_tokens) if r.prefilling else _blocks(r.kv, self.block_tokens)

    def held_blocks(self) -> int:
        return sum(_blocks(r.kv, self.block_tokens) for r in self.running)

    # -- one iteration (the reference path) ----------------------------------------------------------------
    def _step(self) -> None:
        b = self.block_tokens
        committed = sum(map(self._blocks_of, self.running))
        decoding = [r for r in self.running if not r.prefilling]
        growth = sum(1 for r in decoding if r.kv % b == 0)               # decodes that open a new block
        while decoding and committed + growth > self.total_blocks:       # recompute preemption, newest first
            victim = self.running.pop()
            committed -= self._blocks_of(victim)
            if decoding[-1] is victim:                                    # decoding keeps running's order
                decoding.pop()
                growth -= victim.kv % b == 0
            self._work += victim.kv                                       # its cached tokens must be recomputed
            victim.kv = 0
            victim.preemptions += 1
            self.waiting.appendleft(victim)
        budget = self.max_batch_tokens - len(decoding)
        chunks: list[tuple[Request, int]] = []
        for r in self.running:                                            # partial prefills first
            if r.prefilling and budget > 0:
                n = min(budget, r.needed - r.kv)
                chunks.append((r, n))
                budget -= n
        while self.waiting and budget > 0 and len(self.running) < self.max_seqs:
            r = self.waiting[0]
            reserve = _blocks(r.needed + 1, b)
            if committed + growth + reserve > self.total_blocks:
                break
            self.waiting.popleft()
            self.running.append(r)
            committed += reserve
            n = min(budget, r.needed - r.kv)
            chunks.append((r, n))
            budget -= n
        if not decoding and not chunks:
            return
        new_tokens = len(decoding) + sum(n for _, n in chunks)
        pairs = sum(n * r.kv + n * (n + 1) / 2 for r, n in chunks)       # prefill attention (compute)
        kv_read = sum(r.kv for r in decoding)                             # decode attention (memory)
        dt = self.cost.time_s(new_tokens, pairs, kv_read, prefill_tokens=sum(n for _, n in chunks))
        if self.splits:
            dt *= self._time_factor()
        self.clock += dt
        self.busy_s += dt
        self.iterations += 1
        for r in decoding:
            r.kv += 1
            r.generated += 1
        self._work -= new_tokens                      # each decode and each prefilled token is one token of work
        for r, n in chunks:
            r.kv += n
            if not r.prefilling and r.generated == 0:
                r.generated = 1                       # the prefill's last position emits the first token
                r.first_token_s = self.clock
                self._work -= 1
        self._retire()

    def _retire(self) -> None:
        still = []
        for r in self.running:
            if r.generated >= r.output and not r.prefilling:
                r.finish_s = self.clock
                r.kv = 0
                self.done.append(r)
            else:
                still.append(r)
        self.running = still
        held = self.held_blocks()
        self.peak_blocks = max(self.peak_blocks, held)
        assert held <= self.total_blocks, "KV cache over capacity"

    # -- fast path: decode-only spans in closed form -------------------------------------------------------
    def _can_fast_forward(self) -> bool:
        if not self.fast_forward or not self.running or any(r.prefilling for r in self.running):
            return False
        if self.waiting and len(self.running) < self.max_seqs:
            b = self.block_tokens
            committed = sum(-(-r.kv // b) for r in self.running)      # all decoding: each holds ceil(kv / b)
            growth = sum(1 for r in self.running if r.kv % b == 0)
            if committed + growth + _blocks(self.waiting[0].needed + 1, self.block_tokens) <= self.total_blocks:
                return False                                  # an admission would change the batch
        return True

    def _fast_forward(self, t_end: float) -> bool:
        """Decode-only iterations until the first completion, KV exhaustion or ``t_end``; False if none fit."""
        kv = np.array([r.kv for r in self.running], dtype=np.int64)
        remaining = np.array([r.output - r.generated for r in self.running], dtype=np.int64)
        k_max = int(min(remaining.min(), MAX_SPAN))
        lo, hi = 0, k_max                                     # largest k whose KV still fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if int(_blocks(kv + mid, self.block_tokens).sum()) <= self.total_blocks:
                lo = mid
            else:
                hi = mid - 1
        if lo == 0:
            return False
        dts = self.cost.decode_span_s(len(kv), float(kv.sum()), lo)
        if self.splits:
            dts = dts * self._time_factor()
        starts = self.clock + np.concatenate([[0.0], np.cumsum(dts[:-1])])
        k = max(int(np.searchsorted(starts, t_end, side="left")), 1)
        span = float(dts[:k].sum())
        self.clock += span
        self.busy_s += span
        self.iterations += k
        for r in self.running:
            r.kv += k
            r.generated += k
        self._work -= k * len(self.running)
        self._retire()
        return True

    def advance_to(self, t_end: float) -> None:
        """Run the iterations that start before ``t_end`` (an iteration is never cut short)."""
        self.clock = max(self.clock, self.ready_s)
        while self.clock < t_end and not self.idle:
            if self._can_fast_forward() and self._fast_forward(min(t_end, self._split_horizon())):
                continue
            before = (self.iterations, len(self.waiting), len(self.running))
            self._step()
            if (self.iterations, len(self.waiting), len(self.running)) == before:
                raise RuntimeError("simulator made no progress")   # a bug, never a user error
        if self.idle and math.isfinite(t_end):
            self.clock = max(self.clock, t_end)


# ---------------------------------------------------------------------------------------------------------
# A cluster: routing, autoscaling, metrics
# ---------------------------------------------------------------------------------------------------------

Router = Callable[[Request, Sequence[Instance]], Instance]


def least_loaded(r: Request, instances: Sequence[Instance]) -> Instance:
    """Route to the warm (or soonest ready) instance with the least outstanding tokens."""
    return min(instances, key=lambda i: (i.ready_s > r.arrival_s, i.load, i.id))


def round_robin() -> Router:
    counter = iter(range(1 << 62))
    return lambda r, instances: instances[next(counter) % len(instances)]


@dataclass
class ClusterView:
    """What an autoscaler sees at a tick, and how it acts: ``launch(ready_in_s)`` / ``drain(instance)``.
    In a several-model cluster ``of(model)`` is the same view narrowed to one model's instances, requests and
    demand, whose ``launch`` starts an instance of that model."""

    now: float
    instances: list[Instance]
    waiting: int
    running: int
    launch: Callable[..., Instance]                # launch(ready_in_s[, model=...])
    drain: Callable[[Instance], None]
    arrived_prompt_tokens: int = 0     # prompt tokens of every request that has arrived so far (a demand signal)
    models: tuple[str, ...] = ("",)
    _arrived_by_model: dict[str, int] = field(default_factory=dict, repr=False)

    def of(self, model: str) -> ClusterView:
        if model not in self.models:
            raise InputError(f"the cluster serves no model {model!r}.", field="model",
                             fix=f"use one of {', '.join(map(repr, self.models))}.")
        mine = [i for i in self.instances if i.model == model]
        launch = functools.partial(self.launch, model=model) if len(self.models) > 1 else self.launch
        return ClusterView(self.now, mine, sum(len(i.waiting) for i in mine), sum(len(i.running) for i in mine),
                           launch, self.drain, self._arrived_by_model.get(model, 0), (model,))


Autoscaler = Callable[[ClusterView], None]


@dataclass
class ServingResult:
    requests: pd.DataFrame          # one row per request: arrival, ttft, tpot, e2e, instance, preemptions
    gpu_seconds: float
    makespan_s: float
    instances: int
    iterations: int

    def ttft_quantile(self, q: float) -> float:
        return float(self.requests.ttft_s.quantile(q))

    def slo_attainment(self, ttft_s: float = math.inf, tpot_s: float = math.inf) -> float:
        ok = (self.requests.ttft_s <= ttft_s) & (self.requests.tpot_s.fillna(0.0) <= tpot_s)
        return float(ok.mean())

    @property
    def throughput_tok_s(self) -> float:
        return float(self.requests.output_tokens.sum() / self.makespan_s) if self.makespan_s > 0 else math.nan


MakeInstance = Callable[[int, float, float], Instance]


def simulate(requests: Iterable[Request], make_instance: MakeInstance | Mapping[str, MakeInstance],
             initial_instances: int | Mapping[str, int] = 1, router: Router = least_loaded,
             autoscaler: Autoscaler | None = None, tick_s: float = 1.0,
             progress: Callable[[float], None] | None = None) -> ServingResult:
    """Replay ``requests`` (sorted by arrival) on a cluster.

    ``make_instance(id, start_s, ready_s)`` builds an instance that holds its GPUs from ``start_s`` and
    serves from ``ready_s``. Each arrival advances every instance to the arrival time, then is routed;
    every ``tick_s`` the autoscaler (if any) may launch or drain instances. Several models: ``make_instance``
    and ``initial_instances`` map each model to its builder and starting count (every model needs at least one
    instance at the start), and each request's ``model`` names one of them.
    """
    reqs = list(requests)
    if any(b.arrival_s < a.arrival_s for a, b in zip(reqs, reqs[1:], strict=False)):
        raise InputError("requests are not sorted by arrival.", field="arrival_s",
                         fix="sort them (requests_from_frame does).")
    builders = dict(make_instance) if isinstance(make_instance, Mapping) else {"": make_instance}
    counts = dict(initial_instances) if isinstance(initial_instances, Mapping) else {"": initial_instances}
    if set(counts) != set(builders):
        raise InputError(f"starting counts for {sorted(counts)} but builders for {sorted(builders)}.",
                         field="initial_instances", fix="give every model both a builder and a starting count.")
    unknown = {r.model for r in reqs} - set(builders)
    if unknown:
        raise InputError(f"requests for model(s) {sorted(unknown)[:3]} that no instance serves.", field="model",
                         fix=f"use one of {sorted(builders)}, or add a builder for each model.")
    instances: list[Instance] = []

    def launch(now: float, ready_in_s: float, model: str = "") -> Instance:
        inst = builders[model](len(instances), now, now + ready_in_s)
        inst.model = model
        instances.append(inst)
        return inst

    for m, n in counts.items():
        if n < 1:
            raise InputError(f"model {m!r} starts with {n} instances.", field="initial_instances",
                             fix="start every model with 1 or more.")
        for _ in range(n):
            launch(0.0, 0.0, m)

    def drain(inst: Instance) -> None:
        inst.draining = True

    def serving(model: str) -> list[Instance]:
        mine = [i for i in instances if i.model == model]
        live = [i for i in mine if not i.draining and math.isnan(i.stop_s)]
        return live or [min(mine, key=lambda i: i.load)]

    events: list[tuple[float, int, int]] = [(r.arrival_s, 1, i) for i, r in enumerate(reqs)]
    if autoscaler is not None and reqs:
        events += [(k * tick_s, 0, -1) for k in range(int(reqs[-1].arrival_s / tick_s) + 2)]
    heapq.heapify(events)
    arrived = 0
    by_model = dict.fromkeys(builders, 0)
    models = tuple(builders)
    while events:
        t, kind, idx = heapq.heappop(events)
        for inst in instances:
            inst.advance_to(t)
            if inst.draining and inst.idle and math.isnan(inst.stop_s):
                inst.stop_s = max(inst.clock, t)
        if kind == 1:
            r = reqs[idx]
            router(r, serving(r.model)).submit(r)
            arrived += r.prompt
            by_model[r.model] += r.prompt
        else:
            autoscaler(ClusterView(now=t, instances=[i for i in instances if math.isnan(i.stop_s)],
                                   waiting=sum(len(i.waiting) for i in instances),
                                   running=sum(len(i.running) for i in instances),
                                   launch=lambda ready_in, model=models[0], t=t: launch(t, ready_in, model),
                                   drain=drain, arrived_prompt_tokens=arrived, models=models,
                                   _arrived_by_model=dict(by_model)))
        if progress is not None:
            progress(t)
    for inst in instances:
        inst.advance_to(math.inf)
    end = max([i.clock for i in instances] + [r.finish_s for r in reqs if math.isfinite(r.finish_s)] + [0.0])
    for inst in instances:
        if math.isnan(inst.stop_s):
            inst.stop_s = end if not inst.draining else inst.clock
    return _result(reqs, instances, end)


def _result(reqs: list[Request], instances: list[Instance], end: float) -> ServingResult:
    df = request_frame(reqs)
    gpu_s = sum((i.stop_s - i.start_s) * i.cost.tp for i in instances)
    start = float(df.arrival_s.min()) if len(df) else 0.0
    return ServingResult(df, gpu_s, end - start, len(instances), sum(i.iterations for i in instances))


def request_frame(reqs: list[Request]) -> pd.DataFrame:
    """One row per finished request: arrival, lengths, TTFT, TPOT, end-to-end latency, instance, preemptions,
    cached tokens, model (a ``ServingResult``'s frame; other simulators on the engine's requests use it too)."""
    unfinished = [r.id for r in reqs if not math.isfinite(r.finish_s)]
    assert not unfinished, f"requests never finished: {unfinished[:5]}"
    arrival = np.array([r.arrival_s for r in reqs])
    first = np.array([r.first_token_s for r in reqs])
    finish = np.array([r.finish_s for r in reqs])
    out = np.array([r.output for r in reqs])
    df = pd.DataFrame({
        "id": [r.id for r in reqs], "arrival_s": arrival, "prompt_tokens": [r.prompt for r in reqs],
        "output_tokens": out, "ttft_s": first - arrival,
        "tpot_s": np.where(out > 1, (finish - first) / np.maximum(out - 1, 1), np.nan), "e2e_s": finish - arrival,
        "instance": [r.instance for r in reqs], "preemptions": [r.preemptions for r in reqs],
        "cached_tokens": [r.cached for r in reqs], "model": [r.model for r in reqs],
    })
    return df
