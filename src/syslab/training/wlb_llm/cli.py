"""``syslab wlb``: pack your own document lengths the original, fixed-greedy and WLB-LLM ways."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import out, print_json

app = typer.Typer(help="WLB-LLM packing on your own document lengths.",
                  no_args_is_help=True)


@app.command("pack")
def wlb_pack(lengths: Annotated[Path, typer.Option(help="JSON list of document lengths (tokens)")],
             context: Annotated[int, typer.Option(help="context window S (tokens per micro-batch)")] = 131072,
             microbatches: Annotated[int, typer.Option(help="micro-batches per iteration (N)")] = 8,
             queues: Annotated[int, typer.Option(help="outlier queues for WLB-LLM")] = 2,
             iterations: Annotated[int, typer.Option(help="iterations to pack (0: use every document)")] = 0,
             split_long: Annotated[bool, typer.Option("--split-long",
                                                      help="cut documents longer than the context")] = False,
             as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Pack documents three ways (original, fixed greedy, WLB-LLM) and compare imbalance and delay."""
    from syslab.training import wlb_llm

    docs = wlb_llm.load_lengths(lengths)
    report = wlb_llm.compare_packers(docs, context=context, microbatches=microbatches, queues=queues,
                                     iterations=iterations or None, split_long=split_long, source=str(lengths))
    if as_json:
        print_json(report)
        return
    table = Table("packing", "imbalance degree", "mean per-token delay (iterations)", "ms per batch",
                  title=f"{report['documents']} documents in {report['iterations']} iterations, context {context}, "
                        f"{microbatches} micro-batches; WLB thresholds {report['thresholds']}")
    for name in ("original", "fixed_greedy", "wlb"):
        r = report[name]
        table.add_row(name, f"{r['imbalance']:.3f}", f"{r.get('mean_delay_iters', 0.0):.2f}",
                      f"{r['ms_per_batch']:.1f}")
    out.print(table)
