"""``syslab kamino``: play your allocation requests through Kamino and the baselines, simulated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import err, out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="Kamino: cache-aware scheduling of allocation requests, in a simulation.",
                  no_args_is_help=True)


@app.command("simulate")
def kamino_simulate(
        requests: Annotated[Path | None, typer.Option(help="CSV with time_s,signature per request; default: "
                                                           "a synthetic stream")] = None,
        load: Annotated[float | None, typer.Option(help="rescale arrivals to this offered load (JSQ reference); "
                                                        "default: the file's own times, or 0.7")] = None,
        allocators: Annotated[int, typer.Option(help="allocators behind the front end")] = 8,
        cache: Annotated[int, typer.Option(help="cache entries per allocator")] = 64,
        n: Annotated[int, typer.Option(help="synthetic requests")] = 50000,
        seed: Annotated[int, typer.Option(help="seed")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Play requests through Kamino and the baselines (round-robin, JSQ, power-of-two, consistent hashing)."""
    import numpy as np

    from syslab.cloud.kamino import sim as S
    from syslab.cloud.kamino import workload as W

    cluster = S.Cluster(allocators=allocators, cache_entries=cache)
    if requests:
        arr, sigs = W.load_requests(requests)
    else:
        if n < 1:
            raise InputError(f"--n {n}.", field="--n", fix="ask for at least one request.")
        rng = np.random.default_rng(seed)
        arr, sigs = W.mmpp_arrivals(n, rng), W.zipf_signatures(n, 2000, 1.1, rng)
        load = 0.7 if load is None else load
    if load is not None:
        span = max(arr[-1] - arr[0], 1e-12)
        unit = (arr - arr[0]) * (len(arr) / span)                    # mean rate 1
        arr = unit / S.rate_for_load(unit, sigs, load, cluster)
    with err.status("simulating"):
        res = {s: S.simulate(arr, sigs, s, cluster, seed=seed).summary() for s in S.SCHEDULERS}
    if as_json:
        print_json({"requests": len(arr), "load": load, "schedulers": res})
        return
    table = Table("scheduler", "mean (ms)", "p99 (ms)", "miss rate", "cached entries")
    for k, v in res.items():
        table.add_row(k, f"{v['mean_ms']:.2f}", f"{v['p99_ms']:.1f}", f"{v['miss_rate']:.1%}", f"{v['entries']:.0f}")
    out.print(table)
    out.print(f"{len(arr)} requests; modelled service times (hit {cluster.costs.c_hit_s * 1e3:g} ms, miss "
              f"{cluster.costs.c_miss_s * 1e3:g} ms)")
