"""The measurements the cost model is calibrated on, and the fits that turn them into its few parameters.

Two tables ship with the package (numbers only, each row with its public source and where in it):

- ``compute.csv``: GEMM, attention, decode-attention and memory-bandwidth measurements of real GPUs;
- ``comm.csv``: nccl-tests collectives, host<->device copies (bandwidthTest / nvbandwidth) and storage reads.

Each row has a ``role``: ``fit`` rows determine a parameter (the fit is below, one small closed form per
parameter); ``validate`` rows are never used to fit and form the validation table (``validation.py``), the
model's prediction beside each of them with the relative error. No row comes from a paper's headline result:
only measurements of kernels, links and copies (a paper's measurement of its *inputs* counts).

Parameters and their fits:

- ``gemm_eff[dtype]``: the largest achieved / peak among the GPU's ``fit`` GEMM rows of more than 2048^3
  multiply-adds (the "maximum achievable matmul FLOPS" of a part: what a large GEMM reaches at best); a dtype
  without rows uses bf16's fraction (fp16 and bf16 share the tensor-core datapath).
- ``hbm_eff``: the largest achieved / peak HBM bandwidth among ``fit`` ``membw`` rows (a streaming copy).
- ``decode_eff``: the same for ``decode_attn`` rows (the share of peak bandwidth a decode-attention kernel reaches
  on a long context, FlashInfer's measurements); ``hbm_eff`` when there is none. ``decode_floor_s``: the smallest
  fit decode row's measured time minus its bytes at that bandwidth (split-KV merge, launch: what a short KV read
  cannot amortise).
- ``launch_s``: the fixed cost of a kernel, from the GPU's smallest ``fit`` GEMM (at most 2048^3): its
  measured time minus what the tile model predicts without a floor (the residual is launch, prologue and
  epilogue that a small GEMM cannot amortise).
- ``attention(head_dim, pass)``: ``(eff_max, s0)`` by least squares on ``1 / eff = 1 / eff_max + (s0 / eff_max)
  / L`` over ``fit`` non-causal rows (L = keys per query block), per GPU, pass and head dim. A GPU with a single
  attention point (A100: one published FlashAttention-2 measurement) keeps that point exactly and takes ``s0``
  and the backward / forward ratio of ``eff_max`` from the nearest fully measured GPU (H100, FlashAttention-3):
  the shape of the curve is borrowed, its level is measured.

A GPU with no rows of its own for a parameter borrows the parameter from the nearest measured part
(``BORROW``), and ``Calibration.borrowed`` says so (``syslab gpu list`` prints it).
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from syslab.core.hardware import GPU, GPUS, gpu

# Where a part without its own measurement of a parameter takes it from: the same chip or architecture first.
BORROW: dict[str, tuple[str, ...]] = {
    "A100-SXM-80GB": ("A100-SXM-40GB", "A100-PCIe-80GB", "A100-PCIe-40GB"),
    "A100-SXM-40GB": ("A100-SXM-80GB", "A100-PCIe-40GB", "A100-PCIe-80GB"),
    "A100-PCIe-80GB": ("A100-PCIe-40GB", "A100-SXM-80GB", "A100-SXM-40GB"),
    "A100-PCIe-40GB": ("A100-PCIe-80GB", "A100-SXM-40GB", "A100-SXM-80GB"),
    "H100-SXM": ("H200", "H800", "H100-PCIe"),
    "H100-PCIe": ("H100-SXM", "H200", "H800"),
    "H200": ("H100-SXM", "H800", "H100-PCIe"),
    "H800": ("H100-SXM", "H200", "H100-PCIe"),
    "A10": ("L40S", "A100-PCIe-40GB", "A100-SXM-80GB"),
    "L40S": ("A10", "A100-PCIe-80GB", "A100-SXM-80GB"),
    "V100": ("A100-SXM-40GB", "A100-SXM-80GB"),
}

NUMERIC = ("m", "n", "k", "batch", "seq", "heads", "head_dim", "causal", "sm_fraction", "value", "ranks", "nodes",
           "bytes", "nics")


def _load(name: str) -> list[dict]:
    text = resources.files("syslab.core.gpu").joinpath(name).read_text(encoding="utf-8")
    rows = []
    for raw in csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#")):
        row = {k: (v or "").strip() for k, v in raw.items()}
        for key in NUMERIC:
            if key in row:
                row[key] = float(row[key]) if row[key] else math.nan
        rows.append(row)
    return rows


@functools.cache
def compute_rows() -> tuple[dict, ...]:
    return tuple(_load("compute.csv"))


@functools.cache
def comm_rows() -> tuple[dict, ...]:
    return tuple(_load("comm.csv"))


def _tflops(row: dict) -> float:
    """A GEMM or attention row's value in TFLOP/s (rows may give a time in us instead)."""
    if row["unit"] == "TFLOPS":
        return row["value"]
    raise ValueError(f"row {row['id']}: unit {row['unit']} is not a throughput")


