"""The serving experiment: a hot and a cold model on two GPUs under four policies, on the same requests.

- ``dedicated``: each model on its own GPU (``engine.simulate`` with one builder per model);
- ``naive``: the hot model offloads decode attention to the cold GPU, where it waits FIFO behind the cold
  model's submitted iterations (no polling, no splitting);
- ``weaver``: the same offloading with GPU-driven polling at the cold model's kernel boundaries and its kernels
  split to at most tau;
- ``muxserve``: both models tensor-parallel over both GPUs (TP = 2), one unified KV pool, each on a static share
  of the SMs (MPS); the share is MuxServe's knob and is searched.

Every policy gets the same engine knobs (token budget, sequence cap, block size) and the same split of KV memory
between the models: the cold model keeps ``cold_keep`` of its own GPU's KV pool and lends the rest to the hot
model (Weaver), or gets that many tokens of the unified pool (MuxServe); dedicated keeps its whole pool.
Our choices, set before running: ``MAX_SEQS`` (so that KV memory binds), ``MUX_SHARES`` (a grid for MuxServe's
knob), the bisection brackets (1-40 rps; Weaver's around dedicated's rate) and horizons (40 s quick, 150 s full).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from syslab.core.errors import InputError
from syslab.core.hardware import GPU, gpu
from syslab.core.models import Transformer, model
from syslab.serving import engine as E
from syslab.serving.weaver.cosim import TAU_S, ColdGPU, KernelCost, MuxCost, WeavingCost, cosimulate

POLICIES = ("dedicated", "naive", "weaver", "muxserve")
# Engine knobs, the same for every policy. The token budget per iteration: Sarathi-Serve (OSDI'24) runs chunked
# prefill with budgets of 512-2048 tokens for a TPOT target; 2048 is its largest (our choice, set before running).
MAX_BATCH_TOKENS = 2048
MAX_SEQS = 1024            # high enough that KV memory, not a sequence cap, bounds the hot batch
COLD_KEEP = 0.25           # share of its own KV pool the cold model keeps (our assumption; swept in the report)
SLO_TPOT_S = 0.100         # hot and cold P99 TPOT SLO (our notes' example, shared/papers/weaver.md)
SLO_TTFT_S = 2.0           # P99 TTFT a sustainable rate must meet (our assumption: a stable queue, chat-scale)
MUX_SHARES = (0.5, 0.7, 0.9)   # MuxServe's static SM share for the hot model, searched (its best is reported)


@dataclass(frozen=True)
class Setup:
    hot: Transformer
    cold: Transformer
    device: GPU
    max_batch_tokens: int = MAX_BATCH_TOKENS
    max_seqs: int = MAX_SEQS
    cold_keep: float = COLD_KEEP
    tau_s: float = TAU_S

    def cost(self, shape: Transformer, tp: int = 1, tau_s: float | None = None) -> KernelCost:
        return KernelCost(shape, self.device, tp, tau_s=tau_s)

    def pool(self, shape: Transformer) -> int:
        """A model's KV pool on one GPU of its own (engine: 90% of HBM after the weights)."""
        return self.cost(shape).kv_capacity_tokens()

    @property
    def cold_tokens(self) -> int:
        return int(self.pool(self.cold) * self.cold_keep)

    @property
    def cold_in_hot_tokens(self) -> int:
        """The cold model's kept KV memory, in tokens of the hot model."""
        return int(self.cold_tokens * self.cold.kv_bytes_per_token() / self.hot.kv_bytes_per_token())

    @property
    def lent_tokens(self) -> int:
        """The cold GPU's lent KV memory, in tokens of the hot model."""
        lent_bytes = (self.pool(self.cold) - self.cold_tokens) * self.cold.kv_bytes_per_token()
        return int(lent_bytes // self.hot.kv_bytes_per_token())


def setup(hot: str = "llama3-8b", cold: str = "llama3-8b", device: str = "A100-80GB", **kw) -> Setup:
    """A hot and a cold model (``core.models`` names), each on one GPU of ``device`` (``core.hardware``)."""
    shapes = {}
    for name, key in (("--hot-model", hot), ("--cold-model", cold)):
        try:
            shapes[name] = model(key)
        except KeyError as e:
            raise InputError(str(e).strip('"') + ".", field=name, fix="use one of the known models listed.") from None
    try:
        dev = gpu(device)
    except KeyError as e:
        raise InputError(str(e).strip('"') + ".", field="--gpu", fix="use one of the known GPUs listed.") from None
    for name, shape in shapes.items():
        free = dev.hbm_gb * 1e9 * 0.9 - shape.weight_bytes()
        if free < 4096 * shape.kv_bytes_per_token():
            raise InputError(f"{shape.name} leaves no room for 4096 tokens of KV cache on one {dev.name}.", field=name,
                             fix="pick a model that fits one GPU with room for KV (e.g. llama3-8b) or a larger GPU.")
    return Setup(shapes["--hot-model"], shapes["--cold-model"], dev, **kw)


def requests(df: pd.DataFrame, model_name: str) -> list[E.Request]:
    frame = df.assign(model=model_name)
    return E.requests_from_frame(frame, f"<{model_name} trace>")


def hot_window(trace: pd.DataFrame, rate_rps: float, horizon_s: float) -> pd.DataFrame:
    """The first rate x horizon requests of ``trace``, arrivals rescaled so that they arrive at ``rate_rps`` on
    average (the trace's own burstiness kept)."""
    n = max(2, int(round(rate_rps * horizon_s)))
    w = trace.iloc[:n].reset_index(drop=True).copy()
    a = w.arrival_s.to_numpy(dtype=np.float64)
    span = a[-1] - a[0]
    scale = (len(w) / rate_rps) / span if span > 0 else 1.0
    w["arrival_s"] = (a - a[0]) * scale
    return w


def cold_stream(lengths: pd.DataFrame, rate_rps: float, horizon_s: float, rng: np.random.Generator) -> pd.DataFrame:
    """Poisson arrivals at ``rate_rps`` over ``horizon_s`` with lengths drawn from ``lengths``."""
    n = rng.poisson(rate_rps * horizon_s) if rate_rps > 0 else 0
    arrivals = np.sort(rng.uniform(0, horizon_s, n))
    pick = rng.integers(0, len(lengths), n)
    return pd.DataFrame({"arrival_s": arrivals, "prompt_tokens": lengths.prompt_tokens.to_numpy()[pick],
                         "output_tokens": lengths.output_tokens.to_numpy()[pick]})


def _instance(s: Setup, cost, kv_tokens: int, iid: int, fast: bool, name: str) -> E.Instance:
    return E.Instance(cost, kv_tokens, max_batch_tokens=s.max_batch_tokens, max_seqs=s.max_seqs, id=iid,
                      fast_forward=fast, model=name)


def run(policy: str, s: Setup, hot_df: pd.DataFrame, cold_df: pd.DataFrame, sm_share: float = 0.7,
        fixed_share: float | None = None) -> dict:
    """Serve ``hot_df`` and ``cold_df`` under ``policy``; per-model request frames and what the policy did.
    ``sm_share``: MuxServe's hot SM share; ``fixed_share``: offload that share of the decode KV (weaving only)."""
    hot_r, cold_r = requests(hot_df, "hot"), requests(cold_df, "cold")
    extra: dict = {}
    if policy == "dedicated":
        def build(shape):
            return lambda i, start, ready: E.Instance(s.cost(shape), s.pool(shape), max_batch_tokens=s.max_batch_tokens,
                                                      max_seqs=s.max_seqs, id=i, start_s=start, ready_s=ready)
        res = E.simulate(hot_r + cold_r if not cold_r else sorted(hot_r + cold_r, key=lambda r: r.arrival_s),
                         {"hot": build(s.hot), "cold": build(s.cold)}, {"hot": 1, "cold": 1})
        df = res.requests
    elif policy in ("naive", "weaver"):
        weaver = policy == "weaver"
        cold = _instance(s, s.cost(s.cold, tau_s=s.tau_s if weaver else None), s.cold_tokens, 1, False, "cold")
        gpu1 = ColdGPU(cold, cold_r, priority=weaver)
        local = s.pool(s.hot)
        wc = WeavingCost(s.cost(s.hot), gpu1, local, s.lent_tokens, fixed_share)
        hot = _instance(s, wc, local + s.lent_tokens, 0, False, "hot")
        wc.inst = hot
        cosimulate(hot, hot_r, gpu1)
        df = E._result(hot_r + cold_r, [hot, cold], max(hot.clock, cold.clock)).requests
        waits = np.asarray(gpu1.waits)
        extra = {"offloaded_share": wc.offloaded_tokens / wc.decode_tokens if wc.decode_tokens else 0.0,
                 "mean_wait_s": float(waits.mean()) if len(waits) else 0.0,
                 "p99_wait_s": float(np.quantile(waits, 0.99)) if len(waits) else 0.0,
                 "cold_busy_s": cold.busy_s, "cold_end_s": cold.clock, "offloaded_task_s": gpu1.task_s}
    elif policy == "muxserve":
        total = _mux_pool(s)
        hot = _instance(s, MuxCost(s.cost(s.hot, 2), sm_share), total - s.cold_in_hot_tokens, 0, False, "hot")
        cold = _instance(s, MuxCost(s.cost(s.cold, 2), 1.0 - sm_share), s.cold_tokens, 1, False, "cold")
        hot.cost.inst, hot.cost.other = hot, cold
        cold.cost.inst, cold.cost.other = cold, hot
        cosimulate(hot, hot_r, cold, cold_r)
        df = E._result(hot_r + cold_r, [hot, cold], max(hot.clock, cold.clock)).requests
        extra = {"sm_share": sm_share}
    else:
        raise InputError(f"unknown policy {policy!r}.", field="policy", fix=f"use one of {', '.join(POLICIES)}.")
    return {"policy": policy, "hot": df[df.model == "hot"], "cold": df[df.model == "cold"], **extra}


def _mux_pool(s: Setup) -> int:
    """MuxServe's unified KV pool: both GPUs' memory (90%) after both models' weights, in tokens of the hot model
    (head-wise blocks let the two models share it)."""
    free = 2 * s.device.hbm_gb * 1e9 * 0.9 - s.hot.weight_bytes() - s.cold.weight_bytes()
    return int(free // s.hot.kv_bytes_per_token())


def metrics(df: pd.DataFrame) -> dict:
    if len(df) == 0:
        return {"requests": 0, "p99_ttft_s": 0.0, "mean_ttft_s": 0.0, "p99_tpot_s": 0.0, "mean_tpot_s": 0.0,
                "slo_attainment": 1.0, "throughput_tok_s": 0.0}
    tpot = df.tpot_s.fillna(0.0)
    ok = (df.ttft_s <= SLO_TTFT_S) & (tpot <= SLO_TPOT_S)
    span = float((df.arrival_s + df.e2e_s).max() - df.arrival_s.min())
    return {"requests": len(df), "p99_ttft_s": float(df.ttft_s.quantile(0.99)), "mean_ttft_s": float(df.ttft_s.mean()),
            "p99_tpot_s": float(tpot.quantile(0.99)), "mean_tpot_s": float(tpot.mean()),
            "slo_attainment": float(ok.mean()),
            "throughput_tok_s": float(df.output_tokens.sum() / span) if span > 0 else math.nan}


def meets(m: dict) -> bool:
    return m["p99_tpot_s"] <= SLO_TPOT_S and m["p99_ttft_s"] <= SLO_TTFT_S


def max_rate(policy: str, s: Setup, trace: pd.DataFrame, cold_df: pd.DataFrame, horizon_s: float,
             lo: float, hi: float, steps: int, shares: tuple[float, ...] = (0.7,), need_cold: bool = False) -> dict:
    """The largest hot request rate in [lo, hi] (geometric bisection, ``steps`` halvings) at which the hot model
    meets its P99 TPOT and TTFT SLO (with ``need_cold``, the cold model too), with that run's metrics. MuxServe's
    ``shares``: a rate is sustainable if any static SM share sustains it (the last one that did is tried first)."""
    order = list(shares)
    probes: list[dict] = []

    def ok(rate: float) -> tuple[bool, dict]:
        res: dict = {}
        for share in list(order):
            out = run(policy, s, hot_window(trace, rate, horizon_s), cold_df, share)
            h, c = metrics(out["hot"]), metrics(out["cold"])
            res = {"rate_rps": rate, "hot": h, "cold": c, "run": out, "sm_share": share}
            probes.append({"rate_rps": rate, "sm_share": share, "p99_tpot_s": h["p99_tpot_s"],
                           "p99_ttft_s": h["p99_ttft_s"], "ok": meets(h) and (not need_cold or meets(c))})
            if meets(h) and (not need_cold or meets(c)):
                order.remove(share)
                order.insert(0, share)
                return True, res
            if policy != "muxserve":
                break
        return False, res

    good, best = ok(lo)
    if not good:
        return {**best, "rate_rps": 0.0, "feasible": False, "probes": probes}
    for _ in range(steps):
        mid = math.sqrt(lo * hi)
        held, res = ok(mid)
        if held:
            lo, best = mid, res
        else:
            hi = mid
    return {**best, "feasible": True, "probes": probes}


def at_rate(policy: str, s: Setup, trace: pd.DataFrame, cold_df: pd.DataFrame, rate: float, horizon_s: float,
            sm_share: float = 0.7, fixed_share: float | None = None) -> dict:
    out = run(policy, s, hot_window(trace, rate, horizon_s), cold_df, sm_share, fixed_share)
    return {"rate_rps": rate, "hot": metrics(out["hot"]), "cold": metrics(out["cold"]), "run": out}


__all__ = ["POLICIES", "Setup", "at_rate", "cold_stream", "hot_window", "max_rate", "meets", "metrics", "run",
           "setup"]
