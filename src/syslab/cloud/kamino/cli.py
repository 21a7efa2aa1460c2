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
    from syslab.core.inputs import option

    # JSQ and the cache-aware schedulers look at every allocator per request (~2 us each here): at most 1,024
    # allocators and 5e7 request x allocator steps per scheduler (~100 s); caches are dicts of what they hold.
    allocators = option(allocators, "--allocators", min=1, max=1024, integer=True)
    cache = option(cache, "--cache", min=1, max=10**9, integer=True)
    n = option(n, "--n", min=1, max=10**7, integer=True, fix="ask for 1 to 10,000,000 requests.")
    seed = option(seed, "--seed", min=0, integer=True)
    if load is not None:
        load = option(load, "--load", min=0, max=1.5, fix="use an offered load in (0, 1.5), e.g. 0.7.")
    cluster = S.Cluster(allocators=allocators, cache_entries=cache)

    def check_work(count: int) -> None:
        if count * allocators > 5 * 10**7:
            raise InputError(f"{count:,} requests x {allocators} allocators.", field="--allocators",
                             fix="keep requests x allocators <= 50,000,000 (fewer requests or allocators).")

    if requests:
        arr, sigs = W.load_requests(requests)
        check_work(len(arr))
    else:
        check_work(n)
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
