"""The ``syslab`` command line: list, show, run, reproduce, data, and each system's own tool.

Errors a user can cause print one clear line (file, field, fix) and exit with status 2, no traceback.
"""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from syslab import catalog
from syslab.core.data import DatasetMissing
from syslab.core.errors import InputError

app = typer.Typer(help="syslab: OSDI'25 / ATC'25 ML, GPU and cloud systems, runnable and checkable here.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Datasets: list, locate, download (with checksum verification).", no_args_is_help=True)
stragglers_app = typer.Typer(help="Stragglers what-if analysis on your own training trace.", no_args_is_help=True)
wlb_app = typer.Typer(help="WLB-LLM packing on your own document lengths.", no_args_is_help=True)
blitz_app = typer.Typer(help="BlitzScale autoscaling replay on your own trace (Azure CSV format).",
                        no_args_is_help=True)
kvcache_app = typer.Typer(help="Prefix KV-cache replay and characterisation of a Qwen-Bailian-schema trace.",
                          no_args_is_help=True)
llmstation_app = typer.Typer(help="LLMStation: co-serve and fine-tune a tiny model on your own request trace (torch).",
                             no_args_is_help=True)
traincheck_app = typer.Typer(help="TrainCheck: learn invariants from clean training runs, catch silent errors in new "
                                  "ones (torch). Put the training command after --.", no_args_is_help=True)
app.add_typer(traincheck_app, name="traincheck")
greyhound_app = typer.Typer(help="GreyHound: fail-slow detection on your iteration times or collective-call log.",
                            no_args_is_help=True)
app.add_typer(greyhound_app, name="greyhound")
crosspipe_app = typer.Typer(help="CrossPipe: pipeline schedules across datacenters under latency and bandwidth cost.",
                            no_args_is_help=True)
app.add_typer(crosspipe_app, name="crosspipe")
flexpipe_app = typer.Typer(help="FlexPipe: adaptive pipeline mappings on your own sequence lengths.",
                           no_args_is_help=True)
app.add_typer(flexpipe_app, name="flexpipe")
afaas_app = typer.Typer(help="AFaaS (Fork in the Road): measure serverless cold starts on this machine.",
                        no_args_is_help=True)
app.add_typer(afaas_app, name="afaas")
dede_app = typer.Typer(help="DeDe: decouple-and-decompose resource allocation against the monolithic LP (HiGHS).",
                       no_args_is_help=True)
app.add_typer(dede_app, name="dede")
kamino_app = typer.Typer(help="Kamino: cache-aware scheduling of allocation requests, in a simulation.",
                         no_args_is_help=True)
app.add_typer(kamino_app, name="kamino")
burst_app = typer.Typer(help="Burst Computing: PageRank as a burst of packed workers vs FaaS, over a real Redis.",
                        no_args_is_help=True)
app.add_typer(burst_app, name="burst")
poby_app = typer.Typer(help="Poby: provision container image layers containerd's way and Poby's, for real.",
                       no_args_is_help=True)
app.add_typer(poby_app, name="poby")
app.add_typer(data_app, name="data")
app.add_typer(llmstation_app, name="llmstation")
app.add_typer(stragglers_app, name="stragglers")
app.add_typer(wlb_app, name="wlb")
app.add_typer(kvcache_app, name="kvcache")
app.add_typer(blitz_app, name="blitzscale")

out = Console()
err = Console(stderr=True)


def _print_json(obj: Any) -> None:
    """Strict JSON on stdout: NaN and infinities become null, numpy values plain numbers."""
    from syslab.core.claims import jsonable

    sys.stdout.write(json.dumps(jsonable(obj), indent=2, default=str, allow_nan=False) + "\n")


# ---------------------------------------------------------------------------------------------------------
# list / show / run / reproduce
# ---------------------------------------------------------------------------------------------------------

