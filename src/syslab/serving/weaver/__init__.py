"""Weaver: Efficient Multi-LLM Serving with Attention Offloading (ATC 2025).

Gao, Wang, Zeng, Lu, Shu (Tsinghua); artifact gswxp2/weaver. Written from the paper's description and our
notes; no artifact code is reused.

**What it does.** In multi-model serving a hot model saturates its GPU while cold models idle on theirs.
Weaver offloads the decode attention of some of the hot model's requests, with their KV cache, to a cold
model's GPU: per layer and step the hot GPU sends q, k, v of those requests over P2P and gets the attention
output back. The hot model gains KV capacity and attention bandwidth. Offloaded kernels must not wait behind
the cold model's queued work: Weaver polls for offloaded work at the cold model's kernel boundaries
(GPU-driven control flow) and splits cold kernels longer than a bound tau so that no wait exceeds it.

**What runs for real here (HYBRID).** The split-attention numerics: a "hot" process runs a tiny decoder
layer and ships q, k, v of offloaded requests to a "cold" process that keeps their KV cache and returns
attention outputs; the result matches unsplit execution (``split_attention_error``). The cold GPU's kernel
timeline (from real request lengths), the poll-point and splitting policy, and the wait each offloaded
attention sees are simulated event by event.

**What is modelled**: two A100-80GB SXM GPUs serving Llama-3-8B each (``core.models``, ``core.hardware``).
Kernel and link times come from the shared GPU cost model ``core.gpu`` (calibrated on cited measurements; see
its docstrings): a decode layer's dense part is ``ForwardModel``'s GEMMs per projection at m = batch plus its
norms/activations (the LM head spread over the layers), decode attention ``G.decode_attention_s``, prefill GEMMs
``G.gemm_s`` per projection at m = prompt, and the P2P exchange of q, k, v and the attention output is
``G.collective_s("sendrecv", ..., 2)`` over the DGX A100's NVLink 3 (measured-calibrated bandwidth and hop
latency). Assumptions of the mechanism, set before running: a poll costs 3 us per cold kernel and each extra
split kernel 5 us (our assumptions); tau = 1 ms (our notes: 1-2 ms). A cold decode iteration is one CUDA graph:
naive offloading waits for the whole graph (and any queued prefill kernels), Weaver only for the current kernel.
The hot model's TPOT SLO is 100 ms (our notes' example).

**Negative control** (``run.control``): Weaver's slot runs dedicated instances (no offloading; the cold GPU
neither polls nor splits its kernels).
"""

from __future__ import annotations

import functools
import math
import multiprocessing as mp
from dataclasses import dataclass

import numpy as np

from syslab.core import gpu as G
from syslab.core.claims import CHECK, Claim, Expect, Fidelity, Result, System, Table
from syslab.core.gpu.transformer import gemm_shapes
from syslab.core.hardware import GPU, gpu
from syslab.core.models import Transformer, model
from syslab.core.run import Run, pyplot
from syslab.core.stats import cdf
from syslab.core.workloads import load_azure_llm

POLL_S, SPLIT_S, TAU_S = 3e-6, 5e-6, 1e-3   # poll per cold kernel, per extra split kernel, split bound (assumptions)
SLO_TPOT_S = 0.100


@dataclass(frozen=True)
class Node:
    shape: Transformer
    device: GPU

    @functools.cached_property
    def forward(self) -> G.ForwardModel:
        return G.ForwardModel(self.shape, self.device, 1)

    def dense_layer_s(self, batch: int) -> float:
        """Everything of one decode layer but attention: the GEMMs per projection at m = batch (weights read
        once), norms and activations, and the LM head's share (core.gpu.ForwardModel)."""
        return (self.forward.linear_s(batch) + self.forward.fixed_s(batch)) / self.shape.layers

    def attention_layer_s(self, context_tokens: float | np.ndarray) -> float | np.ndarray:
        """One layer's decode attention reading ``context_tokens`` cached tokens (summed over requests)."""
        return G.decode_attention_s(context_tokens, self.shape.kv_heads, self.shape.head_dim, self.device)

    def prefill_kernels_s(self, prompt: int) -> list[float]:
        """One layer's prefill GEMM kernels (QKV, O, up/gate, down) at m = prompt tokens."""
        return [float(G.gemm_s(prompt, n, k, self.device)) for n, k in gemm_shapes(self.shape, 1)]

    def kv_capacity_tokens(self, fraction: float = 0.9) -> float:
        free = self.device.hbm_gb * 1e9 * fraction - self.shape.weight_bytes()
        return free / self.shape.kv_bytes_per_token()

    def p2p_layer_s(self, offloaded: int) -> float:
        """Send q, k, v of the offloaded requests and receive their attention output, one layer (NCCL
        point-to-point on the node's NVLink, core.gpu)."""
        d_q = self.shape.hidden * 2
        d_kv = self.shape.kv_heads * self.shape.head_dim * 2
        return (G.collective_s("sendrecv", offloaded * (d_q + 2 * d_kv), 2, self.device)
                + G.collective_s("sendrecv", offloaded * d_q, 2, self.device))