def _tbps(row: dict) -> float:
    return row["value"] * (1.0 if row["unit"] == "TB/s" else 1e-3 if row["unit"] == "GB/s" else math.nan)


@dataclass(frozen=True)
class Calibration:
    """The fitted parameters of one GPU (see the module docstring for each fit)."""

    gpu: str
    gemm_effs: dict[str, float]
    hbm_eff: float
    decode_eff: float
    launch_s: float
    decode_floor_s: float
    attention_fits: dict[tuple[int, bool], tuple[float, float]]
    borrowed: dict[str, str] = field(default_factory=dict)

    def gemm_eff(self, dtype: str = "bf16") -> float:
        if dtype in self.gemm_effs:
            return self.gemm_effs[dtype]
        # fp16 and bf16 run on the same tensor-core datapath; others fall back to bf16's fraction
        return self.gemm_effs.get("fp16" if dtype == "bf16" else "bf16", next(iter(self.gemm_effs.values())))

    def attention(self, head_dim: int, backward: bool, dtype: str = "bf16") -> tuple[float, float]:
        """(eff_max, s0) for the nearest fitted head dim of this pass."""
        dims = [d for (d, b) in self.attention_fits if b == backward]
        if not dims:
            raise KeyError(f"no attention calibration for {self.gpu} ({'backward' if backward else 'forward'})")
        nearest = min(dims, key=lambda d: (abs(math.log2(d) - math.log2(max(head_dim, 1))), -d))
        return self.attention_fits[(nearest, backward)]


def _rows_for(name: str, pick) -> tuple[list[dict], str]:
    """Rows of ``name`` that ``pick`` selects, else of the first part in ``BORROW`` that has some."""
    for source in (name, *BORROW.get(name, ())):
        rows = [r for r in compute_rows() if r["gpu"] == source and r["role"] == "fit" and pick(r)]
        if rows:
            return rows, source
    return [], ""


def fit_attention(rows: list[dict], peak_flops: float) -> tuple[float, float]:
    """Least squares of 1/eff on 1/L: intercept 1/eff_max, slope s0/eff_max (see the module docstring)."""
    eff = np.array([_tflops(r) * 1e12 / peak_flops for r in rows])
    keys = np.array([r["seq"] / (2.0 if r["causal"] == 1 else 1.0) for r in rows])
    if len(rows) == 1:
        return float(eff[0]), 0.0
    slope, intercept = np.polyfit(1.0 / keys, 1.0 / eff, 1)
    eff_max = 1.0 / intercept
    return float(min(eff_max, 1.0)), float(max(slope * eff_max, 0.0))


