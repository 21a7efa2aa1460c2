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
    import numpy as np

    from syslab.core.errors import InputError
    from syslab.core.inputs import option
    from syslab.core.workloads import MAX_LENGTH_TOKENS
    from syslab.training import wlb_llm

    # S >= 32: WLB's outlier thresholds are S/32 ... S/2 and each must be at least one token; S <= the longest
    # document we read. N <= 4096: fixed greedy scans every micro-batch for each document. At most 5 outlier
    # queues: one per threshold on that grid of 5. --iterations only truncates.
    context = option(context, "--context", min=32, max=MAX_LENGTH_TOKENS, integer=True)
    microbatches = option(microbatches, "--microbatches", min=1, max=4096, integer=True)
    queues = option(queues, "--queues", min=0, max=5, integer=True)
    iterations = option(iterations, "--iterations", min=0, max=10**9, integer=True)
    docs = wlb_llm.load_lengths(lengths)
    pieces = int(np.ceil(docs / context).sum()) if split_long else len(docs)
    if pieces > 10**7:                     # each piece is a Python object in the packers (~100 bytes)
        raise InputError(f"--split-long at context {context} makes {pieces:,} pieces, over the limit of 10,000,000.",
                         file=lengths, field="--context", fix="raise --context or pass fewer documents.")
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
