"""``syslab kvcache``: replay and characterise your own prefix-cache trace (Qwen-Bailian schema)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="Prefix KV-cache replay and characterisation of a Qwen-Bailian-schema trace.",
                  no_args_is_help=True)


@app.command("replay")
def kvcache_replay(trace: Annotated[Path, typer.Option(help="JSONL trace in the Qwen-Bailian schema")],
                   capacity_blocks: Annotated[int, typer.Option(help="cache capacity in 16-token blocks")],
                   policy: Annotated[str, typer.Option(help="lru | lfu | wa | belady")] = "lru",
                   fit_fraction: Annotated[float, typer.Option(help="share of the trace (by time) used to fit WA "
                                                               "and warm the cache; the rest is scored")] = 0.5,
                   as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Replay a trace through a prefix cache and print the block hit ratio."""
    from syslab.core.inputs import one_of, option
    from syslab.serving import kvcache_wild as kv

    # the cache is a dict of the blocks it holds (nothing is sized by the capacity): any count up to 10**12
    capacity_blocks = option(capacity_blocks, "--capacity-blocks", min=1, max=10**12, integer=True)
    if not 0.0 <= fit_fraction < 1.0:
        raise InputError(f"must be in [0, 1), got {fit_fraction}.", field="--fit-fraction", fix="e.g. 0.5.")
    policy = one_of(policy, kv.POLICIES, field="--policy")
    tr = kv.load_trace(trace)
    cut = float(tr.timestamp[0] + fit_fraction * (tr.timestamp[-1] - tr.timestamp[0]))
    profile, evaluate = tr.split(cut) if fit_fraction > 0 else (None, tr)
    if policy == "wa" and (profile is None or len(profile) == 0):
        raise InputError("WA needs a profiling part of the trace.", field="--fit-fraction", fix="use e.g. 0.5.")
    wa = kv.fit_wa(profile) if policy == "wa" else None
    r = kv.replay(evaluate, capacity_blocks, policy, wa, warmup=profile if profile is not None and len(profile)
                  else None)
    if r.total_blocks == 0:
        raise InputError(f"the scored part of the trace (after the first {fit_fraction:.0%}) has no blocks.",
                         file=trace, field="hash_ids", fix="lower --fit-fraction or give a longer trace.")
    d = {**r.to_dict(), "scored_from_s": cut if fit_fraction > 0 else float(tr.timestamp[0])}
    if as_json:
        print_json(d)
        return
    out.print(f"{policy}: block hit ratio {r.hit_ratio:.4f} over {len(evaluate)} requests "
              f"(capacity {capacity_blocks} blocks; first {fit_fraction:.0%} of the trace used to warm up"
              f"{' and fit WA' if policy == 'wa' else ''})")


@app.command("characterize")
def kvcache_characterize(trace: Annotated[Path, typer.Option(help="JSONL trace in the Qwen-Bailian schema")],
                         as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Ideal hit ratio, reuse skew, single- vs multi-turn hits and reuse times per category."""
    from syslab.serving import kvcache_wild as kv

    c = kv.characterize(kv.load_trace(trace))
    if as_json:
        print_json(c)
        return
    for k, v in c.items():
        if k != "reuse_time_by_category":
            out.print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    table = Table("category", "reuses", "median reuse time (s)", "80th percentile (s)")
    for cat, r in c["reuse_time_by_category"].items():
        table.add_row(cat, str(r["reuses"]), f"{r['median_s']:.1f}", f"{r['p80_s']:.1f}")
    out.print(table)
