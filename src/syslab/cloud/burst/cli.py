"""``syslab burst``: PageRank as a burst of packed workers and in FaaS mode, over a real Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import err, out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="Burst Computing: PageRank as a burst of packed workers vs FaaS, over a real Redis.",
                  no_args_is_help=True)


@app.command("pagerank")
def burst_pagerank(
        workers: Annotated[int, typer.Option(help="workers in the burst (a power of two)")] = 16,
        group_size: Annotated[int, typer.Option(help="workers per pack (a power of two); FaaS mode uses 1")] = 8,
        graph: Annotated[Path | None, typer.Option(help="edge list, one 'source target' per line; default: a "
                                                        "seeded power-law graph")] = None,
        nodes: Annotated[int, typer.Option(help="synthetic graph: nodes")] = 200_000,
        edges: Annotated[int, typer.Option(help="synthetic graph: edges")] = 2_000_000,
        iterations: Annotated[int, typer.Option(help="PageRank iterations")] = 10,
        rtt_ms: Annotated[float, typer.Option(help="emulated round trip to the broker (ms)")] = 1.0,
        bandwidth_mbs: Annotated[float, typer.Option(help="emulated bandwidth per connection (MB/s)")] = 100.0,
        seed: Annotated[int, typer.Option(help="seed of the synthetic graph")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Run PageRank twice on a real Redis broker: as a burst (packs of --group-size) and in FaaS mode (every
    worker alone); remote bytes are counted by Redis, ranks checked against numpy."""
    import numpy as np

    from syslab.cloud.burst import pagerank as PR
    from syslab.cloud.burst.comm import Network, check_burst
    from syslab.cloud.burst.job import run_pagerank
    from syslab.cloud.burst.resp import RedisServer
    from syslab.core.inputs import option

    # Every worker is a real process holding a copy of the rank vector (8 bytes a node): at most 256 workers,
    # 10**7 nodes and 2**28 node copies in all (2 GB); 5e7 synthetic edges (800 MB). The network is emulated in
    # real time: a round trip of at most 1 s and at least 1 MB/s per connection, so no run waits for hours.
    workers = option(workers, "--workers", min=1, max=256, integer=True)
    group_size = option(group_size, "--group-size", min=1, max=256, integer=True)
    check_burst(workers, group_size)
    nodes = option(nodes, "--nodes", min=2, max=10**7, integer=True)
    edges = option(edges, "--edges", min=1, max=5 * 10**7, integer=True)
    iterations = option(iterations, "--iterations", min=1, max=1000, integer=True)
    rtt_ms = option(rtt_ms, "--rtt-ms", min=0, max=1000)
    bandwidth_mbs = option(bandwidth_mbs, "--bandwidth-mbs", min=1, max=1e9)         # 1e9: unthrottled
    seed = option(seed, "--seed", min=0, integer=True)
    if graph:
        src, dst, nodes = PR.load_edges(graph)
    else:
        src, dst = PR.power_law_graph(nodes, edges, np.random.default_rng(seed))
    if nodes * workers > 2**28:
        raise InputError(f"{nodes:,} nodes x {workers} workers: each worker holds the rank vector.",
                         file=graph, field="--workers", fix="use fewer workers, or a smaller graph.")
    net = Network(rtt_ms * 1e-3, bandwidth_mbs * 1e6)
    with err.status("starting redis-server and running the burst, then FaaS mode"), RedisServer() as server:
        burst = run_pagerank(server, src, dst, nodes, workers, group_size, iterations, network=net)
        faas = run_pagerank(server, src, dst, nodes, workers, 1, iterations, network=net)
    ref = PR.reference(src, dst, nodes, iterations)
    diff = float(max(np.abs(burst.ranks - ref).max(), np.abs(faas.ranks - ref).max()))
    if as_json:
        print_json({"burst": burst.summary(), "faas": faas.summary(), "max_rank_diff_vs_numpy": diff,
                    "nodes": nodes, "edges": len(src), "iterations": iterations})
        return
    table = Table("mode", "job time (s)", "start-up (s)", "remote MB", "remote messages")
    for name, r in ((f"burst (packs of {group_size})", burst), ("FaaS", faas)):
        table.add_row(name, f"{r.time_s:.2f}", f"{r.startup_s:.2f}", f"{r.remote_bytes / 1e6:.1f}",
                      str(r.remote_messages))
    out.print(table)
    out.print(f"{nodes} nodes, {len(src)} edges; ranks differ from numpy's by at most {diff:.1e}; network "
              f"emulated at {rtt_ms:g} ms RTT, {bandwidth_mbs:g} MB/s")