A100_LLAMA3_8B = Node(model("llama3-8b"), gpu("A100-80GB"))


# ---------------------------------------------------------------------------------------------------------
# The cold GPU's kernel timeline, and the wait an offloaded attention sees
# ---------------------------------------------------------------------------------------------------------

@dataclass
class ColdTimeline:
    """Busy periods of the cold GPU as kernels: ``starts``/``ends`` of every kernel, and for each kernel the
    end of the submission it belongs to (a prefill burst or a decode graph): what a FIFO waiter waits for."""

    starts: np.ndarray
    ends: np.ndarray
    batch_end: np.ndarray
    horizon_s: float

    def wait(self, t: np.ndarray, weaver: bool) -> np.ndarray:
        """Wait of work arriving at times ``t``: to the current kernel's end (Weaver) or to the end of
        everything already submitted (naive FIFO); 0 when the GPU is idle."""
        i = np.searchsorted(self.starts, t, side="right") - 1
        inside = (i >= 0) & (t < self.ends[np.maximum(i, 0)])
        until = self.ends if weaver else self.batch_end
        return np.where(inside, until[np.maximum(i, 0)] - t, 0.0)

    @property
    def utilisation(self) -> float:
        return float((self.ends - self.starts).sum() / self.horizon_s)


def cold_timeline(node: Node, prompts: np.ndarray, outputs: np.ndarray, rate_rps: float, horizon_s: float,
                  rng: np.random.Generator, split_tau_s: float | None) -> tuple[ColdTimeline, float]:
    """The cold model serving Poisson arrivals one request at a time (a light load): its prefill as per-layer
    GEMM kernels (QKV, O, up/gate, down), then decode iterations, each a CUDA graph of per-layer kernels.
    With ``split_tau_s`` kernels longer than tau are split into equal pieces. Returns the timeline and the
    overhead added per cold decode iteration by polling and splitting."""
    s = node.shape
    starts, ends, batch_end = [], [], []
    t, overhead_iter = 0.0, math.nan
    arrivals = np.cumsum(rng.exponential(1.0 / rate_rps, int(rate_rps * horizon_s * 2) + 10))
    dense_1 = node.dense_layer_s(1)
    for k, arrival in enumerate(arrivals):
        if arrival >= horizon_s:
            break
        t = max(t, arrival)
        p, o = int(prompts[k % len(prompts)]), int(outputs[k % len(outputs)])
        prefill = node.prefill_kernels_s(p) * s.layers
        steps = (dense_1 + np.asarray(node.attention_layer_s(p + np.arange(o - 1, dtype=np.float64)))) / 4
        submissions = [prefill] + [[float(d)] * (4 * s.layers) for d in np.atleast_1d(steps)[: o - 1]]
        for j, kernels in enumerate(submissions):
            pieces = []
            for d in kernels:
                n = max(1, math.ceil(d / split_tau_s)) if split_tau_s else 1
                pieces += [d / n + (SPLIT_S if n > 1 else 0.0) + (POLL_S if split_tau_s else 0.0)] * n
            for d in pieces:
                starts.append(t)
                t += d
                ends.append(t)
            batch_end += [t] * len(pieces)
            if j == 1 and math.isnan(overhead_iter):      # one decode graph: what polling and splitting add
                overhead_iter = sum(pieces) - sum(kernels)
    tl = ColdTimeline(np.array(starts), np.array(ends), np.array(batch_end), horizon_s)
    return tl, 0.0 if math.isnan(overhead_iter) else overhead_iter


# ---------------------------------------------------------------------------------------------------------
# The hot model: dedicated vs weaving
# ---------------------------------------------------------------------------------------------------------

