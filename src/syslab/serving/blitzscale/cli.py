"""``syslab blitzscale``: replay your own serving trace (Azure CSV) under BlitzScale and its baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import err, out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="BlitzScale autoscaling replay on your own trace (Azure CSV format).",
                  no_args_is_help=True)


@app.command("replay")
def blitzscale_replay(trace: Annotated[Path, typer.Option(help="CSV: TIMESTAMP,ContextTokens,GeneratedTokens")],
                      time_scale: Annotated[float, typer.Option(help="compress arrivals by this factor")] = 1.0,
                      as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """P99 TTFT and GPU-seconds of BlitzScale, ServerlessLLM-style loading and static provisioning."""
    from syslab.core.workloads import load_azure_llm
    from syslab.core.workloads import time_scale as compress
    from syslab.serving import blitzscale

    if time_scale <= 0:
        raise InputError(f"must be positive, got {time_scale}.", field="--time-scale", fix="e.g. --time-scale 4.")
    df = compress(load_azure_llm(trace), time_scale)
    with err.status(f"replaying {len(df)} requests under four policies"):
        policies = blitzscale.compare(df)
    if as_json:
        print_json(policies)
        return
    table = Table("policy", "P99 TTFT (s)", "SLO attainment", "GPU-seconds", "instances", "mean load (s)",
                  title=f"{len(df)} requests; SLO: P99 TTFT <= {policies['static']['slo_p99_ttft_s']:.2f}s")
    for name, v in policies.items():
        table.add_row(name, f"{v['p99_ttft_s']:.3f}", f"{v['slo_attainment']:.3f}", f"{v['gpu_seconds']:.0f}",
                      str(v["instances"]), f"{v['mean_load_s']:.2f}")
    out.print(table)
