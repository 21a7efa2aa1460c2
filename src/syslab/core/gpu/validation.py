"""The validation table: the model's prediction beside every published measurement it was *not* fitted on.

Each ``validate`` row of ``compute.csv`` and ``comm.csv`` is re-predicted from its own parameters (shape, GPU,
ranks, bytes) and compared in the row's own unit (TFLOP/s, TB/s, GB/s or microseconds). The relative error is
``predicted / measured - 1``: positive when the model is optimistic. The report shows the table and
``benchmarks/bench_gpu_model.py`` prints it; where the model is off it says so here, not elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from syslab.core.gpu import comm, compute
from syslab.core.gpu.calibration import comm_rows, compute_rows
from syslab.core.hardware import GPUS


@dataclass(frozen=True)
class Check:
    id: str
    gpu: str
    what: str
    measured: float
    predicted: float
    unit: str
    source: str

    @property
    def rel_error(self) -> float:
        return self.predicted / self.measured - 1.0 if self.measured else math.nan

    def row(self) -> list:
        return [self.id, self.gpu, self.what, self.measured, self.predicted, self.unit, self.rel_error, self.source]


COLUMNS = ["id", "GPU", "measurement", "measured", "model", "unit", "model / measured - 1", "source"]


def _i(x: float) -> int:
    return int(x) if not math.isnan(x) else 0


def _predict_compute(r: dict) -> tuple[str, float] | None:
    g, op, dtype = r["gpu"], r["op"], r["dtype"] or "bf16"
    if g not in GPUS:
        return None
    if op in ("gemm", "gemv", "gemm_smfrac"):
        frac = 1.0 if math.isnan(r["sm_fraction"]) else r["sm_fraction"]
        m, n, k = r["m"], r["n"], r["k"]
        t = compute.gemm_s(m, n, k, g, dtype, sm_fraction=frac)
        what = f"{op} {dtype} m={_i(m)} n={_i(n)} k={_i(k)}" + (f" on {frac:.0%} of SMs" if frac < 1 else "")
        if op == "gemm_smfrac" and r["unit"] == "rel_throughput":
            return what + " (relative to all SMs)", compute.gemm_s(m, n, k, g, dtype) / t
        return what, _convert(r["unit"], t, flops=2 * m * n * k, n_bytes=(m * k + k * n + m * n) * 2)
    if op == "attn_fwd_bwd":
        causal = r["causal"] == 1
        batch, hd = r["batch"], _i(r["head_dim"])
        heads = _i(r["heads"]) if not math.isnan(r["heads"]) else 2048 // hd
        t = sum(compute.attention_s(batch, r["seq"], heads, hd, g, causal=causal, backward=b, dtype=dtype)
                for b in (False, True))
        flops = sum(compute.attention_flops(batch, r["seq"], heads, hd, causal, b) for b in (False, True))
        return f"attn fwd+bwd {dtype} seq={_i(r['seq'])} d={hd}{' causal' if causal else ''}", _convert(
            r["unit"], t, flops=flops)
    if op in ("attn_fwd", "attn_bwd"):
        causal = r["causal"] == 1
        batch = r["batch"] if not math.isnan(r["batch"]) else max(1.0, 16384 / r["seq"])
        heads = _i(r["heads"]) if not math.isnan(r["heads"]) else 2048 // _i(r["head_dim"])
        t = compute.attention_s(batch, r["seq"], heads, _i(r["head_dim"]), g, causal=causal,
                                backward=op == "attn_bwd", dtype=dtype)
        flops = compute.attention_flops(batch, r["seq"], heads, _i(r["head_dim"]), causal, op == "attn_bwd")
        what = f"{op} {dtype} seq={_i(r['seq'])} d={_i(r['head_dim'])}{' causal' if causal else ''}"
        return what, _convert(r["unit"], t, flops=flops)
    if op == "membw":
        n_bytes = 1e9
        return "memory-bound copy", _convert(r["unit"], compute.memory_s(n_bytes, g), n_bytes=n_bytes)
    if op == "decode_attn":
        batch = 1.0 if math.isnan(r["batch"]) else r["batch"]
        seq = 65536.0 if math.isnan(r["seq"]) else r["seq"]
        heads, hd = (_i(r["heads"]) or 8), (_i(r["head_dim"]) or 128)
        tokens = batch * seq
        t = compute.decode_attention_s(tokens, heads, hd, g)
        n_bytes = 2 * tokens * heads * hd * 2
        what = f"decode attention batch {int(batch)} x {int(seq)} tokens, {heads} KV heads"
        if r["unit"] == "frac_of_peak_bw":
            return what, n_bytes / t / GPUS[g].hbm_bytes_per_s
        return what, _convert(r["unit"], t, n_bytes=n_bytes)
    return None


def _convert(unit: str, seconds: float, flops: float = math.nan, n_bytes: float = math.nan) -> float:
    if unit == "TFLOPS":
        return flops / seconds / 1e12
    if unit == "TB/s":
        return n_bytes / seconds / 1e12
    if unit == "GB/s":
        return n_bytes / seconds / 1e9
    if unit == "us":
        return seconds * 1e6
    if unit == "ms":
        return seconds * 1e3
    raise ValueError(f"unit {unit!r}")


def _predict_comm(r: dict) -> tuple[str, float] | None:
    op = r["op"]
    g = r["gpu"] if r["gpu"] in GPUS else "A100-SXM-80GB"
    if op in comm.OPS:
        ranks, nodes = _i(r["ranks"]), max(1, _i(r["nodes"]))
        fabric = comm.default_fabric(g)
        if r["fabric"] in ("nvlink3", "nvlink4", "pcie3", "pcie4", "pcie5"):
            fabric = comm.Fabric(r["fabric"], max(ranks // nodes, 1), fabric.nic, fabric.nics_per_node)
        elif nodes > 1 and r["fabric"]:
            fabric = comm.Fabric(fabric.intra, ranks // nodes, r["fabric"],
                                 _i(r.get("nics", math.nan)) or fabric.nics_per_node)
        n_bytes = 8e9 if math.isnan(r["bytes"]) else r["bytes"]     # a size-less statement is about large messages
        t = comm.collective_s(op, n_bytes, ranks, g, nodes=nodes, fabric=fabric)
        alg, bus = comm.algbw_busbw(op, n_bytes, ranks, t)
        what = f"{op} {ranks} ranks/{nodes} node(s) {r['fabric']} {n_bytes:.3g} B {r['metric']}"
        value = {"busbw": bus, "algbw": alg, "time": t * 1e6 if r["unit"] == "us" else t * 1e3}.get(r["metric"])
        return (what, value) if value is not None else None
    if op.startswith(("h2d", "d2h")):
        direction, kind = op.split("_")
        pcie = r["fabric"]
        if r["metric"] == "bw":
            t = comm.copy_s(r["bytes"] if not math.isnan(r["bytes"]) else 1e9, g, direction, kind == "pinned",
                            host_link=pcie)
            b = r["bytes"] if not math.isnan(r["bytes"]) else 1e9
            return f"{op} over {pcie}", b / t / 1e9
    if op == "storage_read":
        return f"storage read {r['fabric']}", comm.storage_gbps(r["fabric"])
    return None


def checks() -> list[Check]:
    """Every validate row that the model can predict, with its prediction."""
    out = []
    for rows, predict in ((compute_rows(), _predict_compute), (comm_rows(), _predict_comm)):
        for r in rows:
            if r["role"] != "validate":
                continue
            try:
                got = predict(r)
            except (LookupError, ValueError):
                got = None
            if got is None:
                continue
            what, value = got
            out.append(Check(r["id"], r["gpu"], what, r["value"], float(value), r["unit"] or r.get("metric", ""),
                             f"{r['source']} {r['locator']}".strip()))
    return out


def summary(items: list[Check] | None = None) -> dict[str, float]:
    """Count, median and 90th percentile of |relative error|, and the share within 25%."""
    items = checks() if items is None else items
    err = np.abs([c.rel_error for c in items if not math.isnan(c.rel_error)])
    if len(err) == 0:
        return {"checks": 0}
    return {"checks": int(len(err)), "median_abs_rel_error": float(np.median(err)),
            "p90_abs_rel_error": float(np.percentile(err, 90)), "within_25pct": float(np.mean(err <= 0.25))}
