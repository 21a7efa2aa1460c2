"""``syslab gpu``: ask the shared GPU cost model for a kernel, collective or copy time, and see how far it is from
published measurements (``syslab gpu validate``)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="The shared GPU cost model: GEMM, attention, collective and copy times, with their "
                       "validation against published measurements.", no_args_is_help=True)

JSON = Annotated[bool, typer.Option("--json", help="print JSON")]
DTYPES = ("bf16", "fp16", "fp8", "tf32", "int8", "fp32", "fp64")


def _gpu(name: str):
    from syslab.core.hardware import GPUS, gpu

    try:
        return gpu(name)
    except KeyError:
        raise InputError(f"unknown GPU {name!r}.", field="--gpu",
                         fix=f"use one of: {', '.join(GPUS)} (case-insensitive; `syslab gpu list`).") from None


def _dtype(g, dtype: str) -> str:
    from syslab.core.inputs import one_of

    dtype = one_of(dtype.lower(), DTYPES, field="--dtype")
    if dtype not in g.peak_tflops:
        raise InputError(f"{g.name} has no {dtype} tensor-core peak.", field="--dtype",
                         fix=f"use one of: {', '.join(g.peak_tflops)}.")
    return dtype


def _size(value: float, name: str, max_value: float = 1e7) -> int:
    from syslab.core.inputs import option

    return int(option(value, name, min=1, max=max_value, integer=True))


def _fraction(value: float) -> float:
    from syslab.core.inputs import option

    return float(option(value, "--sm-fraction", min=1e-3, max=1.0, fix="use a fraction of the SMs in (0, 1]."))


def _emit(as_json: bool, result: dict, title: str) -> None:
    if as_json:
        print_json(result)
        return
    table = Table("quantity", "value", title=title)
    for key, value in result.items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    out.print(table)


@app.command("list")
def gpu_list(as_json: JSON = False) -> None:
    """Known GPUs with their datasheet peaks and the fitted efficiencies (and where a GPU borrows one)."""
    from syslab.core.gpu import calibration
    from syslab.core.hardware import GPU_ALIASES, GPUS

    rows = []
    for g in GPUS.values():
        cal = calibration(g)
        rows.append({"name": g.name, "bf16_tflops": g.peak_tflops.get("bf16", g.peak_tflops.get("fp16")),
                     "hbm_gbps": g.hbm_gbps, "hbm_gb": g.hbm_gb, "sms": g.sm_count, "host_link": g.host_link,
                     "gemm_eff": cal.gemm_eff("bf16" if "bf16" in g.peak_tflops else "fp16"),
                     "hbm_eff": cal.hbm_eff, "borrowed": cal.borrowed,
                     "aliases": sorted(a for a, v in GPU_ALIASES.items() if v == g.name)})
    if as_json:
        print_json(rows)
        return
    table = Table("GPU", "BF16 TFLOP/s", "HBM GB/s", "SMs", "GEMM eff", "HBM eff", "calibration borrowed from",
                  "aliases", title="GPUs (names are case-insensitive)")
    for r in rows:
        borrowed = ", ".join(sorted(set(r["borrowed"].values())))
        table.add_row(r["name"], f"{r['bf16_tflops']:g}", f"{r['hbm_gbps']:g}", str(r["sms"]),
                      f"{r['gemm_eff']:.2f}", f"{r['hbm_eff']:.2f}", borrowed, ", ".join(r["aliases"]))
    out.print(table)


@app.command("gemm")
def gpu_gemm(m: Annotated[int, typer.Option(help="rows of A and C")],
             n: Annotated[int, typer.Option(help="columns of B and C")],
             k: Annotated[int, typer.Option(help="the reduced dimension")],
             gpu: Annotated[str, typer.Option(help="GPU name (syslab gpu list)")] = "A100-SXM-80GB",
             dtype: Annotated[str, typer.Option(help="bf16, fp16, fp8, tf32 ...")] = "bf16",
             sm_fraction: Annotated[float, typer.Option(help="fraction of the SMs the kernel owns")] = 1.0,
             as_json: JSON = False) -> None:
    """Time and achieved TFLOP/s of one (m x k) @ (k x n) GEMM."""
    from syslab.core.gpu import gemm_s

    g = _gpu(gpu)
    dtype = _dtype(g, dtype)
    m, n, k = _size(m, "--m"), _size(n, "--n"), _size(k, "--k")
    t = gemm_s(m, n, k, g, dtype, sm_fraction=_fraction(sm_fraction))
    _emit(as_json, {"time_s": t, "tflops": 2.0 * m * n * k / t / 1e12}, f"GEMM {m}x{n}x{k} {dtype} on {g.name}")


@app.command("attention")
def gpu_attention(seq: Annotated[int, typer.Option(help="sequence length (queries = keys)")],
                  heads: Annotated[int, typer.Option(help="query heads")],
                  head_dim: Annotated[int, typer.Option(help="head dimension")] = 128,
                  batch: Annotated[int, typer.Option(help="sequences")] = 1,
                  gpu: Annotated[str, typer.Option(help="GPU name")] = "A100-SXM-80GB",
                  causal: Annotated[bool, typer.Option("--causal/--no-causal")] = False,
                  backward: Annotated[bool, typer.Option("--backward/--forward")] = False,
                  dtype: Annotated[str, typer.Option()] = "bf16",
                  as_json: JSON = False) -> None:
    """Time and TFLOP/s (FlashAttention's FLOP convention) of one attention forward or backward."""
    from syslab.core.gpu import attention_flops, attention_s

    g = _gpu(gpu)
    dtype = _dtype(g, dtype)
    seq, heads, head_dim, batch = (_size(seq, "--seq", 1e8), _size(heads, "--heads", 4096),
                                   _size(head_dim, "--head-dim", 1024), _size(batch, "--batch", 1e6))
    t = attention_s(batch, seq, heads, head_dim, g, causal=causal, backward=backward, dtype=dtype)
    flops = attention_flops(batch, seq, heads, head_dim, causal, backward)
    _emit(as_json, {"time_s": t, "tflops": flops / t / 1e12},
          f"attention {'bwd' if backward else 'fwd'} seq {seq} on {g.name}")


@app.command("collective")
def gpu_collective(op: Annotated[str, typer.Option(help="allreduce, allgather, reducescatter, alltoall ...")],
                   bytes_: Annotated[float, typer.Option("--bytes", help="buffer size in bytes (e.g. 1e9)")],
                   ranks: Annotated[int, typer.Option(help="GPUs taking part")] = 8,
                   nodes: Annotated[int, typer.Option(help="nodes they span")] = 1,
                   gpu: Annotated[str, typer.Option(help="GPU name")] = "A100-SXM-80GB",
                   as_json: JSON = False) -> None:
    """Time, algorithm and bus bandwidth (nccl-tests' definitions) of one NCCL collective."""
    from syslab.core.gpu import algbw_busbw, collective_s
    from syslab.core.gpu.comm import OPS
    from syslab.core.inputs import one_of, option

    g = _gpu(gpu)
    op = one_of(op.lower().replace("_", "").replace("-", ""), OPS, field="--op")
    n_bytes = float(option(bytes_, "--bytes", min=1, max=1e13))
    ranks, nodes = _size(ranks, "--ranks", 1e5), _size(nodes, "--nodes", 1e4)
    if ranks % nodes:
        raise InputError(f"{ranks} ranks do not split evenly over {nodes} nodes.", field="--nodes",
                         fix="use a node count that divides --ranks.")
    t = collective_s(op, n_bytes, ranks, g, nodes=nodes)
    alg, bus = algbw_busbw(op, n_bytes, ranks, t)
    _emit(as_json, {"time_s": t, "algbw_gbps": alg, "busbw_gbps": bus},
          f"{op} of {n_bytes:.3g} B over {ranks} x {g.name} ({nodes} node(s))")


@app.command("copy")
def gpu_copy(bytes_: Annotated[float, typer.Option("--bytes", help="bytes to copy")],
             gpu: Annotated[str, typer.Option(help="GPU name")] = "A100-SXM-80GB",
             direction: Annotated[str, typer.Option(help="h2d or d2h")] = "h2d",
             pinned: Annotated[bool, typer.Option("--pinned/--pageable")] = True,
             as_json: JSON = False) -> None:
    """Time and bandwidth of one host<->device copy over the GPU's PCIe link."""
    from syslab.core.gpu import copy_s
    from syslab.core.inputs import one_of, option

    g = _gpu(gpu)
    direction = one_of(direction.lower(), ("h2d", "d2h"), field="--direction")
    n_bytes = float(option(bytes_, "--bytes", min=1, max=1e13))
    t = copy_s(n_bytes, g, direction, pinned)
    _emit(as_json, {"time_s": t, "gbps": n_bytes / t / 1e9},
          f"{direction} {'pinned' if pinned else 'pageable'} copy of {n_bytes:.3g} B on {g.name}")


@app.command("validate")
def gpu_validate(as_json: JSON = False) -> None:
    """The model beside every published measurement it was not fitted on, with the relative error."""
    from syslab.core.gpu.validation import checks, summary

    items = checks()
    if as_json:
        print_json({"summary": summary(items), "checks": [dict(zip(
            ["id", "gpu", "what", "measured", "predicted", "unit", "rel_error", "source"], c.row(), strict=True))
            for c in items]})
        return
    table = Table("GPU", "measurement", "measured", "model", "unit", "error", "source", title="validation")
    for c in items:
        table.add_row(c.gpu, c.what, f"{c.measured:.4g}", f"{c.predicted:.4g}", c.unit, f"{c.rel_error:+.0%}",
                      c.source[:60])
    out.print(table)
    s = summary(items)
    if s.get("checks"):
        out.print(f"{s['checks']} checks · median |error| {s['median_abs_rel_error']:.0%} · "
                  f"90th percentile {s['p90_abs_rel_error']:.0%} · within 25%: {s['within_25pct']:.0%}")
