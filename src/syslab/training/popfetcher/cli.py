"""``syslab popfetcher``: PopFetcher against the expert-parallel baselines on your own MoE's routing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="PopFetcher: expert prefetch against expert-parallel baselines on your own MoE's routing.",
                  no_args_is_help=True)

FIX = ("write the file with syslab.training.popfetcher.logger.RoutingLogger, or as np.savez(path, counts=..., "
       "transitions=..., top_k=2): counts [iterations, layers, (workers,) experts] of top-k assignments, "
       "transitions [iterations, layers - 1, experts, experts] of top-1 moves between consecutive layers.")
NAMES = {"vanilla": "vanilla EP", "fastermoe": "FasterMoE-like", "janus": "Janus-like", "popfetcher": "PopFetcher",
         "oracle": "perfect-foresight plan (bound)"}


def load_routing(path: Path):
    """A ``RoutingTrace`` from a user's .npz (the input boundary: shapes, counts and transitions checked)."""
    import numpy as np

    from syslab.core.inputs import read_npz
    from syslab.training.popfetcher.routing import RoutingTrace

    a = read_npz(path, fix=FIX, arrays={"counts": (3, 4), "transitions": (4,), "top_k": (0, 1)},
                 optional=("transitions", "top_k"), min=0)
    counts = a["counts"]
    iterations, layers, experts = counts.shape[0], counts.shape[1], counts.shape[-1]
    if iterations < 2 or layers < 2 or experts < 2:
        raise InputError(f"counts has shape {counts.shape}: needs at least 2 iterations, 2 MoE layers and 2 experts.",
                         file=path, field="counts", fix=FIX)
    top_k = int(np.ravel(a.get("top_k", np.array(2)))[0])
    if top_k < 1 or top_k > experts:
        raise InputError(f"top_k {top_k} with {experts} experts.", file=path, field="top_k", fix=FIX)
    trans = a.get("transitions")
    if trans is None:
        trans = np.zeros((iterations, layers - 1, experts, experts))
    elif trans.shape != (iterations, layers - 1, experts, experts):
        raise InputError(f"transitions has shape {trans.shape}, not {(iterations, layers - 1, experts, experts)} "
                         f"(from counts {counts.shape}).", file=path, field="transitions", fix=FIX)
    per_worker = counts if counts.ndim == 4 else None
    total = counts.sum(axis=2) if per_worker is not None else counts
    if (total.sum(axis=2) <= 0).any():
        raise InputError("an iteration and layer with no tokens routed.", file=path, field="counts", fix=FIX)
    tokens = int(round(float(total[0, 0].sum()) / top_k))
    return RoutingTrace(total, trans, tokens, top_k, f"user routing ({path.name})", per_worker)


@app.command("simulate")
def popfetcher_simulate(
        routing: Annotated[Path, typer.Option(help=".npz from RoutingLogger: counts [iterations, layers, "
                                                   "(workers,) experts], transitions, top_k")],
        workers: Annotated[int | None, typer.Option(help="expert-parallel workers, one GPU per node (default: "
                                                         "the routing's recorded workers, else 8)")] = None,
        gpu: Annotated[str, typer.Option(help="GPU model (syslab gpu list)")] = "A100-80GB",
        nic: Annotated[str, typer.Option(help="inter-node NIC: ib-hdr, ib-ndr, roce-100, ...")] = "ib-hdr",
        tokens: Annotated[int, typer.Option(help="tokens per worker per iteration (the routing is scaled to it)")]
        = 8192,
        hidden: Annotated[int, typer.Option(help="model hidden size (experts are two hidden x 4 hidden matrices)")]
        = 1024,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Modelled MoE-layer time per iteration of vanilla EP, FasterMoE-like, Janus-like, PopFetcher and a
    perfect-foresight plan on your routing (iterations after the first 10, or after half if fewer)."""
    import dataclasses

    from syslab.core import gpu as G
    from syslab.core.hardware import LINKS
    from syslab.core.hardware import gpu as gpu_named
    from syslab.core.inputs import option
    from syslab.training.popfetcher import sim as S

    tokens = option(tokens, "--tokens", min=1, max=10**7, integer=True)
    hidden = option(hidden, "--hidden", min=16, max=65_536, integer=True)
    try:
        device = gpu_named(gpu).name
    except KeyError as e:
        raise InputError(str(e.args[0]), field="--gpu", fix="pick a name from `syslab gpu list`.") from None
    nics = [n for n in LINKS if n.startswith(("ib-", "roce"))]
    if nic.lower() not in nics:
        raise InputError(f"unknown NIC {nic!r}.", field="--nic", fix=f"use one of {', '.join(nics)}.")
    trace = load_routing(routing)
    if workers is None:
        workers = trace.worker_counts.shape[2] if trace.worker_counts is not None else 8
    workers = option(workers, "--workers", min=2, max=1024, integer=True)
    if trace.experts < workers:
        raise InputError(f"{trace.experts} experts for {workers} workers.", field="--workers",
                         fix=f"use --workers {trace.experts} or fewer (every worker owns an expert).")
    if trace.worker_counts is not None and trace.worker_counts.shape[2] != workers:
        raise InputError(f"the routing records {trace.worker_counts.shape[2]} workers' batches, not {workers}.",
                         field="--workers", fix=f"use --workers {trace.worker_counts.shape[2]}.")
    base = S.Cluster()
    cluster = dataclasses.replace(base, workers=workers, experts=trace.experts, tokens=tokens, hidden=hidden,
                                  heads=max(1, hidden // 64), device=device,
                                  fabric=G.Fabric(base.fabric.intra, 1, nic.lower(), 1))
    start = min(10, trace.iterations // 2)
    times = S.run_policies(trace, cluster, start=start, policies=tuple(NAMES))
    vanilla = float(times["vanilla"].mean())
    best = min(("vanilla", "fastermoe", "janus"), key=lambda p: float(times[p].mean()))
    rows = {p: {"mean_ms": float(times[p].mean()) * 1e3, "cut_vs_vanilla": 1 - float(times[p].mean()) / vanilla}
            for p in NAMES}
    result = {"iterations": int(len(times["vanilla"])), "layers_timed": trace.layers - 1, "policies": rows,
              "best_baseline": best,
              "popfetcher_cut_vs_best": 1 - float(times["popfetcher"].mean()) / float(times[best].mean()),
              "per_worker_routing": trace.worker_counts is not None}
    if as_json:
        print_json(result)
        return
    table = Table("policy", "MoE-layer time per iteration (ms)", "cut vs vanilla EP",
                  title=f"{result['iterations']} iterations of {routing.name}: {workers} x {device}, {nic}, "
                        f"{tokens:,} tokens per worker (modelled)")
    for p, r in rows.items():
        table.add_row(NAMES[p], f"{r['mean_ms']:.2f}", f"{r['cut_vs_vanilla']:+.1%}")
    out.print(table)
    out.print(f"PopFetcher vs the best baseline ({NAMES[best]}): {result['popfetcher_cut_vs_best']:+.1%}"
              + ("" if result["per_worker_routing"] else "; no per-worker counts: every worker sees the global "
                                                        "routing"))
