"""``syslab dede``: DeDe's decouple-and-decompose allocation against the monolithic LP (HiGHS)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from syslab.core.cli_support import err, out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="DeDe: decouple-and-decompose resource allocation against the monolithic LP (HiGHS).",
                  no_args_is_help=True)


def _dede_report(name: str, dede: Any, mono: Any, extra: dict, as_json: bool) -> None:
    gap = 100 * (1 - dede.objective / mono.objective) if mono.objective else 0.0
    body = {"dede": {"objective": dede.objective, "time_s": dede.time_s, "iterations": dede.iterations,
                     "converged": dede.converged, "gap_pct": gap},
            "monolithic": {"objective": mono.objective, "time_s": mono.time_s, "solver": "HiGHS"}} | extra
    if as_json:
        print_json(body)
        return
    table = Table("solver", name, "time (s)", "note")
    table.add_row("DeDe (ADMM)", f"{dede.objective:.6g}", f"{dede.time_s:.2f}",
                  f"{dede.iterations} iterations, {round(gap, 3) + 0.0:.3f}% below the optimum")
    table.add_row("monolithic LP (HiGHS)", f"{mono.objective:.6g}", f"{mono.time_s:.2f}", "optimal")
    out.print(table)
    out.print(", ".join(f"{k}: {v}" for k, v in extra.items()))


def _check_workers(workers: int, backend: str) -> None:
    from syslab.cloud.dede.parallel import BACKENDS
    from syslab.core.inputs import one_of, option

    option(workers, "--workers", min=1, max=256, integer=True, fix="use 1 to 256 worker processes.")
    one_of(backend, BACKENDS, field="--backend")


@app.command("te")
def dede_te(
        topology: Annotated[Path, typer.Option(help="networkx node-link JSON with a capacity on every link")],
        demands: Annotated[Path | None, typer.Option(help='JSON list of {"source", "target", "demand"}; default: '
                                                          "seeded gravity-model demands")] = None,
        pairs: Annotated[int, typer.Option(help="gravity demands: the largest N pairs")] = 2000,
        paths: Annotated[int, typer.Option(help="edge-disjoint shortest paths per pair")] = 4,
        workers: Annotated[int, typer.Option(help="worker processes for DeDe's subproblems")] = 2,
        backend: Annotated[str, typer.Option(help="process (forked workers) or ray (Ray actors; needs "
                                                  "syslab[ray])")] = "process",
        seed: Annotated[int, typer.Option(help="seed for gravity demands")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Traffic engineering (maximise total flow) by DeDe and by the monolithic LP on HiGHS."""
    import numpy as np

    from syslab.cloud.dede import te as T
    from syslab.core.inputs import option

    _check_workers(workers, backend)
    # every pair costs a graph copy and --paths searches (~2 ms on Kdl): at most 100,000 pairs and 16 paths each
    pairs = option(pairs, "--pairs", min=1, max=100_000, integer=True)
    paths = option(paths, "--paths", min=1, max=16, integer=True)
    seed = option(seed, "--seed", min=0, integer=True)
    g = T.load_topology(topology)
    if demands is None and g.number_of_nodes() > 3000:          # gravity demands weigh all N^2 pairs first
        raise InputError(f"{g.number_of_nodes():,} nodes: gravity demands over all pairs would be "
                         f"{g.number_of_nodes() ** 2:,} pairs.", file=topology, field="--demands",
                         fix="pass your own --demands, or a topology of at most 3,000 nodes.")
    d = T.load_demands(demands, g) if demands else T.gravity_demands(g, np.random.default_rng(seed), pairs=pairs)
    with err.status("computing paths"):
        p = T.build(g, d, k=paths)
    if not len(p.demand):
        raise InputError("no demand pair is connected by a path.", file=demands or topology, field="demands",
                         fix="give demands between nodes the topology connects.")
    with err.status("solving: DeDe, then HiGHS"):
        dede = T.solve_admm(p, workers=workers, backend=backend)
        mono = T.solve_highs(p)
    _dede_report("total flow", dede, mono, {"pairs": len(p.demand), "unroutable_pairs": len(d) - len(p.demand),
                                             "paths": len(p.path_commodity), "workers": workers,
                                             "backend": backend}, as_json)


@app.command("cluster")
def dede_cluster(
        throughputs: Annotated[Path, typer.Option(help=".npy throughputs [worker type, job type, log2 GPUs]")],
        spec: Annotated[Path | None, typer.Option(help='GPUs per worker type {"worker_0": 8, ...}; default: '
                                                       "cluster_spec.json beside the throughputs")] = None,
        jobs: Annotated[int, typer.Option(help="jobs to schedule (Gavel-style, seeded)")] = 500,
        workers: Annotated[int, typer.Option(help="worker processes for DeDe's subproblems")] = 2,
        backend: Annotated[str, typer.Option(help="process (forked workers) or ray (Ray actors; needs "
                                                  "syslab[ray])")] = "process",
        seed: Annotated[int, typer.Option(help="seed for the jobs")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Cluster scheduling with max-min fairness by DeDe and by the monolithic LP on HiGHS."""
    import numpy as np

    from syslab.cloud.dede import cluster as C
    from syslab.core.inputs import option

    _check_workers(workers, backend)
    # one LP column per (job, worker type) and an ADMM subproblem per job: at most 100,000 jobs
    jobs = option(jobs, "--jobs", min=1, max=100_000, integer=True)
    seed = option(seed, "--seed", min=0, integer=True)
    thr = C.load_throughputs(throughputs)
    spec = spec or C.spec_beside(throughputs)
    if not spec.exists():
        raise InputError("no cluster spec.", file=spec, field="--spec",
                         fix='pass --spec with {"worker_0": <GPUs>, ...}, one per worker type.')
    gpus = C.load_spec(spec, thr.shape[0])
    # make_jobs draws (job type, GPUs per job) until some worker type can run the job: one must exist
    scales = [s for s in C.SCALE_CHOICES if int(np.log2(s)) < thr.shape[2]]
    if not any((thr[:, :, int(np.log2(s))][s <= gpus] > 0).any() for s in scales):
        raise InputError("no job type runs on any worker type with enough GPUs.", file=throughputs, field="values",
                         fix="check the throughputs against the GPU counts in --spec.")
    p = C.make_jobs(thr, gpus, jobs, np.random.default_rng(seed))
    with err.status("solving: DeDe, then HiGHS"):
        dede = C.solve_admm(p, workers=workers, eps=1e-4, max_iter=4000, backend=backend)
        mono = C.solve_highs(p)
    _dede_report("fairness level", dede, mono, {"jobs": jobs, "worker_types": thr.shape[0], "workers": workers,
                                                "backend": backend}, as_json)
