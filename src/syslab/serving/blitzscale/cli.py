"""``syslab blitzscale``: replay your own serving trace (Azure CSV) under BlitzScale and its baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import err, out, print_json

# the autoscaler ticks every 0.5 s of simulated time (~0.2 s of CPU per simulated hour): 30 days is minutes
MAX_SPAN_S = 30 * 86400.0

app = typer.Typer(help="BlitzScale autoscaling replay on your own trace (Azure CSV format).",
                  no_args_is_help=True)


@app.command("replay")
def blitzscale_replay(trace: Annotated[Path, typer.Option(help="CSV: TIMESTAMP,ContextTokens,GeneratedTokens")],
                      time_scale: Annotated[float, typer.Option(help="compress arrivals by this factor")] = 1.0,
                      as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """P99 TTFT and GPU-seconds of BlitzScale, ServerlessLLM-style loading and static provisioning."""
    from syslab.core.inputs import option
    from syslab.core.workloads import replay_window
    from syslab.serving import blitzscale

    # a factor in [1e-3, 1e6]: stretching 1000x or compressing a millionfold; token counts are bounded by the
    # loader (MAX_TOKENS) and each request by one instance's KV cache (the engine checks it)
    time_scale = option(time_scale, "--time-scale", min=1e-3, max=1e6, fix="e.g. --time-scale 4.")
    df = replay_window(trace, time_scale, MAX_SPAN_S)
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
