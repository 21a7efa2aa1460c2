"""``syslab crosspipe``: pipeline schedules across datacenters under latency and bandwidth cost."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import err, out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="CrossPipe: pipeline schedules across datacenters under latency and bandwidth cost.",
                  no_args_is_help=True)


@app.command("compare")
def crosspipe_compare(
        stages: Annotated[int, typer.Option(help="pipeline stages (devices)")] = 4,
        microbatches: Annotated[int, typer.Option(help="micro-batches per iteration (a multiple of --stages)")] = 8,
        latency: Annotated[float, typer.Option(help="cross-DC latency, in forward times (T_lat / T_F)")] = 1.0,
        bandwidth: Annotated[float, typer.Option(help="time one activation message occupies the cross-DC link, "
                                                      "in forward times (T_bw / T_F)")] = 0.0,
        dcs: Annotated[int, typer.Option(help="datacenters the stages are split evenly over")] = 2,
        milp_seconds: Annotated[float, typer.Option(help="also solve the MILP optimum (UD) with this time limit; "
                                                         "0 skips it (keep stages x micro-batches small)")] = 0.0,
        trace_dir: Annotated[Path | None, typer.Option(help="write one Chrome trace per schedule here "
                                                            "(open in ui.perfetto.dev)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Makespan of one iteration under every static schedule and CrossPipe's greedy ones, same memory budget."""
    from syslab.core.inputs import option
    from syslab.training import pipeline as P
    from syslab.training.crosspipe import milp as M
    from syslab.training.crosspipe import schedule as S

    # The simulator schedules stages x micro-batches forward/backward ops for each of 8 schedules: 64 x 256
    # takes ~16 s here, so at most 128 stages and 65,536 micro-batch passes. Delays are finite, in forward times,
    # at most 1e6 (a cross-DC hop of a million forward passes is no pipeline; S.Delay refuses negative ones).
    # The MILP: at most an hour.
    stages = option(stages, "--stages", min=1, max=128, integer=True)
    microbatches = option(microbatches, "--microbatches", min=1, max=4096, integer=True)
    latency = option(latency, "--latency", max=1e6, fix="use a finite number from 0 to 1e6.")
    bandwidth = option(bandwidth, "--bandwidth", max=1e6, fix="use a finite number from 0 to 1e6.")
    dcs = option(dcs, "--dcs", min=1, max=stages, integer=True, fix="use 1 <= --dcs <= --stages.")
    milp_seconds = option(milp_seconds, "--milp-seconds", min=0, max=3600)
    if stages * microbatches > 65_536:
        raise InputError(f"{stages} stages x {microbatches} micro-batches = {stages * microbatches:,} passes.",
                         field="--microbatches", fix="keep stages x micro-batches <= 65,536.")
    if stages < 1 or microbatches < 1 or microbatches % stages:
        raise InputError(f"{stages} stages and {microbatches} micro-batches.", field="--microbatches",
                         fix="use positive counts with micro-batches a multiple of stages (interleaved 1F1B needs it).")
    delay = S.Delay(latency, bandwidth)
    budget = S.memory_budget(stages)
    rows = {}
    for name in (*S.STATIC, *S.DYNAMIC):
        sch = S.run(name, stages, microbatches, delay, dcs)
        rows[name] = {"pattern": S.PATTERN[name], "makespan": sch.makespan,
                      "peak_activation": max(P.activation_peaks(sch).values()),
                      "problems": P.validate(sch, memory_limit=None if name == "IV1F1B" else budget)}
        if trace_dir is not None:
            trace_dir.mkdir(parents=True, exist_ok=True)
            sch.write_chrome_trace(trace_dir / f"{name}.json")
    if milp_seconds > 0:
        sol = M.solve(S.stages(stages, microbatches, delay, dcs=dcs), budget, time_limit_s=milp_seconds)
        if sol.schedule is not None:
            rows["MILP (UD)"] = {"pattern": "UD", "makespan": sol.makespan, "optimal": sol.optimal,
                                 "lower_bound": sol.lower_bound, "solve_s": sol.solve_s,
                                 "peak_activation": max(P.activation_peaks(sol.schedule).values()),
                                 "problems": P.validate(sol.schedule, memory_limit=budget)}
        else:
            err.print(f"MILP: no schedule found within {milp_seconds:g} s ({sol.binaries} ordering binaries); "
                      "raise --milp-seconds or shrink the instance")
    base = rows["1F1B"]["makespan"]
    if as_json:
        print_json({"delay": {"latency": latency, "bandwidth": bandwidth}, "memory_budget": budget,
                    "schedules": rows})
        return
    table = Table("schedule", "pattern", "makespan (T_F)", "vs 1F1B", "peak activations", "valid",
                  title=f"{stages} stages over {dcs} DCs, {microbatches} micro-batches, T_lat = {latency:g} T_F, "
                        f"T_bw = {bandwidth:g} T_F; budget {budget:g} micro-batches' activations per device")
    for name, r in rows.items():
        note = " (optimal)" if r.get("optimal") else " (time limit)" if "optimal" in r else ""
        table.add_row(name, r["pattern"], f"{r['makespan']:g}{note}", f"{1 - r['makespan'] / base:+.1%}",
                      f"{r['peak_activation']:g}", "yes" if not r["problems"] else r["problems"][0])
    out.print(table)
    if trace_dir is not None:
        out.print(f"Chrome traces in {trace_dir}/ (open in ui.perfetto.dev)")