@functools.cache
def _calibration(name: str) -> Calibration:
    g = GPUS[name]
    borrowed: dict[str, str] = {}

    def note(param: str, source: str) -> None:
        if source and source != name:
            borrowed[param] = source
        if not source:
            raise LookupError(f"no measurement to calibrate {param} of {name} on (core/gpu/compute.csv)")

    gemm_effs: dict[str, float] = {}
    for dtype in ("bf16", "fp16", "fp8", "tf32"):
        rows, source = _rows_for(name, lambda r, d=dtype: r["op"] == "gemm" and r["dtype"] == d
                                 and r["m"] * r["n"] * r["k"] > 2048 ** 3)
        if rows:
            src = GPUS[source]
            gemm_effs[dtype] = max(_tflops(r) / src.peak_tflops[dtype] for r in rows)
            note(f"gemm_eff[{dtype}]", source)
    if not gemm_effs:
        note("gemm_eff", "")
    rows, source = _rows_for(name, lambda r: r["op"] == "membw")
    note("hbm_eff", source)
    hbm_eff = max(_tbps(r) * 1e12 / GPUS[source].hbm_bytes_per_s for r in rows)
    rows, source = _rows_for(name, lambda r: r["op"] == "decode_attn")
    if rows:
        note("decode_eff", source)
        frac = lambda r: (r["value"] if r["unit"] == "frac_of_peak_bw"  # noqa: E731
                          else _tbps(r) * 1e12 / GPUS[source].hbm_bytes_per_s)
        decode_eff = max(frac(r) for r in rows)
        sized = [r for r in rows if not math.isnan(r["batch"]) and not math.isnan(r["seq"])]
        smallest = min(sized, key=lambda r: r["batch"] * r["seq"] * r["heads"] * r["head_dim"], default=None)
        if smallest is not None:
            n_bytes = 4.0 * smallest["batch"] * smallest["seq"] * smallest["heads"] * smallest["head_dim"]
            peak = GPUS[source].hbm_bytes_per_s
            decode_floor_s = max(n_bytes / (frac(smallest) * peak) - n_bytes / (decode_eff * peak), 0.0)
        else:
            decode_floor_s = 0.0
    else:
        decode_eff, decode_floor_s = hbm_eff, 0.0
    rows, source = _rows_for(name, lambda r: r["op"] == "gemm" and r["m"] * r["n"] * r["k"] <= 2048 ** 3)
    note("launch_s", source)
    if source != name:
        launch_s = _calibration(source).launch_s        # borrowed with the source's own efficiencies
    else:
        from syslab.core.gpu.compute import gemm_core_s  # the tile model without its floor (called lazily)

        r = min(rows, key=lambda r: r["m"] * r["n"] * r["k"])
        dtype = r["dtype"] or "bf16"
        measured = 2.0 * r["m"] * r["n"] * r["k"] / (_tflops(r) * 1e12)
        model = gemm_core_s(r["m"], r["n"], r["k"], g, dtype, gemm_effs.get(dtype, max(gemm_effs.values())), hbm_eff)
        launch_s = max(measured - float(model), 0.0)
    fits = _attention_fits(name, borrowed)
    return Calibration(name, gemm_effs, hbm_eff, decode_eff, launch_s, decode_floor_s, fits, borrowed)


def _attention_fits(name: str, borrowed: dict[str, str]) -> dict[tuple[int, bool], tuple[float, float]]:
    fits: dict[tuple[int, bool], tuple[float, float]] = {}
    for backward in (False, True):
        op = "attn_bwd" if backward else "attn_fwd"
        rows, source = _rows_for(name, lambda r, o=op: r["op"] == o and r["causal"] != 1)
        if len(rows) < 2:
            continue
        if source != name:
            borrowed[op] = source
        peak = GPUS[source].peak_flops(rows[0]["dtype"] or "bf16")
        for head_dim in sorted({int(r["head_dim"]) for r in rows}):
            fits[(head_dim, backward)] = fit_attention([r for r in rows if r["head_dim"] == head_dim], peak)
    if fits:
        return fits
    # a single measured point: keep its level, borrow the curve's shape from the nearest fully measured GPU
    rows, source = _rows_for(name, lambda r: r["op"] == "attn_fwd" and r["causal"] != 1)
    shape_gpu = next((s for s in ("H100-SXM", "H200") if _attention_fits(s, {})), None) if rows else None
    if not rows or shape_gpu is None:
        raise LookupError(f"no attention measurement to calibrate {name} on (core/gpu/compute.csv)")
    r = rows[0]
    donor = _attention_fits(shape_gpu, {})
    d = int(r["head_dim"])
    fwd_max, s0 = min(((v, k) for k, v in donor.items() if not k[1]), key=lambda kv: abs(kv[1][0] - d))[0]
    bwd_max, bwd_s0 = donor.get((d, True), next(v for k, v in donor.items() if k[1]))
    keys = r["seq"] / (2.0 if r["causal"] == 1 else 1.0)
    eff = _tflops(r) * 1e12 / GPUS[source].peak_flops(r["dtype"] or "bf16")
    level = eff * (keys + s0) / keys
    borrowed["attention shape (s0, backward ratio)"] = shape_gpu
    if source != name:
        borrowed["attention level"] = source
    return {(d, False): (min(level, 1.0), s0), (d, True): (min(level * bwd_max / fwd_max, 1.0), bwd_s0)}


def calibration(g: GPU | str) -> Calibration:
    """The fitted parameters of ``g`` (cached: the fits run once per GPU per process)."""
    return _calibration(gpu(g).name)
