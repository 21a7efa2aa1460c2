"""``syslab flexpipe``: FlexPipe's adaptive pipeline mappings on your own sequence lengths."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="FlexPipe: adaptive pipeline mappings on your own sequence lengths.",
                  no_args_is_help=True)


@app.command("simulate")
def flexpipe_simulate(
        lengths: Annotated[Path, typer.Option(help="JSON list of sequence lengths in tokens (one per sample)")],
        batch: Annotated[int, typer.Option(help="sequences per iteration")] = 32,
        iterations: Annotated[int, typer.Option(help="iterations to simulate")] = 400,
        seed: Annotated[int, typer.Option(help="seed for drawing mini-batches")] = 0,
        horizon: Annotated[float, typer.Option(help="iterations a switch's 0.8 s stall is amortised over "
                                                    "(1 = the paper's one-iteration rule)")] = 10.0,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Draw mini-batches from your lengths and compare FlexPipe with static pipelines (GPT-3.35B-like on 16
    modelled A100s)."""
    import numpy as np

    from syslab.core.inputs import option
    from syslab.core.workloads import load_lengths
    from syslab.training.flexpipe import model as FM
    from syslab.training.flexpipe import plan as FP

    # Each iteration is planned in ~3 ms here and its mini-batch is kept: at most 100,000 iterations, 65,536
    # sequences each and 5e7 drawn sequences in all (400 MB). The horizon is finite, in iterations.
    batch = option(batch, "--batch", min=1, max=65_536, integer=True)
    iterations = option(iterations, "--iterations", min=1, max=100_000, integer=True)
    seed = option(seed, "--seed", min=0, integer=True)
    horizon = option(horizon, "--horizon", min=0, max=1e6)
    if batch * iterations > 5 * 10**7:
        raise InputError(f"{iterations} iterations of {batch} sequences.", field="--iterations",
                         fix="keep --batch x --iterations <= 50,000,000.")
    if batch < 1 or iterations < 1 or horizon <= 0:
        raise InputError(f"batch {batch}, iterations {iterations}, horizon {horizon}.", field="--batch",
                         fix="use a positive batch, iteration count and horizon.")
    docs = load_lengths(lengths)
    job = FM.Job(batch=batch)
    if job.gpus > batch:
        raise InputError(f"{batch} sequences per iteration for {job.gpus} GPUs.", field="--batch",
                         fix=f"use --batch {job.gpus} or more, so every GPU gets a sequence.")
    rng = np.random.default_rng(seed)
    batches = [rng.choice(docs, batch) for _ in range(iterations)]
    from syslab.training.flexpipe.reproduce import ABLATION, statics
    static, base_name = statics(job, batches)
    start = static[ABLATION][1]
    if start is None:
        raise InputError(f"no mapping of the model fits the longest mini-batch (longest sequence "
                         f"{max(int(b.max()) for b in batches):,} tokens), even with recomputation.", file=lengths,
                         field="lengths", fix="cap or split the longest sequences.")
    flex = FP.flexpipe(job, batches, start, horizon=horizon)
    short = {"static + recompute (fewest stages)": "static + recompute"}     # the key this tool has always had
    rows = {short.get(name, name): {"mapping": mp, "tokens_per_s": tr.throughput if tr.steps else None,
                                    "baseline": name == base_name}
            for name, (tr, mp) in static.items()}
    rows["FlexPipe"] = {"tokens_per_s": flex.throughput, "switches": flex.switches,
                        "memory_optimised": flex.count("memopt"),
                        "max_decision_ms": 1000 * max(st.decide_s for st in flex.steps)}
    if as_json:
        print_json({"iterations": iterations, "batch": batch, "policies": rows})
        return
    table = Table("policy", "mapping ((layers, GPUs) per stage)", "tokens/s", "note",
                  title=f"{iterations} iterations of {batch} sequences drawn from {lengths.name}")
    for name, r in rows.items():
        note = (f"{r['switches']} switches, {r['memory_optimised']} memory-optimised, decisions <= "
                f"{r['max_decision_ms']:.0f} ms") if name == "FlexPipe" else ("the fastest static: the baseline"
                                                                            if r["baseline"] else "")
        mp = r.get("mapping")
        table.add_row(name, " ".join(f"({a},{b})" for a, b in mp) if mp else ("-" if name == "FlexPipe" else "OOM"),
                      f"{r['tokens_per_s']:,.0f}" if r["tokens_per_s"] else "-", note)
    out.print(table)
