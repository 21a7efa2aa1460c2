"""``syslab afaas``: measure serverless cold starts on this machine, spawn against fork-from-seed."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import err, out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="AFaaS (Fork in the Road): measure serverless cold starts on this machine.",
                  no_args_is_help=True)


@app.command("bench")
def afaas_bench(
        concurrency: Annotated[int, typer.Option(help="simultaneous cold starts in the loaded run")] = 32,
        requests: Annotated[int, typer.Option(help="cold starts one after another in the unloaded run")] = 8,
        ablation: Annotated[bool, typer.Option(help="all five configurations, adding one technique at a "
                                                    "time")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Spawn-a-fresh-interpreter cold starts (5 persisted hops, fresh sandbox) against AFaaS's fork from a
    seed (1 hop, pooled sandbox), at concurrency 1 and --concurrency. Every process is reaped."""
    from syslab.cloud.afaas import bench as AB
    from syslab.core.inputs import option

    # every cold start is a real process: at most 256 at once (one sandbox each) and 10,000 in the unloaded run
    concurrency = option(concurrency, "--concurrency", min=1, max=256, integer=True,
                         fix="use 1 <= --concurrency <= 256.")
    requests = option(requests, "--requests", min=1, max=10_000, integer=True, fix="use 1 <= --requests <= 10,000.")
    if not hasattr(os, "fork"):
        raise InputError("this platform has no fork().", field="platform", fix="run on Linux.")
    configs = AB.ABLATION if ablation else (AB.ABLATION[0], AB.ABLATION[-1])
    with err.status("measuring cold starts") as status:
        res = AB.run_ablation(requests, concurrency, configs=configs,
                              progress=lambda m: status.update(f"measuring: {m}"))
    rows = res["results"]
    key = {AB.ABLATION[0].name: "spawn", AB.ABLATION[-1].name: "fork_seed"}
    hi = f"c{concurrency}"
    if as_json:
        body = {key.get(n, n): {"p50_ms": r["c1"]["p50_ms"], "p99_ms": r["c1"]["p99_ms"],
                                f"p50_ms_c{concurrency}": r[hi]["p50_ms"], f"p99_ms_c{concurrency}": r[hi]["p99_ms"]}
                for n, r in rows.items()}
        print_json({**body, "resources": res["resources"], "concurrency": concurrency})
        return
    table = Table("configuration", "p50 (ms)", "p99 (ms)", f"p50 c{concurrency}", f"p99 c{concurrency}",
                  title=f"cold starts on this machine; sandboxes: {res['resources']}")
    for n, r in rows.items():
        table.add_row(n, f"{r['c1']['p50_ms']:.1f}", f"{r['c1']['p99_ms']:.1f}", f"{r[hi]['p50_ms']:.1f}",
                      f"{r[hi]['p99_ms']:.1f}")
    out.print(table)
