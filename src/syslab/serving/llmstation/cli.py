"""``syslab llmstation``: co-serve and fine-tune a tiny model on your own request trace (torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import err, need_torch, out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="LLMStation: co-serve and fine-tune a tiny model on your own request trace (torch).",
                  no_args_is_help=True)


@app.command("compare")
def llmstation_compare(
        trace: Annotated[Path, typer.Option(help="CSV: TIMESTAMP,ContextTokens,GeneratedTokens (Azure format)")],
        time_scale: Annotated[float, typer.Option(help="compress arrivals by this factor")] = 1.0,
        max_requests: Annotated[int, typer.Option(help="serve the first N requests")] = 64,
        max_prompt: Annotated[int, typer.Option(help="clip prompts to this many tokens")] = 128,
        max_output: Annotated[int, typer.Option(help="clip outputs to this many tokens")] = 64,
        repeats: Annotated[int, typer.Option(help="runs per setting (the median is kept)")] = 1,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Serve a trace on this CPU alone, then with fine-tuning under temporal sharing, a spatial split and
    LLMStation; print fine-tuning samples/s and P99 TTFT/TPOT against the SLO (2x / 1.5x serving alone)."""
    from syslab.core.inputs import option
    from syslab.core.workloads import load_azure_llm
    from syslab.core.workloads import time_scale as compress

    need_torch("LLMStation runs a real model and needs torch.")
    from syslab.serving.llmstation.reproduce import CFG

    # Every request is served for real, in real time, on this CPU: at most 4,096 requests whose arrivals span at
    # most an hour, 20 repeats; a prompt plus its output fits the tiny model's context (CFG.context tokens).
    for name, value, hi in (("--max-requests", max_requests, 4096), ("--max-prompt", max_prompt, CFG.context - 1),
                            ("--max-output", max_output, CFG.context - 1), ("--repeats", repeats, 20)):
        option(value, name, min=1, max=hi, integer=True, fix=f"use a value from 1 to {hi}, e.g. {name} 32.")
    if max_prompt + max_output > CFG.context:
        raise InputError(f"{max_prompt} + {max_output} tokens exceed the model's {CFG.context}-token context.",
                         field="--max-prompt", fix=f"keep --max-prompt + --max-output <= {CFG.context}.")
    time_scale = option(time_scale, "--time-scale", min=1e-3, max=1e6, fix="e.g. --time-scale 4.")
    df = compress(load_azure_llm(trace), time_scale)
    span_s = float(df["arrival_s"].iloc[:max_requests].max())
    if span_s > 3600:
        raise InputError(f"the first {min(len(df), max_requests)} requests arrive over {span_s:,.0f} s; they are "
                         "served in real time, at most an hour.", file=trace, field="--time-scale",
                         fix="compress the arrivals with --time-scale, or serve fewer with --max-requests.")
    from syslab.serving.llmstation.reproduce import compare_trace

    with err.status("serving") as status:
        cmp, clipped = compare_trace(df, max_requests, max_prompt, max_output, repeats=repeats,
                                     progress=lambda m: status.update(m))
    rows = {f"{r.policy} ({r.knob})": {**r.summary(), "meets_slo": cmp.slo.met(r)} for r in cmp.runs}
    if as_json:
        print_json({"slo": {"p99_ttft_s": cmp.slo.ttft_s, "p99_tpot_s": cmp.slo.tpot_s},
                    "clipped_requests": clipped, "policies": rows})
        return
    table = Table("policy", "knob", "fine-tuning samples/s", "P99 TTFT (ms)", "P99 TPOT (ms)", "meets SLO",
                  title=f"{min(len(df), max_requests)} requests ({clipped} clipped); SLO: P99 TTFT <= "
                        f"{cmp.slo.ttft_s * 1e3:.0f} ms, P99 TPOT <= {cmp.slo.tpot_s * 1e3:.1f} ms")
    for r in cmp.runs:
        table.add_row(r.policy, r.knob, f"{r.ft_throughput:.2f}", f"{r.p99_ttft() * 1e3:.0f}",
                      f"{r.p99_tpot() * 1e3:.1f}", "yes" if cmp.slo.met(r) else "no")
    out.print(table)
