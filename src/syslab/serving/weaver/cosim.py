"""Two serving-engine instances that share GPU time: Weaver's cold GPU and MuxServe's shared GPU pair.

Both the hot and the cold model are ``serving.engine.Instance`` objects (continuous batching, chunked prefill,
paged KV with recompute preemption); only the *time* of an iteration is coupled here, never the engine's logic.

- ``KernelCost``: an iteration as the list of its kernels (per layer: the four GEMMs, the elementwise passes,
  prefill and decode attention; then the LM head), each from ``core.gpu``; without splitting the kernels sum to
  ``engine.IterationCost.time_s`` (a test checks it). With ``tau_s`` (Weaver's operator splitting) every kernel
  longer than tau becomes ceil(d / tau) equal pieces, each extra piece costs ``SPLIT_S`` and every kernel boundary
  a poll (``POLL_S``; GPU-driven control flow checks its mailbox there).
- ``ColdGPU``: the cold GPU's timeline. It runs the cold instance's iterations (committed lazily, in time order)
  and the offloaded attention tasks the hot instance places on it. Weaver: a task starts at the next kernel
  boundary of the running cold iteration (at most one split kernel, <= tau, away) and stretches that iteration
  by its length; naive offloading: the cold iteration is one submitted CUDA graph, so a task waits, FIFO, for
  the whole of it, and the cold's next iteration waits for the task.
- ``WeavingCost``: the hot instance's iteration layer by layer: the dense kernels on the hot GPU; for the
  offloaded requests, q/k/v over P2P, the wait and the attention on the cold GPU, the output back; the layer ends
  when both the local and the remote attention are done.
- ``MuxCost``: MuxServe's spatial multiplexing: each model's iteration on its static share of the SMs of a 2-GPU
  tensor-parallel group (MPS), HBM bandwidth in proportion to the SMs while the other model is busy.
- ``cosimulate``: replays both models' arrivals on one clock; the instance whose clock is earlier runs its next
  iteration (the engine's own ``Instance._step``; fast-forward off, so every iteration is timed by these costs).
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from syslab.core import gpu as G
from syslab.core.gpu.compute import SMCurve
from syslab.core.gpu.transformer import ELEMENTWISE_PASSES, gemm_shapes
from syslab.core.models import DTYPE_BYTES
from syslab.serving.engine import Instance, IterationCost, Request

# Assumptions of the mechanism, set before running (our notes: shared/papers/weaver.md, "Suggested reproduction"):
POLL_S = 3e-6      # one mailbox poll at a cold kernel boundary ("a per-kernel polling constant of a few us")
SPLIT_S = 5e-6     # each extra kernel launched by splitting one (our assumption: about one launch)
TAU_S = 1e-3       # the split bound tau (our notes: 1-2 ms)
WAIT_EWMA = 0.1    # weight of the newest observed wait in the hot scheduler's running estimate (our assumption)


def split_pieces(kernels: np.ndarray, tau_s: float | None) -> np.ndarray:
    """Kernels as they run: unchanged without ``tau_s``; else each longer than tau cut into ceil(d / tau) equal
    pieces (each extra piece pays SPLIT_S) and every piece followed by a poll (POLL_S)."""
    kernels = np.asarray(kernels, dtype=np.float64)
    if not tau_s:
        return kernels
    n = np.maximum(1.0, np.ceil(kernels / tau_s))
    piece = (kernels + (n - 1) * SPLIT_S) / n + POLL_S
    return np.repeat(piece, n.astype(np.int64))


@dataclass(frozen=True)
class KernelCost(IterationCost):
    """``IterationCost`` (tp = 1) whose iteration is a list of kernels; ``tau_s`` splits and polls them."""

    tau_s: float | None = None

    @functools.cached_property
    def _gemms(self) -> dict[int, tuple[list[float], float]]:
        return {}

    def gemms(self, n: int) -> tuple[list[float], float]:
        """(one layer's four GEMMs, the LM head) at ``n`` tokens (memoised per token count)."""
        if n not in self._gemms:
            s = self.shape
            self._gemms[n] = ([float(G.gemm_s(n, nn, k, self.device, self.dtype)) for nn, k in gemm_shapes(s, self.tp)],
                              float(G.gemm_s(n, s.vocab // self.tp, s.hidden, self.device, self.dtype)))
        return self._gemms[n]

    def kernels(self, new_tokens: float, attn_pairs: float, kv_read_tokens: float,
                prefill_tokens: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(one layer's kernels, the LM head's) in seconds, before splitting; every layer is the same."""
        n = int(new_tokens)
        if n <= 0:
            return np.zeros(0), np.zeros(0)
        s, fm = self.shape, self.forward
        q = float(prefill_tokens) if prefill_tokens else float(n)
        mean_keys = max(attn_pairs / q, 1.0) if attn_pairs > 0 else 1.0
        gemms, head = self.gemms(n)
        layer = [*gemms, fm.fixed_s(n) / s.layers]
        if attn_pairs > 0:
            layer.append(float(fm.attention_s(attn_pairs, mean_keys)) / s.layers)
        if kv_read_tokens > 0:
            layer.append(float(fm.decode_attention_s(kv_read_tokens)) / s.layers)
        return np.array(layer, dtype=np.float64), np.array([head], dtype=np.float64)

    def pieces(self, new_tokens: float, attn_pairs: float, kv_read_tokens: float,
               prefill_tokens: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        layer, head = self.kernels(new_tokens, attn_pairs, kv_read_tokens, prefill_tokens)
        return split_pieces(layer, self.tau_s), split_pieces(head, self.tau_s)

    def time_s(self, new_tokens: float, attn_pairs: float, kv_read_tokens: float,
               prefill_tokens: float | None = None) -> float:
        """The iteration's time (the engine's own without splitting); its kernels are kept in ``last_pieces``."""
        layer, head = self.pieces(new_tokens, attn_pairs, kv_read_tokens, prefill_tokens)
        object.__setattr__(self, "last_pieces", (layer, head))
        if not self.tau_s:
            return super().time_s(new_tokens, attn_pairs, kv_read_tokens, prefill_tokens)
        return self.shape.layers * float(layer.sum()) + float(head.sum()) + self.overhead_s


@dataclass
class _ColdIteration:
    start: float
    end: float                       # actual end, offloaded tasks inside included
    layer: np.ndarray                # one layer's pieces (as run)
    head: np.ndarray
    layers: int
    touched: list[Request]           # cold requests whose first token or finish is this iteration's end
    shift: float = 0.0               # offloaded work inserted so far
    k: int = 0                       # pieces before the last insertion point
    _cum: np.ndarray | None = None

    @property
    def cum(self) -> np.ndarray:
        """End of every piece, relative to the start, before insertions."""
        if self._cum is None:
            self._cum = np.cumsum(np.concatenate([np.tile(self.layer, self.layers), self.head]))
        return self._cum


@dataclass(eq=False)
class ColdGPU:
    """The cold GPU: the cold ``Instance`` (its cost a ``KernelCost``) and the offloaded tasks placed on it.
    ``priority``: Weaver (a task runs at the next kernel boundary) or naive (FIFO behind the cold iteration)."""

    inst: Instance
    arrivals: Sequence[Request]
    priority: bool
    gpu_free: float = 0.0            # end of the last offloaded task
    wait_estimate_s: float = 0.0     # running estimate of a task's wait (what the hot scheduler can observe)
    waits: list[float] = field(default_factory=list)
    task_s: float = 0.0              # GPU time of offloaded tasks
    cur: _ColdIteration | None = None
    _pending: deque = field(init=False)

    def __post_init__(self) -> None:
        self._pending = deque(sorted(self.arrivals, key=lambda r: r.arrival_s))

    def _submit_until(self, t: float) -> None:
        inst = self.inst
        while self._pending and self._pending[0].arrival_s <= t:
            r = self._pending.popleft()
            if inst.idle:
                inst.clock = max(inst.clock, r.arrival_s)
            inst.submit(r)

    def advance(self, t: float) -> None:
        """Commit the cold iterations that start before ``t`` (an offloaded task holding the GPU delays them)."""
        inst = self.inst
        while True:
            self._submit_until(inst.clock)
            if inst.idle:
                if self._pending and self._pending[0].arrival_s < t:
                    inst.clock = max(inst.clock, self._pending[0].arrival_s)
                    continue
                return
            start = max(inst.clock, self.gpu_free)
            if start >= t:
                return
            inst.clock = start
            self._submit_until(start)
            self._step()

    def _step(self) -> None:
        inst = self.inst
        n_done = len(inst.done)
        fresh = [r for r in inst.running if r.generated == 0] + list(inst.waiting)
        before = inst.iterations
        start = inst.clock
        inst._step()
        if inst.iterations == before:
            raise RuntimeError("cold instance made no progress")   # a bug, never a user error
        cost: KernelCost = inst.cost  # type: ignore[assignment]
        layer, head = cost.last_pieces
        touched = inst.done[n_done:] + [r for r in fresh if r.first_token_s == inst.clock and r.finish_s != r.finish_s]
        self.cur = _ColdIteration(start, inst.clock, layer, head, cost.shape.layers, touched)

    def finish(self) -> None:
        self.advance(math.inf)

    def place(self, t: float, dur: float) -> float:
        """An offloaded attention task of ``dur`` seconds reaching the cold GPU at ``t``; returns its end."""
        self.advance(t)
        cur = self.cur
        if cur is not None and cur.start <= t < cur.end:
            if self.priority:
                if t < self.gpu_free:                 # behind a task that is running: right after it
                    start = self.gpu_free
                else:                                 # at the running kernel's end
                    rel = t - cur.start - cur.shift
                    k = max(int(np.searchsorted(cur.cum, rel, side="left")), cur.k)
                    start = cur.start + cur.shift + (float(cur.cum[k]) if k < len(cur.cum) else cur.end)
                    cur.k = k
                cur.shift += dur
                cur.end += dur
                self.inst.clock += dur                # the cold iteration is stretched by the task
                for r in cur.touched:
                    if r.finish_s == r.finish_s:
                        r.finish_s += dur
                    if r.first_token_s >= cur.start:
                        r.first_token_s += dur
            else:                                     # FIFO behind the submitted graph
                start = max(cur.end, self.gpu_free)
        else:
            start = max(t, self.gpu_free)
        end = start + dur
        self.gpu_free = end
        self.task_s += dur
        wait = start - t
        self.waits.append(wait)
        self.wait_estimate_s += WAIT_EWMA * (wait - self.wait_estimate_s)
        return end


class WeavingCost:
    """The hot instance's iteration with part of its decode attention on the cold GPU (Weaver, or naive).

    Which share is offloaded: every decoding token whose KV does not fit the hot GPU's own pool (``local_kv``)
    must be; beyond that the scheduler offloads the share that balances local attention against the remote path
    (P2P + the wait it has observed, a running estimate, + remote attention), up to the cold GPU's lent pool
    (``remote_kv``). Naive offloading gets the same scheduler (baseline parity). ``fixed_share`` replaces the
    balance by that share of the decode KV (naive weaving at Weaver's operating point: the same offloading, only
    the cold GPU's handling differs). A
    request's KV stays where it is in Weaver; the share is a per-iteration continuous approximation of that
    placement (hundreds of requests per batch). Not modelled: shipping an offloaded request's prefill KV to the
    cold GPU (it would overlap the prefill's GEMMs) and the hot GPU's cost of issuing the P2P copies."""

    def __init__(self, base: KernelCost, cold: ColdGPU, local_kv: int, remote_kv: int,
                 fixed_share: float | None = None) -> None:
        self.base, self.cold, self.local_kv, self.remote_kv = base, cold, local_kv, remote_kv
        self.fixed_share = fixed_share
        self.tp = base.tp
        self.inst: Instance | None = None
        s = base.shape
        self._shapes = gemm_shapes(s, 1)
        self._d_q = s.hidden * 2
        self._d_kv = s.kv_heads * s.head_dim * 2
        self._slope = (G.decode_attention_s(2e6, s.kv_heads, s.head_dim, base.device)
                       - G.decode_attention_s(1e6, s.kv_heads, s.head_dim, base.device)) / 1e6
        self.offloaded_tokens = 0.0          # summed over iterations (decode KV read remotely)
        self.decode_tokens = 0.0

    def attention_layer_s(self, tokens: float) -> float:
        s = self.base.shape
        return float(G.decode_attention_s(tokens, s.kv_heads, s.head_dim, self.base.device)) if tokens > 0 else 0.0

    def p2p_s(self, n_off: int) -> tuple[float, float]:
        """(send q, k, v of ``n_off`` requests, receive their attention output), one layer, NCCL send/recv."""
        dev = self.base.device
        return (G.collective_s("sendrecv", n_off * (self._d_q + 2 * self._d_kv), 2, dev),
                G.collective_s("sendrecv", n_off * self._d_q, 2, dev))

    def offload_share(self, kv_read: float, held: float, n_dec: int) -> float:
        """Decode KV tokens (of ``kv_read``) whose attention runs on the cold GPU this iteration."""
        if kv_read <= 0:
            return 0.0
        must = min(kv_read, max(0.0, held - self.local_kv))
        send, recv = self.p2p_s(max(1, n_dec // 2))
        if self.fixed_share is not None:
            balance = self.fixed_share * kv_read
        else:
            wait = self.cold.wait_estimate_s
            balance = (self._slope * kv_read - (send + recv + wait + POLL_S)) / (2 * self._slope)
        return float(min(kv_read, self.remote_kv, max(must, balance, 0.0)))

    def time_s(self, new_tokens: float, attn_pairs: float, kv_read_tokens: float,
               prefill_tokens: float | None = None) -> float:
        n = int(new_tokens)
        if n <= 0:
            return 0.0
        assert self.inst is not None
        b, s = self.base, self.base.shape
        fm = b.forward
        q = float(prefill_tokens) if prefill_tokens else 0.0
        mean_keys = max(attn_pairs / q, 1.0) if attn_pairs > 0 and q > 0 else 1.0
        gemms, head = self.base.gemms(n)
        qkv, rest = gemms[0], sum(gemms[1:]) + fm.fixed_s(n) / s.layers
        prefill_attn = float(fm.attention_s(attn_pairs, mean_keys)) / s.layers if attn_pairs > 0 else 0.0
        n_dec = n - int(q)
        held = float(sum(r.kv for r in self.inst.running))
        off = self.offload_share(kv_read_tokens, held, n_dec)
        n_off = int(round(n_dec * off / kv_read_tokens)) if off > 0 else 0
        if off > 0:
            n_off = max(n_off, 1)
        local = self.attention_layer_s(kv_read_tokens - off) + prefill_attn
        self.offloaded_tokens += off
        self.decode_tokens += kv_read_tokens
        t0 = t = self.inst.clock
        if off <= 0:
            return s.layers * (qkv + local + rest) + head
        remote = self.attention_layer_s(off) + POLL_S
        send, recv = self.p2p_s(n_off)
        for _ in range(s.layers):
            t += qkv
            done = self.cold.place(t + send, remote) + recv
            t = max(t + local, done) + rest
        return t - t0 + head

    def decode_span_s(self, batch: int, context: float, k: int) -> np.ndarray:
        raise RuntimeError("a weaving instance runs with fast_forward=False")


class MuxCost:
    """MuxServe's spatial multiplexing: one model's iteration on ``sm_fraction`` of the SMs of a ``tp``-GPU group
    shared with another model (MPS). Compute scales with the SMs (``core.gpu``); HBM bandwidth follows
    ``SMCurve`` when the other model is idle and is split in proportion to the SMs while it is busy (both stream
    from the same HBM). Collectives (tensor-parallel all-reduce) run at full share."""

    SHARED = SMCurve(memory_saturation=1.0)   # bandwidth share = SM share while both models run

    def __init__(self, base: IterationCost, sm_fraction: float) -> None:
        self.base, self.f = base, float(sm_fraction)
        self.tp = base.tp
        self.inst: Instance | None = None
        self.other: Instance | None = None
        self.shared_iterations = 0
        self._memo: dict[tuple[int, bool], tuple[float, float]] = {}

    def time_s(self, new_tokens: float, attn_pairs: float, kv_read_tokens: float,
               prefill_tokens: float | None = None) -> float:
        n = int(new_tokens)
        if n <= 0:
            return 0.0
        b, s = self.base, self.base.shape
        busy = self.other is not None and not self.other.idle
        self.shared_iterations += busy
        curve = self.SHARED if busy else G.DEFAULT_CURVE
        dev, dt, f, tp = b.device, b.dtype, self.f, b.tp
        q = float(prefill_tokens) if prefill_tokens else float(n)
        mean_keys = max(attn_pairs / q, 1.0) if attn_pairs > 0 else 1.0
        key = (n, busy)
        if key not in self._memo:
            gemms = sum(G.gemm_s(n, nn, k, dev, dt, f, curve) for nn, k in gemm_shapes(s, tp))
            eb = DTYPE_BYTES[dt]
            act = n * s.hidden * eb
            elementwise = G.memory_s(ELEMENTWISE_PASSES * act + 2 * n * s.ffn // tp * eb, dev, kernels=5,
                                     sm_fraction=f, curve=curve)
            allreduce = 2 * G.collective_s("allreduce", act, tp, dev) if tp > 1 else 0.0
            self._memo[key] = (gemms + float(elementwise) + allreduce,
                               float(G.gemm_s(n, s.vocab // tp, s.hidden, dev, dt, f, curve)))
        layer, head = self._memo[key]
        heads = max(s.heads // tp, 1)
        if attn_pairs > 0:
            layer += float(G.attention_pairs_s(attn_pairs, mean_keys, heads, s.head_dim, dev, dtype=dt,
                                               sm_fraction=f))
        if kv_read_tokens > 0:
            layer += float(G.decode_attention_s(kv_read_tokens, max(s.kv_heads // tp, 1), s.head_dim, dev, dt,
                                                sm_fraction=f, curve=curve))
        return s.layers * layer + head + b.overhead_s

    def decode_span_s(self, batch: int, context: float, k: int) -> np.ndarray:
        raise RuntimeError("a multiplexed instance runs with fast_forward=False")


def cosimulate(hot: Instance, hot_reqs: Sequence[Request], cold: Instance | ColdGPU,
               cold_reqs: Sequence[Request] = ()) -> None:
    """Replay both models' arrivals on one clock. ``cold`` is an ``Instance`` (it runs its iterations in clock
    order with the hot one: dedicated GPUs or MuxServe's shared ones) or a ``ColdGPU`` (it runs lazily, as the
    hot model's offloaded tasks reach it, and to the end afterwards)."""
    if isinstance(cold, ColdGPU):
        for r in sorted(hot_reqs, key=lambda r: r.arrival_s):
            hot.advance_to(r.arrival_s)
            hot.submit(r)
        hot.advance_to(math.inf)
        cold.finish()
        return
    pending = deque(sorted([(r.arrival_s, 0, i, r) for i, r in enumerate(hot_reqs)]
                           + [(r.arrival_s, 1, i, r) for i, r in enumerate(cold_reqs)], key=lambda x: x[:3]))
    pair = (hot, cold)
    while True:
        active = [inst for inst in pair if not inst.idle]
        t_next = min((inst.clock for inst in active), default=math.inf)
        if pending and pending[0][0] <= t_next:
            a, which, _, r = pending.popleft()
            inst = pair[which]
            if inst.idle:
                inst.clock = max(inst.clock, a)
            inst.submit(r)
            continue
        if not active:
            return
        inst = min(active, key=lambda i: i.clock)
        before = inst.iterations
        inst._step()
        if inst.iterations == before:
            raise RuntimeError("simulator made no progress")   # a bug, never a user error