def tpot_samples(node: Node, batch: int, context: float, offload: float, cold: ColdTimeline | None, weaver: bool,
                 rng: np.random.Generator, samples: int = 400) -> np.ndarray:
    """Decode-step times of a hot batch whose share ``offload`` of requests has its attention on the cold GPU.
    Per layer: dense work on the hot GPU, then the slower of local attention and (wait on the cold GPU +
    remote attention + P2P)."""
    s = node.shape
    n_off = int(round(batch * offload))
    local = node.attention_layer_s((batch - n_off) * context)
    dense = node.dense_layer_s(batch)
    if n_off == 0 or cold is None:
        return np.full(samples, s.layers * (dense + local))
    remote = node.attention_layer_s(n_off * context) + node.p2p_layer_s(n_off) + POLL_S
    arrivals = rng.uniform(0, cold.horizon_s, (samples, s.layers))
    waits = cold.wait(arrivals.ravel(), weaver).reshape(samples, s.layers)
    return (dense + np.maximum(local, waits + remote)).sum(axis=1)


def best_operating_point(node: Node, context: float, cold: ColdTimeline | None, weaver: bool, kv_tokens: float,
                         rng: np.random.Generator) -> dict[str, float]:
    """Largest hot throughput (tokens/s) whose P99 TPOT meets the SLO, over batch sizes and offload shares,
    within the KV capacity (hot GPU alone, or plus the cold GPU's spare memory when weaving)."""
    best = {"throughput": 0.0, "batch": 0, "offload": 0.0, "p99_tpot_s": math.nan, "mean_tpot_s": math.nan}
    max_batch = int(kv_tokens // context)
    offloads = [0.0] if cold is None else [x / 10 for x in range(0, 8)]
    for batch in np.unique(np.linspace(8, max(8, max_batch), 40).astype(int)):
        for f in offloads:
            local_kv = (batch - round(batch * f)) * context
            if local_kv > node.kv_capacity_tokens() or batch * context > kv_tokens:
                continue
            tp = tpot_samples(node, int(batch), context, f, cold, weaver, rng)
            p99 = float(np.quantile(tp, 0.99))
            thr = batch / float(tp.mean())
            if p99 <= SLO_TPOT_S and thr > best["throughput"]:
                best = {"throughput": thr, "batch": int(batch), "offload": f, "p99_tpot_s": p99,
                        "mean_tpot_s": float(tp.mean())}
    return best


# ---------------------------------------------------------------------------------------------------------
# Real: attention split across two processes equals attention in one
# ---------------------------------------------------------------------------------------------------------

def _cold_worker(conn) -> None:
    """Holds the KV cache of offloaded requests; per step receives q, k, v and returns attention outputs."""
    cache: dict[int, tuple[list, list]] = {}
    while True:
        msg = conn.recv()
        if msg is None:
            break
        out = {}
        for rid, (q, k, v) in msg.items():
            keys, values = cache.setdefault(rid, ([], []))
            keys.append(k)
            values.append(v)
            out[rid] = _attend(q, keys, values)
        conn.send(out)


def _attend(q: np.ndarray, keys: list[np.ndarray], values: list[np.ndarray]) -> np.ndarray:
    scores = np.stack(keys) @ q / np.sqrt(len(q))
    w = np.exp(scores - scores.max())
    return (w / w.sum()) @ np.stack(values)


def split_attention_error(steps: int = 12, requests: int = 6, dim: int = 32, seed: int = 0) -> float:
    """Decode ``steps`` tokens for ``requests`` sequences through one attention layer twice: all in this
    process, and with the odd-numbered requests' attention (and KV cache) in a separate process. Returns the
    max |difference| of the outputs over all steps."""
    rng = np.random.default_rng(seed)
    wq, wk, wv = (rng.normal(0, 0.3, (dim, dim)) for _ in range(3))
    x0 = rng.normal(size=(requests, dim))
    ctx = mp.get_context("fork")   # POSIX: the worker needs nothing but numpy
    here, there = ctx.Pipe()
    proc = ctx.Process(target=_cold_worker, args=(there,), daemon=True)
    proc.start()
    try:
        caches = {run: {r: ([], []) for r in range(requests)} for run in ("ref", "split")}
        xs = {"ref": x0.copy(), "split": x0.copy()}
        worst = 0.0
        for _ in range(steps):
            outs = {}
            for run, x in xs.items():
                q, k, v = x @ wq, x @ wk, x @ wv
                res = np.empty_like(q)
                offloaded = {r: (q[r], k[r], v[r]) for r in range(requests) if run == "split" and r % 2}
                if offloaded:
                    here.send(offloaded)                 # the cold process appends k, v and attends
                for r in range(requests):
                    if r not in offloaded:
                        keys, values = caches[run][r]
                        keys.append(k[r])
                        values.append(v[r])
                        res[r] = _attend(q[r], keys, values)
                if offloaded:
                    for r, o in here.recv().items():
                        res[r] = o
                outs[run] = res
            worst = max(worst, float(np.abs(outs["ref"] - outs["split"]).max()))
            xs = {run: np.tanh(outs[run] + xs[run]) for run in xs}
        return worst
    finally:
        here.send(None)
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            proc.join()


# ---------------------------------------------------------------------------------------------------------
# Reproduction
# ---------------------------------------------------------------------------------------------------------

CLAIMS = (
    Claim("hot-throughput", "hot-model throughput within the TPOT SLO, Weaver vs dedicated instances",
          paper=1.77, unit="x", expect=Expect(at_least=1.3), source="abstract (up to +77%)"),
    Claim("naive-p99", "naive weaving's P99 TPOT at Weaver's operating point, relative to Weaver's", paper=None,
          unit="x", expect=Expect(at_least=2.0), source="§3 (head-of-line blocking)"),
    Claim("cold-overhead-ms", "added TPOT of the cold model (polling, split kernels, offloaded attention)",
          paper="3-5", unit=" ms", expect=Expect(at_most=5.0), source="abstract",
          kind=CHECK),  # a ceiling on the mechanism's cost: dedicated instances pay nothing and always meet it
    Claim("split-exact", "max |split - unsplit| attention output across two processes (REAL)", paper=0.0,
          unit="", expect=Expect(at_most=1e-5), source="attention offloading is exact", kind=CHECK),
)


def reproduce(run: Run) -> Result:
    result = Result(system="weaver")
    node = A100_LLAMA3_8B
    rng = run.rng()
    if run.data.has("azure_llm_2023"):
        df = load_azure_llm(run.data.path("azure_llm_2023", "azure_conv_2023.csv"))
        prompts, outputs = df.prompt_tokens.to_numpy(), df.output_tokens.to_numpy()
        source = "azure_llm_2023 lengths"
    else:
        prompts = np.maximum(1, rng.lognormal(np.log(1020), 0.8, 5000)).astype(int)
        outputs = np.maximum(2, rng.lognormal(np.log(129), 0.9, 5000)).astype(int)
        source = "SYNTHETIC lengths (azure_llm_2023 missing)"
    # A decode step's context, averaged over output tokens: prompt + half the output.
    context = float((outputs * (prompts + outputs / 2)).sum() / outputs.sum())
    horizon = 120.0 if run.quick else 600.0
    order = rng.permutation(len(prompts))
    cold_p, cold_o = prompts[order], np.maximum(outputs[order], 2)
    run.progress("cold GPU timelines")
    naive_tl, _ = cold_timeline(node, cold_p, cold_o, 0.5, horizon, run.rng(1), None)
    # the negative control: the cold GPU neither polls nor splits, and the hot model runs dedicated (below)
    weaver_tl, split_overhead = cold_timeline(node, cold_p, cold_o, 0.5, horizon, run.rng(1),
                                              None if run.control else TAU_S)
    kv_hot = node.kv_capacity_tokens()
    kv_both = kv_hot + node.kv_capacity_tokens() * (1 - naive_tl.utilisation) * 0.5   # spare half of cold KV
    run.progress("searching operating points")
    dedicated = best_operating_point(node, context, None, True, kv_hot, run.rng(2))
    weaver = (best_operating_point(node, context, None, True, kv_hot, run.rng(3)) if run.control else
              best_operating_point(node, context, weaver_tl, True, kv_both, run.rng(3)))
    naive_at_weaver = tpot_samples(node, weaver["batch"], context, weaver["offload"], naive_tl, False, run.rng(4))
    naive = best_operating_point(node, context, naive_tl, False, kv_both, run.rng(5))
    # The cold model's extra time per decode step: polling/split overhead of its own graph, plus the offloaded
    # attention it runs for the hot model (its share of the cold GPU's time while decoding).
    n_off = round(weaver["batch"] * weaver["offload"])
    remote_busy = node.shape.layers * node.attention_layer_s(n_off * context) / weaver["mean_tpot_s"] if n_off else 0
    cold_step = node.shape.layers * (node.dense_layer_s(1) + node.attention_layer_s(context))
    cold_added_ms = (split_overhead + cold_step * remote_busy / max(1 - remote_busy, 1e-9)) * 1e3
    err = split_attention_error(seed=run.seed)
    result.findings += [
        CLAIMS[0].measure(weaver["throughput"] / dedicated["throughput"],
                          f"{weaver['throughput']:.0f} vs {dedicated['throughput']:.0f} tok/s; batch "
                          f"{weaver['batch']} ({weaver['offload']:.0%} offloaded) vs {dedicated['batch']}"),
        CLAIMS[1].measure(float(np.quantile(naive_at_weaver, 0.99)) / weaver["p99_tpot_s"],
                          f"naive P99 TPOT {np.quantile(naive_at_weaver, 0.99) * 1e3:.0f} ms vs "
                          f"{weaver['p99_tpot_s'] * 1e3:.0f} ms (SLO {SLO_TPOT_S * 1e3:.0f} ms)"),
        CLAIMS[2].measure(cold_added_ms, f"cold step {cold_step * 1e3:.1f} ms; split/poll overhead "
                                         f"{split_overhead * 1e3:.2f} ms; hot attention {remote_busy:.0%} of the "
                                         "cold GPU"),
        CLAIMS[3].measure(err, "12 decode steps, 6 requests, odd ones offloaded to another process"),
    ]
    result.tables.append(Table(f"Best hot operating point within P99 TPOT <= {SLO_TPOT_S * 1e3:.0f} ms (Llama-3-8B on "
                               f"A100s; {source}; mean decode context {context:.0f} tokens; cold model at 0.5 rps)",
                               ["system", "tokens/s", "batch", "offloaded", "P99 TPOT (ms)", "mean TPOT (ms)"],
                               [[name, round(r["throughput"]), r["batch"], f"{r['offload']:.0%}",
                                 round(r["p99_tpot_s"] * 1e3, 1), round(r["mean_tpot_s"] * 1e3, 1)]
                                for name, r in (("dedicated", dedicated), ("naive weaving", naive),
                                                ("Weaver", weaver))]))
    result.metrics.update(cold_utilisation=naive_tl.utilisation, kv_hot_tokens=kv_hot, kv_with_cold_tokens=kv_both)
    plt = pyplot()
    # Throughput vs load: as the hot batch grows, P99 TPOT rises; each system is plotted up to its KV limit.
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, tl, f, kv, weave in (("dedicated", None, 0.0, kv_hot, True),
                                   ("Weaver", weaver_tl, weaver["offload"], kv_both, True),
                                   ("naive weaving", naive_tl, weaver["offload"], kv_both, False)):
        batches = np.unique(np.linspace(8, kv // context, 25).astype(int))
        batches = [b for b in batches if (b - round(b * f)) * context <= kv_hot]
        p99, thr = [], []
        for b in batches:
            tp = tpot_samples(node, int(b), context, f, tl, weave, run.rng(7))
            p99.append(np.quantile(tp, 0.99) * 1e3)
            thr.append(b / tp.mean())
        ax.plot(thr, p99, marker=".", label=name)
    ax.axhline(SLO_TPOT_S * 1e3, color="k", ls=":", lw=0.8, label="SLO")
    ax.set_yscale("log")
    ax.set_xlabel("hot-model throughput (tokens/s)")
    ax.set_ylabel("P99 TPOT (ms)")
    ax.legend(fontsize=8)
    result.figures.append(run.save_figure(fig, "throughput_vs_load", "Hot-model P99 TPOT against throughput as the "
                                          "batch grows (to each system's KV limit); offload share as searched."))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, samples in (("Weaver", tpot_samples(node, weaver["batch"], context, weaver["offload"], weaver_tl, True,
                                                  run.rng(6))), ("naive weaving", naive_at_weaver)):
        ax.plot(*cdf(np.asarray(samples) * 1e3), label=name)
    ax.axvline(SLO_TPOT_S * 1e3, color="k", ls=":", lw=0.8, label="SLO")
    ax.set_xlabel("hot-model TPOT (ms) at Weaver's operating point")
    ax.set_ylabel("CDF")
    ax.legend()
    result.figures.append(run.save_figure(fig, "tpot", "Hot-model TPOT with offloaded attention: polling at kernel "
                                          "boundaries (Weaver) vs waiting behind the cold model's queue (naive)."))
    return result


SYSTEM = System(
    key="weaver",
    name="Weaver",
    paper="Weaver: Efficient Multi-LLM Serving with Attention Offloading",
    venue="ATC 2025",
    domain="serving",
    fidelity=Fidelity.HYBRID,
    real="split attention across two processes (numerics), the cold GPU's kernel timeline, polling and splitting "
         "policy, operating-point search",
    modelled="A100 kernel and NVLink P2P times from the shared core.gpu cost model; polling and split costs "
             "(stated assumptions)",
    claims=CLAIMS,
    reproduce=reproduce,
)