@app.command("list")
def list_systems(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List the systems syslab carries."""
    if as_json:
        _print_json([e.to_dict() for e in catalog.CATALOG])
        return
    table = Table("key", "system", "venue", "domain", "fidelity", "available")
    for e in catalog.CATALOG:
        table.add_row(e.key, e.name, e.venue, e.domain, e.fidelity, "yes" if e.available else f"no: {e.install_hint()}")
    out.print(table)


@app.command()
def show(key: str) -> None:
    """Show a system: paper, what is real, what is modelled, its claims."""
    entry = catalog.get(key)
    system = entry.load()
    out.print(f"[bold]{system.name}[/bold] ({system.key}) — {system.paper}, {system.venue}")
    out.print(f"domain {system.domain} · fidelity [bold]{system.fidelity.value}[/bold]")
    out.print(f"[green]real:[/green] {system.real}\n[yellow]modelled:[/yellow] {system.modelled}")
    table = Table("claim", "statement", "paper", "expect")
    for c in system.claims:
        table.add_row(c.id, c.statement, "—" if c.paper is None else f"{c.paper}{c.unit}", c.expect.describe())
    out.print(table)


def _findings_table(result: dict[str, Any]) -> Table:
    from syslab.core.report import fmt

    title = f"{result['name']} [{result['fidelity']}]" + (" — negative control" if result.get("control") else "")
    table = Table("kind", "finding", "paper", "measured", "expected", "holds", title=title)
    for f in result["findings"]:
        measured = fmt(f["measured"]) + ("" if f["measured"] is None else f" {f['unit']}")
        table.add_row(f.get("kind", "claim"), f["statement"], fmt(f["paper"]), measured, f["expect"],
                      "[green]yes[/green]" if f["holds"] else "[red]no[/red]")
    return table


@app.command()
def run(key: str,
        full: Annotated[bool, typer.Option("--full", help="paper scale instead of quick")] = False,
        control: Annotated[bool, typer.Option("--control", help="negative control: the mechanism replaced by the "
                                              "paper's baseline; no claim should hold")] = False,
        seed: Annotated[int, typer.Option(help="random seed")] = 0,
        out_dir: Annotated[Path | None, typer.Option("--out", help="report directory (default: report, or "
                                                     "report-control with --control)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False) -> None:
    """Run one system's reproduction and add it to the report (other systems already there are kept)."""
    from syslab.core.claims import headline
    from syslab.core.report import merge_into_report, write_report

    entry = catalog.get(key)
    if not entry.available:
        raise InputError(f"{key} needs {', '.join(entry.missing())}, which is not installed.", field="KEY",
                         fix=f"{entry.install_hint()}.")
    out_dir = out_dir or Path("report-control" if control else "report")
    label = f"{key} (control)" if control else key
    with err.status(f"running {label}") as status:
        result = catalog.run_system(key, "full" if full else "quick", seed, out_dir, control=control,
                                    progress=lambda msg: status.update(f"{label}: {msg}"))
    write_report(merge_into_report(result, out_dir), out_dir, result["scale"], control=control)
    if as_json:
        _print_json({k: v for k, v in result.items() if k != "traceback"})
    else:
        if result["status"] != "ok":
            err.print(f"[red]{key} {result['status']}:[/red] {result['error']}")
        else:
            out.print(_findings_table(result))
            out.print(headline(result["findings"]) + (" (negative control)" if control else ""))
        out.print(f"report: {out_dir / 'index.html'}")
    if result["status"] == "failed":
        raise typer.Exit(1)


@app.command()
def reproduce(keys: Annotated[list[str] | None, typer.Argument(help="systems to run (default: all)")] = None,
              domain: Annotated[str | None, typer.Option(help="only this domain")] = None,
              full: Annotated[bool, typer.Option("--full", help="paper scale instead of quick")] = False,
              control: Annotated[bool, typer.Option("--control", help="negative control: every mechanism replaced "
                                                    "by the paper's baseline; no claim should hold")] = False,
              jobs: Annotated[int, typer.Option(help="parallel processes (default: CPU count)")] = 0,
              ray: Annotated[str | None, typer.Option("--ray", help="fan out over this Ray cluster")] = None,
              seed: Annotated[int, typer.Option(help="random seed")] = 0,
              out_dir: Annotated[Path | None, typer.Option("--out", help="report directory (default: report, or "
                                                           "report-control with --control)")] = None) -> None:
    """Run every reproduction (or the chosen ones) and write one report."""
    from syslab.core.claims import headline
    from syslab.core.report import write_report

    out_dir = out_dir or Path("report-control" if control else "report")
    entries = catalog.select(keys, domain)
    if not entries:
        raise InputError("no system matches.", field="--domain", fix="see `syslab list` for keys and domains.")
    if jobs < 0:
        raise InputError("must be >= 0.", field="--jobs", fix="use --jobs 0 for one process per CPU.")
    scale = "full" if full else "quick"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [{"key": e.key, "scale": scale, "seed": seed, "out_dir": str(out_dir), "control": control}
            for e in entries]
    results: list[dict[str, Any]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(f"reproducing ({scale}{', control' if control else ''})", total=len(args))

        def done(r: dict[str, Any]) -> None:
            results.append(r)
            mark = {"ok": "[green]ok[/green]", "failed": "[red]failed[/red]"}.get(r["status"], r["status"])
            progress.console.print(f"{r['system']}: {mark} in {r.get('duration_s', 0):.1f}s")
            progress.advance(task)

        if ray:
            for r in _reproduce_on_ray(ray, args):
                for rel, blob in r.pop("figure_bytes", {}).items():
                    (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                    (out_dir / rel).write_bytes(blob)
                done(r)
        else:
            # systems that time themselves or run real processes go one at a time, after the others
            alone = {e.key for e in entries if e.exclusive}
            shared = [a for a in args if a["key"] not in alone]
            workers = min(jobs or os.cpu_count() or 1, max(len(shared), 1))
            if workers == 1:
                for a in shared:
                    done(catalog.run_system(**a))
            else:
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    futures = [pool.submit(catalog.run_system, **a) for a in shared]
                    for fut in as_completed(futures):
                        done(fut.result())
            for a in args:
                if a["key"] in alone:
                    done(catalog.run_system(**a))
    order = {e.key: i for i, e in enumerate(entries)}
    results.sort(key=lambda r: order[r["system"]])
    html = write_report(results, out_dir, scale, control=control)
    failed = [r["system"] for r in results if r["status"] == "failed"]
    line = headline([f for r in results for f in r["findings"]])
    out.print(f"{line}{' (negative control)' if control else ''}; report: {html}")
    if failed:
        err.print(f"[red]failed:[/red] {', '.join(failed)}")


def _reproduce_on_ray(address: str, args: list[dict[str, Any]]) -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("ray is not installed.", field="--ray", fix="pip install 'syslab[ray]'.") from None
    # Workers find datasets where the driver does (paths must exist on the workers too).
    env = {k: os.environ[k] for k in ("SYSLAB_DATA", "SYSLAB_CACHE") if k in os.environ}
    ray.init(address=address, ignore_reinit_error=True, runtime_env={"env_vars": env} if env else None)
    remote = ray.remote(catalog.run_system)
    pending = [remote.remote(**a, embed_figures=True) for a in args]
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        yield ray.get(ready[0])


# ---------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------

@data_app.command("list")
def data_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List registered datasets and whether they are present here."""
    from syslab.core.data import DATASETS, DataStore

    store = DataStore()
    rows = [{"name": d.name, "present": store.has(d.name), "licence": d.licence, "source": d.source,
             "files": list(d.files), "description": d.description} for d in DATASETS.values()]
    if as_json:
        _print_json(rows)
        return
    table = Table("dataset", "present", "licence", "source", "description")
    for r in rows:
        table.add_row(r["name"], "yes" if r["present"] else "no", r["licence"], r["source"], r["description"])
    out.print(table)


@data_app.command("path")
def data_path(name: str, file: Annotated[str | None, typer.Argument()] = None) -> None:
    """Print where a dataset (or one of its files) is found."""
    from syslab.core.data import DATASETS, DataStore

    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}.", field="NAME", fix=f"use one of: {', '.join(DATASETS)}.")
    files = [file] if file else list(DATASETS[name].files)
    for f in files:
        if f not in DATASETS[name].files:
            raise InputError(f"dataset {name} has no file {f!r}.", field="FILE",
                             fix=f"use one of: {', '.join(DATASETS[name].files)}.")
        out.print(str(DataStore().path(name, f)))


@data_app.command("fetch")
def data_fetch(names: Annotated[list[str], typer.Argument(help="datasets to download")],
               dest: Annotated[Path | None, typer.Option(help="folder (default: the cache)")] = None,
               base_url: Annotated[str | None, typer.Option(help="mirror serving <dataset>/<file>")] = None) -> None:
    """Download datasets and verify their sha256."""
    from syslab.core.data import DATASETS, fetch

    for name in names:
        if name not in DATASETS:
            raise InputError(f"unknown dataset {name!r}.", field="NAME", fix=f"use one of: {', '.join(DATASETS)}.")
    for name in names:
        paths = fetch(name, dest=dest, base_url=base_url, progress=lambda m: err.print(m))
        out.print(f"{name}: {len(paths)} file(s) verified in {paths[0].parent}")


# ---------------------------------------------------------------------------------------------------------
# Each system's own tool
# ---------------------------------------------------------------------------------------------------------

@stragglers_app.command("analyze")
def stragglers_analyze(
        trace: Annotated[Path, typer.Option(help="trace parquet (one row per op)")],
        meta: Annotated[Path, typer.Option(help="job metadata YAML (dp_size, pp_size, ...)")],
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        figure: Annotated[Path | None, typer.Option(help="heatmap PNG (default: ./<trace name>.heatmap.png)")] = None,
        timeline: Annotated[Path | None, typer.Option(help="write a Perfetto/Chrome trace of one step here")] = None,
        step: Annotated[int | None, typer.Option(help="step for --timeline (default: the most slowed)")] = None,
) -> None:
    """What-if analysis of a training trace: slowdown S, attributions, M_W, M_S."""
    from syslab.training import stragglers

    a = stragglers.analyze_files(trace, meta)
    if timeline is not None:
        try:
            stragglers.write_timeline(stragglers.load_trace(trace), stragglers.load_meta(meta), timeline, step)
        except OSError as e:
            raise InputError(f"cannot write the timeline ({e.strerror}).", file=timeline, field="--timeline",
                             fix="pass --timeline PATH in a writable folder.") from None
        err.print(f"timeline (recorded / no launch delays / ideal): {timeline} — open it in ui.perfetto.dev")
    if as_json:
        _print_json(a.to_dict())
        return
    out.print(f"[bold]{a.meta.trial_name}[/bold]: straggler slowdown S = {a.slowdown:.3f} "
              f"(launch-delay slowdown {a.launch_slowdown:.3f}; {len(a.steps)} steps)")
    out.print(f"M_S (last stage) = {a.m_s.rem:.3f}" + (f"   M_W (top 3% workers) = {a.m_w.rem:.3f}" if a.m_w else ""))
    out.print(f"root cause: [bold]{stragglers.name_root_cause(a)}[/bold]")
    if a.by_optype is None:
        out.print("S < 1.03: no attribution (the job runs close to ideal).")
        return
    for title, d in (("op type", a.by_optype), ("PP stage", a.by_stage), ("DP rank", a.by_dp_rank)):
        table = Table(title, "slowdown if only it straggles", title=f"attribution by {title}")
        for k, v in list(d.items())[:10]:
            table.add_row(str(k), f"{v:.4f}")
        out.print(table)
    fig_path = figure or Path(f"{trace.stem}.heatmap.png")
    try:
        _heatmap(a, fig_path)
    except OSError as e:
        raise InputError(f"cannot write the heatmap ({e.strerror}).", file=fig_path, field="--figure",
                         fix="pass --figure PATH in a writable folder.") from None
    out.print(f"heatmap: {fig_path}")


def _heatmap(a: Any, path: Path) -> None:
    from syslab.core.run import pyplot
    from syslab.training.stragglers import plot_heatmap

    plt = pyplot()
    grid = a.heatmap()
    fig, ax = plt.subplots(figsize=(max(5, grid.shape[1] / 2.5), max(2.5, grid.shape[0] / 1.5 + 1)))
    fig.colorbar(plot_heatmap(a, ax, f"{a.meta.trial_name}: min(S_dp, S_stage)"), ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@wlb_app.command("pack")
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
        _print_json(report)
        return
    table = Table("packing", "imbalance degree", "mean per-token delay (iterations)", "ms per batch",
                  title=f"{report['documents']} documents in {report['iterations']} iterations, context {context}, "
                        f"{microbatches} micro-batches; WLB thresholds {report['thresholds']}")
    for name in ("original", "fixed_greedy", "wlb"):
        r = report[name]
        table.add_row(name, f"{r['imbalance']:.3f}", f"{r.get('mean_delay_iters', 0.0):.2f}",
                      f"{r['ms_per_batch']:.1f}")
    out.print(table)


@blitz_app.command("replay")
def blitzscale_replay(trace: Annotated[Path, typer.Option(help="CSV: TIMESTAMP,ContextTokens,GeneratedTokens")],
                      time_scale: Annotated[float, typer.Option(help="compress arrivals by this factor")] = 1.0,
                      as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """P99 TTFT and GPU-seconds of BlitzScale, ServerlessLLM-style loading and static provisioning."""
    from syslab.core.workloads import load_azure_llm
    from syslab.core.workloads import time_scale as compress
    from syslab.serving import blitzscale

    if time_scale <= 0:
        raise InputError(f"must be positive, got {time_scale}.", field="--time-scale", fix="e.g. --time-scale 4.")
    df = compress(load_azure_llm(trace), time_scale)
    with err.status(f"replaying {len(df)} requests under four policies"):
        policies = blitzscale.compare(df)
    if as_json:
        _print_json(policies)
        return
    table = Table("policy", "P99 TTFT (s)", "SLO attainment", "GPU-seconds", "instances", "mean load (s)",
                  title=f"{len(df)} requests; SLO: P99 TTFT <= {policies['static']['slo_p99_ttft_s']:.2f}s")
    for name, v in policies.items():
        table.add_row(name, f"{v['p99_ttft_s']:.3f}", f"{v['slo_attainment']:.3f}", f"{v['gpu_seconds']:.0f}",
                      str(v["instances"]), f"{v['mean_load_s']:.2f}")
    out.print(table)


@kvcache_app.command("replay")
def kvcache_replay(trace: Annotated[Path, typer.Option(help="JSONL trace in the Qwen-Bailian schema")],
                   capacity_blocks: Annotated[int, typer.Option(help="cache capacity in 16-token blocks")],
                   policy: Annotated[str, typer.Option(help="lru | lfu | wa | belady")] = "lru",
                   fit_fraction: Annotated[float, typer.Option(help="share of the trace (by time) used to fit WA "
                                                               "and warm the cache; the rest is scored")] = 0.5,
                   as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Replay a trace through a prefix cache and print the block hit ratio."""
    from syslab.serving import kvcache_wild as kv

    if not 0.0 <= fit_fraction < 1.0:
        raise InputError(f"must be in [0, 1), got {fit_fraction}.", field="--fit-fraction", fix="e.g. 0.5.")
    if policy not in kv.POLICIES:
        raise InputError(f"unknown policy {policy!r}.", field="--policy", fix=f"use one of {', '.join(kv.POLICIES)}.")
    tr = kv.load_trace(trace)
    cut = float(tr.timestamp[0] + fit_fraction * (tr.timestamp[-1] - tr.timestamp[0]))
    profile, evaluate = tr.split(cut) if fit_fraction > 0 else (None, tr)
    if policy == "wa" and (profile is None or len(profile) == 0):
        raise InputError("WA needs a profiling part of the trace.", field="--fit-fraction", fix="use e.g. 0.5.")
    wa = kv.fit_wa(profile) if policy == "wa" else None
    r = kv.replay(evaluate, capacity_blocks, policy, wa, warmup=profile if profile is not None and len(profile)
                  else None)
    d = {**r.to_dict(), "scored_from_s": cut if fit_fraction > 0 else float(tr.timestamp[0])}
    if as_json:
        _print_json(d)
        return
    out.print(f"{policy}: block hit ratio {r.hit_ratio:.4f} over {len(evaluate)} requests "
              f"(capacity {capacity_blocks} blocks; first {fit_fraction:.0%} of the trace used to warm up"
              f"{' and fit WA' if policy == 'wa' else ''})")


@kvcache_app.command("characterize")
def kvcache_characterize(trace: Annotated[Path, typer.Option(help="JSONL trace in the Qwen-Bailian schema")],
                         as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Ideal hit ratio, reuse skew, single- vs multi-turn hits and reuse times per category."""
    from syslab.serving import kvcache_wild as kv

    c = kv.characterize(kv.load_trace(trace))
    if as_json:
        _print_json(c)
        return
    for k, v in c.items():
        if k != "reuse_time_by_category":
            out.print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    table = Table("category", "reuses", "median reuse time (s)", "80th percentile (s)")
    for cat, r in c["reuse_time_by_category"].items():
        table.add_row(cat, str(r["reuses"]), f"{r['median_s']:.1f}", f"{r['p80_s']:.1f}")
    out.print(table)


@llmstation_app.command("compare")
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
    import importlib.util

    from syslab.core.workloads import load_azure_llm
    from syslab.core.workloads import time_scale as compress

    if importlib.util.find_spec("torch") is None:
        raise InputError("LLMStation runs a real model and needs torch.", field="torch",
                         fix="pip install 'syslab[torch]'.")
    for name, value in (("--max-requests", max_requests), ("--max-prompt", max_prompt),
                        ("--max-output", max_output), ("--repeats", repeats)):
        if value < 1:
            raise InputError(f"must be at least 1, got {value}.", field=name, fix=f"e.g. {name} 32.")
    if time_scale <= 0:
        raise InputError(f"must be positive, got {time_scale}.", field="--time-scale", fix="e.g. --time-scale 4.")
    df = compress(load_azure_llm(trace), time_scale)
    from syslab.serving.llmstation.reproduce import compare_trace

    with err.status("serving") as status:
        cmp, clipped = compare_trace(df, max_requests, max_prompt, max_output, repeats=repeats,
                                     progress=lambda m: status.update(m))
    rows = {f"{r.policy} ({r.knob})": {**r.summary(), "meets_slo": cmp.slo.met(r)} for r in cmp.runs}
    if as_json:
        _print_json({"slo": {"p99_ttft_s": cmp.slo.ttft_s, "p99_tpot_s": cmp.slo.tpot_s},
                     "clipped_requests": clipped, "policies": rows})
        return
    table = Table("policy", "knob", "fine-tuning samples/s", "P99 TTFT (ms)", "P99 TPOT (ms)", "meets SLO",
                  title=f"{min(len(df), max_requests)} requests ({clipped} clipped); SLO: P99 TTFT <= "
                        f"{cmp.slo.ttft_s * 1e3:.0f} ms, P99 TPOT <= {cmp.slo.tpot_s * 1e3:.1f} ms")
    for r in cmp.runs:
        table.add_row(r.policy, r.knob, f"{r.ft_throughput:.2f}", f"{r.p99_ttft() * 1e3:.0f}",
                      f"{r.p99_tpot() * 1e3:.1f}", "yes" if cmp.slo.met(r) else "no")
    out.print(table)


def _need_torch() -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise InputError("this tool traces PyTorch programs and needs torch.", field="torch",
                         fix="pip install 'syslab[torch]'.")


CommandArg = Annotated[list[str] | None, typer.Argument(help="the training command, after --", show_default=False)]


@traincheck_app.command("collect")
def traincheck_collect(out_dir: Annotated[Path, typer.Option("--out", help="directory for the trace files")],
                       command: CommandArg = None) -> None:
    """Run a training command traced (unedited) and keep its per-process traces."""
    from syslab.training.traincheck.collect import collect

    _need_torch()
    with err.status("running the command traced"):
        files = collect(command or [], out_dir)
    out.print(f"{len(files)} trace file(s) in {out_dir}")


@traincheck_app.command("learn")
def traincheck_learn(out_file: Annotated[Path, typer.Option("--out", help="invariants file to write (JSON)")],
                     trace: Annotated[list[Path] | None, typer.Option(help="a trace directory of another clean "
                                                                      "run (repeatable)")] = None,
                     api_names: Annotated[list[str] | None, typer.Option("--api", help="also trace this API, e.g. "
                                                                         "torch.nn.functional.softmax "
                                                                         "(repeatable)")] = None,
                     command: CommandArg = None) -> None:
    """Infer invariants from clean runs: the command after -- (run traced) and/or --trace directories."""
    from syslab.training.traincheck import api

    _need_torch()
    with err.status("tracing and inferring"):
        invariants = api.learn([command] if command else [], trace or [], out_file, apis=api_names or [])
    out.print(f"{len(invariants)} invariants -> {out_file}")


@traincheck_app.command("check")
def traincheck_check(invariants: Annotated[Path, typer.Option(help="invariants file from learn")],
                     trace: Annotated[Path | None, typer.Option(help="check this trace directory instead of "
                                                                "running a command")] = None,
                     every: Annotated[int, typer.Option(help="snapshot state only every N-th iteration (less "
                                                           "overhead; state violations may surface up to N-1 "
                                                           "iterations late)")] = 1,
                     as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
                     command: CommandArg = None) -> None:
    """Check a run against invariants: exit 1 and print the violations if any, exit 0 if clean."""
    from syslab.training.traincheck import api
    from syslab.training.traincheck import relations as R

    _need_torch()
    if every < 1:
        raise InputError(f"must be at least 1, got {every}.", field="--every", fix="e.g. --every 10.")
    invs = R.load(invariants)
    with err.status("tracing and checking"):
        violations = api.check(invariants, command or None, trace, every=every)
    if as_json:
        _print_json({"invariants": len(invs), "violations": [v.to_dict() for v in violations]})
    elif violations:
        table = Table("iteration", "rank", "invariant", "evidence",
                      title=f"{len(violations)} of {len(invs)} invariants violated (earliest first)")
        for v in violations:
            table.add_row(str(v.iter), str(v.rank), v.invariant.text, v.evidence)
        out.print(table)
    else:
        out.print(f"clean: no violation of {len(invs)} invariants")
    if violations:
        raise typer.Exit(1)


@traincheck_app.command("show")
def traincheck_show(invariants: Annotated[Path, typer.Argument(help="invariants file")],
                    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List the invariants in a file, with their preconditions and support."""
    from syslab.training.traincheck import relations as R

    invs = R.load(invariants)
    if as_json:
        _print_json([i.to_dict() for i in invs])
        return
    table = Table("template", "invariant", "positive examples", title=f"{len(invs)} invariants in {invariants}")
    for i in invs:
        table.add_row(i.key[0], i.text, str(i.positives))
    out.print(table)


def _read_csv_columns(path: Path, columns: tuple[str, ...]):
    import pandas as pd

    if not path.is_file():
        raise InputError("file not found.", file=path, fix=f"pass a CSV with column(s) {', '.join(columns)}.")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"not a readable CSV ({e.__class__.__name__}).", file=path,
                         fix=f"write a CSV with a header row naming {', '.join(columns)}.") from e
    for c in columns:
        if c not in df.columns:
            raise InputError("missing column.", file=path, field=c,
                             fix=f"add a column {c!r} (columns found: {', '.join(map(str, df.columns))}).")
        if not pd.api.types.is_numeric_dtype(df[c]) or df[c].isna().any():
            row = int(pd.to_numeric(df[c], errors="coerce").isna().to_numpy().argmax()) + 2
            raise InputError(f"row {row} is not a number.", file=path, field=c, fix="give one number per row.")
    return df


@greyhound_app.command("detect")
def greyhound_detect(iter_times: Annotated[Path, typer.Option(help="CSV with one iteration time per row, "
                                                              "column iter_time_s")],
                     as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Verified fail-slow change points in a series of iteration times (BOCD + the paper's checks)."""
    from syslab.training.greyhound.detect import detect

    df = _read_csv_columns(iter_times, ("iter_time_s",))
    try:
        cps = detect(df["iter_time_s"].to_numpy())[0]
    except InputError as e:
        raise InputError(e.problem, file=iter_times, field=e.field, fix=e.fix) from None
    rows = [{"index": c.index, "detected_at": c.detected_at, "before_s": c.before, "after_s": c.after} for c in cps]
    if as_json:
        _print_json({"change_points": rows})
        return
    table = Table("starts at iteration", "detected at", "before (s)", "after (s)", "change",
                  title=f"{len(cps)} verified change point(s) in {len(df)} iterations")
    for c in cps:
        table.add_row(str(c.index), str(c.detected_at), f"{c.before:.4f}", f"{c.after:.4f}",
                      f"{c.after / c.before - 1:+.0%}")
    out.print(table)


@greyhound_app.command("period")
def greyhound_period(calls: Annotated[Path, typer.Option(help="CSV of one rank's collective calls in order: "
                                                         "columns call_id, timestamp_s")],
                     as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """The iteration period of a collective-call log (ACF + exact-repeat check) and the iteration times."""
    import numpy as np

    from syslab.training.greyhound.detect import iteration_times

    df = _read_csv_columns(calls, ("call_id", "timestamp_s"))
    try:
        period, its = iteration_times(df["call_id"].to_numpy(), df["timestamp_s"].to_numpy())
    except InputError as e:
        raise InputError(e.problem, file=calls, field=e.field, fix=e.fix) from None
    if as_json:
        _print_json({"period": period, "iter_times_s": its.tolist()})
        return
    out.print(f"period: {period} calls per iteration; {len(its)} iterations, median "
              f"{float(np.median(its)):.4f} s (min {its.min():.4f}, max {its.max():.4f})")


@crosspipe_app.command("compare")
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
    from syslab.training import pipeline as P
    from syslab.training.crosspipe import milp as M
    from syslab.training.crosspipe import schedule as S

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
        _print_json({"delay": {"latency": latency, "bandwidth": bandwidth}, "memory_budget": budget,
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


@flexpipe_app.command("simulate")
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

    from syslab.core.workloads import load_lengths
    from syslab.training.flexpipe import model as FM
    from syslab.training.flexpipe import plan as FP

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
    statics = {"static (fewest stages)": FP.static(job, batches),
               "static (best fixed)": FP.static(job, batches, fewest_stages=False),
               "static + recompute": FP.static(job, batches, recompute=True)}
    start = next((mp for _, mp in statics.values() if mp is not None), None)
    if start is None:
        raise InputError(f"no mapping of the model fits the longest mini-batch (longest sequence "
                         f"{max(int(b.max()) for b in batches):,} tokens), even with recomputation.", file=lengths,
                         field="lengths", fix="cap or split the longest sequences.")
    flex = FP.flexpipe(job, batches, start, horizon=horizon)
    rows = {name: {"mapping": mp, "tokens_per_s": tr.throughput if tr.steps else None}
            for name, (tr, mp) in statics.items()}
    rows["FlexPipe"] = {"tokens_per_s": flex.throughput, "switches": flex.switches,
                        "memory_optimised": flex.count("memopt"),
                        "max_decision_ms": 1000 * max(st.decide_s for st in flex.steps)}
    if as_json:
        _print_json({"iterations": iterations, "batch": batch, "policies": rows})
        return
    table = Table("policy", "mapping ((layers, GPUs) per stage)", "tokens/s", "note",
                  title=f"{iterations} iterations of {batch} sequences drawn from {lengths.name}")
    for name, r in rows.items():
        note = (f"{r['switches']} switches, {r['memory_optimised']} memory-optimised, decisions <= "
                f"{r['max_decision_ms']:.0f} ms") if name == "FlexPipe" else ""
        mp = r.get("mapping")
        table.add_row(name, " ".join(f"({a},{b})" for a, b in mp) if mp else ("-" if name == "FlexPipe" else "OOM"),
                      f"{r['tokens_per_s']:,.0f}" if r["tokens_per_s"] else "-", note)
    out.print(table)


@afaas_app.command("bench")
def afaas_bench(
        concurrency: Annotated[int, typer.Option(help="simultaneous cold starts in the loaded run")] = 32,
        requests: Annotated[int, typer.Option(help="cold starts one after another in the unloaded run")] = 8,
        ablation: Annotated[bool, typer.Option(help="all five configurations, adding one technique at a "
                                                    "time")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Spawn-a-fresh-interpreter cold starts (5 persisted hops, fresh sandbox) against AFaaS's fork from a
    seed (1 hop, pooled sandbox), at concurrency 1 and --concurrency. Every process is reaped."""
    from syslab.cloud.afaas import bench as AB

    if not 1 <= concurrency <= 256 or requests < 1:
        raise InputError(f"concurrency {concurrency}, requests {requests}.", field="--concurrency",
                         fix="use 1 <= --concurrency <= 256 and --requests >= 1.")
    if not hasattr(os, "fork"):
        raise InputError("this platform has no fork().", field="platform", fix="run on Linux.")
    configs = AB.ABLATION if ablation else (AB.ABLATION[0], AB.ABLATION[-1])
    with err.status("measuring cold starts") as status:
        res = AB.run_ablation(requests, concurrency, configs=configs,
                              progress=lambda m: status.update(f"measuring: {m}"))
    rows = res["results"]
    key = {AB.ABLATION[0].name: "spawn", AB.ABLATION[-1].name: "fork_seed"}
    hi = f"c{concurrency}"
    if as_json:
        body = {key.get(n, n): {"p50_ms": r["c1"]["p50_ms"], "p99_ms": r["c1"]["p99_ms"],
                                f"p50_ms_c{concurrency}": r[hi]["p50_ms"], f"p99_ms_c{concurrency}": r[hi]["p99_ms"]}
                for n, r in rows.items()}
        _print_json({**body, "resources": res["resources"], "concurrency": concurrency})
        return
    table = Table("configuration", "p50 (ms)", "p99 (ms)", f"p50 c{concurrency}", f"p99 c{concurrency}",
                  title=f"cold starts on this machine; sandboxes: {res['resources']}")
    for n, r in rows.items():
        table.add_row(n, f"{r['c1']['p50_ms']:.1f}", f"{r['c1']['p99_ms']:.1f}", f"{r[hi]['p50_ms']:.1f}",
                      f"{r[hi]['p99_ms']:.1f}")
    out.print(table)


# ---------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors exit 2 with one line, no traceback."""
    try:
        app(args=argv)       # standalone: usage errors exit 2, typer.Exit(n) exits n
    except (InputError, DatasetMissing) as e:
        err.print(Text.assemble(("error: ", "bold red"), str(e)), soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()


# ---------------------------------------------------------------------------------------------------------
# dede
# ---------------------------------------------------------------------------------------------------------

def _dede_report(name: str, dede: Any, mono: Any, extra: dict, as_json: bool) -> None:
    gap = 100 * (1 - dede.objective / mono.objective) if mono.objective else 0.0
    body = {"dede": {"objective": dede.objective, "time_s": dede.time_s, "iterations": dede.iterations,
                     "converged": dede.converged, "gap_pct": gap},
            "monolithic": {"objective": mono.objective, "time_s": mono.time_s, "solver": "HiGHS"}} | extra
    if as_json:
        _print_json(body)
        return
    table = Table("solver", name, "time (s)", "note")
    table.add_row("DeDe (ADMM)", f"{dede.objective:.6g}", f"{dede.time_s:.2f}",
                  f"{dede.iterations} iterations, {round(gap, 3) + 0.0:.3f}% below the optimum")
    table.add_row("monolithic LP (HiGHS)", f"{mono.objective:.6g}", f"{mono.time_s:.2f}", "optimal")
    out.print(table)
    out.print(", ".join(f"{k}: {v}" for k, v in extra.items()))


def _check_workers(workers: int, backend: str) -> None:
    from syslab.cloud.dede.parallel import BACKENDS

    if not 1 <= workers <= 256:
        raise InputError(f"--workers {workers}.", field="--workers", fix="use 1 to 256 worker processes.")
    if backend not in BACKENDS:
        raise InputError(f"--backend {backend}.", field="--backend", fix=f"use one of {', '.join(BACKENDS)}.")


@dede_app.command("te")
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

    _check_workers(workers, backend)
    if pairs < 1 or paths < 1:
        raise InputError(f"--pairs {pairs}, --paths {paths}.", field="--pairs/--paths", fix="both >= 1.")
    g = T.load_topology(topology)
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


@dede_app.command("cluster")
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

    _check_workers(workers, backend)
    thr = C.load_throughputs(throughputs)
    spec = spec or C.spec_beside(throughputs)
    if not spec.exists():
        raise InputError("no cluster spec.", file=spec, field="--spec",
                         fix='pass --spec with {"worker_0": <GPUs>, ...}, one per worker type.')
    gpus = C.load_spec(spec, thr.shape[0])
    p = C.make_jobs(thr, gpus, jobs, np.random.default_rng(seed))
    with err.status("solving: DeDe, then HiGHS"):
        dede = C.solve_admm(p, workers=workers, eps=1e-4, max_iter=4000, backend=backend)
        mono = C.solve_highs(p)
    _dede_report("fairness level", dede, mono, {"jobs": jobs, "worker_types": thr.shape[0], "workers": workers,
                                                "backend": backend}, as_json)


# ---------------------------------------------------------------------------------------------------------
# kamino
# ---------------------------------------------------------------------------------------------------------

@kamino_app.command("simulate")
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
        _print_json({"requests": len(arr), "load": load, "schedulers": res})
        return
    table = Table("scheduler", "mean (ms)", "p99 (ms)", "miss rate", "cached entries")
    for k, v in res.items():
        table.add_row(k, f"{v['mean_ms']:.2f}", f"{v['p99_ms']:.1f}", f"{v['miss_rate']:.1%}", f"{v['entries']:.0f}")
    out.print(table)
    out.print(f"{len(arr)} requests; modelled service times (hit {cluster.costs.c_hit_s * 1e3:g} ms, miss "
              f"{cluster.costs.c_miss_s * 1e3:g} ms)")


# ---------------------------------------------------------------------------------------------------------
# burst
# ---------------------------------------------------------------------------------------------------------

@burst_app.command("pagerank")
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

    check_burst(workers, group_size)
    if iterations < 1 or rtt_ms < 0 or bandwidth_mbs <= 0 or workers > 256:
        raise InputError(f"--iterations {iterations}, --rtt-ms {rtt_ms}, --bandwidth-mbs {bandwidth_mbs}, "
                         f"--workers {workers}.", field="options",
                         fix="iterations >= 1, rtt >= 0, bandwidth > 0, at most 256 workers.")
    if graph:
        src, dst, nodes = PR.load_edges(graph)
    else:
        src, dst = PR.power_law_graph(nodes, edges, np.random.default_rng(seed))
    net = Network(rtt_ms * 1e-3, bandwidth_mbs * 1e6)
    with err.status("starting redis-server and running the burst, then FaaS mode"), RedisServer() as server:
        burst = run_pagerank(server, src, dst, nodes, workers, group_size, iterations, network=net)
        faas = run_pagerank(server, src, dst, nodes, workers, 1, iterations, network=net)
    ref = PR.reference(src, dst, nodes, iterations)
    diff = float(max(np.abs(burst.ranks - ref).max(), np.abs(faas.ranks - ref).max()))
    if as_json:
        _print_json({"burst": burst.summary(), "faas": faas.summary(), "max_rank_diff_vs_numpy": diff,
                     "nodes": nodes, "edges": len(src), "iterations": iterations})
        return
    table = Table("mode", "job time (s)", "start-up (s)", "remote MB", "remote messages")
    for name, r in ((f"burst (packs of {group_size})", burst), ("FaaS", faas)):
        table.add_row(name, f"{r.time_s:.2f}", f"{r.startup_s:.2f}", f"{r.remote_bytes / 1e6:.1f}",
                      str(r.remote_messages))
    out.print(table)
    out.print(f"{nodes} nodes, {len(src)} edges; ranks differ from numpy's by at most {diff:.1e}; network "
              f"emulated at {rtt_ms:g} ms RTT, {bandwidth_mbs:g} MB/s")


# ---------------------------------------------------------------------------------------------------------
# poby
# ---------------------------------------------------------------------------------------------------------

@poby_app.command("provision")
def poby_provision(
        layer: Annotated[list[Path] | None, typer.Option(help="an uncompressed layer tar, in order (repeat); "
                                                              "default: a synthetic 4-layer image")] = None,
        size_mb: Annotated[int, typer.Option(help="synthetic image size (MB, uncompressed)")] = 160,
        link_gbps: Annotated[float, typer.Option(help="emulated link for both paths (Gbit/s)")] = 1.0,
        buffers: Annotated[int, typer.Option(help="Poby's host buffers (33 MiB each)")] = 3,
        seed: Annotated[int, typer.Option(help="seed of the synthetic image")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Build both image formats from the layers, provision containerd's way and Poby's into temporary
    directories, compare the unpacked trees byte for byte, remove everything."""
    import shutil
    import tempfile

    import numpy as np

    from syslab.cloud.poby import image as I
    from syslab.cloud.poby import provision as P

    if link_gbps <= 0 or not 1 <= buffers <= 64 or size_mb < 1:
        raise InputError(f"--link-gbps {link_gbps}, --buffers {buffers}, --size-mb {size_mb}.", field="options",
                         fix="a positive link rate, 1 to 64 buffers, a size of at least 1 MB.")
    if shutil.which("tar") is None:
        raise InputError("GNU tar is not on PATH.", field="tar", fix="install tar.")
    tars = I.read_layer_tars(layer) if layer else I.synthetic_layers(size_mb * 10**6, 4, np.random.default_rng(seed))
    rate = link_gbps * 1e9 / 8
    scratch = Path(tempfile.mkdtemp(prefix="syslab-poby-"))
    try:
        with err.status("building both formats, then provisioning"):
            reg = I.registry(scratch / "registry", tars)
            for d in ("containerd", "poby", "store"):
                (scratch / d).mkdir()
            base = P.containerd(reg, scratch / "containerd", rate, scratch / "store")
            poby = P.pipelined(reg, scratch / "poby", rate, offload=True, buffers=buffers)
            same = P.tree_digest(scratch / "containerd") == P.tree_digest(scratch / "poby")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    body = {"containerd": base.summary(), "poby": poby.summary(), "trees_identical": same,
            "layers": len(tars), "uncompressed_bytes": sum(map(len, tars)), "gzip_bytes": reg.compressed_gz,
            "link_gbps": link_gbps}
    if as_json:
        _print_json(body)
        return
    table = Table("path", "time (s)", "host CPU (s)", "DPU CPU (s)", "stages (s)")
    for name, o in (("containerd", base), ("Poby", poby)):
        table.add_row(name, f"{o.time_s:.2f}", f"{o.host_cpu_s:.2f}", f"{o.dpu_cpu_s:.2f}",
                      ", ".join(f"{k} {v:.2f}" for k, v in o.stages_s.items()))
    out.print(table)
    out.print(f"{len(tars)} layers, {sum(map(len, tars)) / 1e6:.0f} MB; trees identical: {same}; link emulated at "
              f"{link_gbps:g} Gbit/s")
