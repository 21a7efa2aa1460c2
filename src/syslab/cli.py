"""The ``syslab`` command line: list, show, run, reproduce and data, plus each system's own tool.

A tool lives beside its system (``<system>/cli.py``, a typer ``app``) and is named in its catalog entry
(``Entry.tool``); it is mounted lazily, so ``syslab --help`` and ``syslab list`` import no system module.
Errors a user can cause, in these commands or in any tool, print one clear line (file, field, fix) and exit with
status 2, no traceback.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
import typer.main
from rich.table import Table
from rich.text import Text

from syslab import catalog
from syslab.core.cli_support import err, out, print_json
from syslab.core.data import DatasetMissing
from syslab.core.errors import InputError

# ---------------------------------------------------------------------------------------------------------
# each system's tool, mounted from the catalog
# ---------------------------------------------------------------------------------------------------------

def tool_command(entry: catalog.Entry | catalog.SharedTool) -> typer.core.TyperGroup:
    """The click group of ``syslab <entry.tool>``: imports ``<entry.module>.cli`` and converts its typer app (a
    tool with one command stays a group, so ``syslab poby provision`` keeps its subcommand)."""
    try:
        module = importlib.import_module(entry.tool_module)
    except ImportError:
        if not entry.missing():
            raise
        raise InputError(f"{entry.tool} needs {', '.join(entry.missing())}, which is not installed.", field="TOOL",
                         fix=f"{entry.install_hint()}.") from None
    mount = typer.Typer(add_completion=False)
    mount.add_typer(module.app, name=entry.tool)
    return typer.main.get_command(mount).commands[entry.tool]


class _LazyTool(typer.core.TyperCommand):
    """A catalog tool before its module is imported: a name and one line of help for ``syslab --help``. Invoking
    it (click makes the tool's context) imports the tool and hands the arguments to it."""

    def __init__(self, entry: catalog.Entry | catalog.SharedTool) -> None:
        super().__init__(entry.tool, help=entry.tool_help)
        self.entry = entry

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        return tool_command(self.entry).make_context(info_name, args, parent=parent, **extra)


class _Syslab(typer.core.TyperGroup):
    """The top-level group: its own commands, then the catalog's tools, listed without importing them."""

    def list_commands(self, ctx: Any) -> list[str]:
        own = super().list_commands(ctx)
        tools = (*catalog.CATALOG, *catalog.SHARED_TOOLS)
        return [*own, *(e.tool for e in tools if e.tool and e.tool not in own)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and (entry := catalog.by_tool(cmd_name)) is not None:
            return _LazyTool(entry)
        return cmd


app = typer.Typer(help="syslab: OSDI'25 / ATC'25 ML, GPU and cloud systems, runnable and checkable here.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, cls=_Syslab)
data_app = typer.Typer(help="Datasets: list, locate, download (with checksum verification).", no_args_is_help=True)
app.add_typer(data_app, name="data")


# ---------------------------------------------------------------------------------------------------------
# list / show / run / reproduce
# ---------------------------------------------------------------------------------------------------------

@app.command("list")
def list_systems(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List the systems syslab carries."""
    if as_json:
        print_json([e.to_dict() for e in catalog.CATALOG])
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
        print_json({k: v for k, v in result.items() if k != "traceback"})
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
                _run_in_pool(shared, workers, done)
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


def _run_in_pool(args: list[dict[str, Any]], workers: int, done: Any) -> None:
    """Reproductions in ``workers`` processes. The workers die with us, and on SIGTERM/Ctrl-C (``Terminated``)
    or any error each gets SIGTERM, unwinds its own reproduction's cleanup, and is waited for."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from syslab.core.lifecycle import pool_worker_init

    pool = ProcessPoolExecutor(max_workers=workers, initializer=pool_worker_init, initargs=(os.getpid(),))
    try:
        futures = [pool.submit(catalog.run_system, **a) for a in args]
        for fut in as_completed(futures):
            done(fut.result())
    except BaseException:
        for proc in list(getattr(pool, "_processes", {}).values()):   # CPython keeps them here
            if proc.is_alive():
                proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


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
        print_json(rows)
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
    if base_url is not None:
        from urllib.parse import urlsplit

        url = urlsplit(base_url)
        if url.scheme not in ("http", "https", "file") or not (url.netloc or url.scheme == "file"):
            raise InputError(f"{base_url!r} is not an http(s) or file URL.", field="--base-url",
                             fix="pass a mirror such as https://example.org/syslab-data.")
    for name in names:
        paths = fetch(name, dest=dest, base_url=base_url, progress=lambda m: err.print(m))
        out.print(f"{name}: {len(paths)} file(s) verified in {paths[0].parent}")


# ---------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    """Entry point and error boundary.

    - What a user can cause exits 2 with one line and no traceback, also when raised inside a tool: an
      ``InputError``, a missing dataset, a download that fails or does not match its checksum, and an OS error
      on a path (a folder we cannot write, a full disk). A bug of ours still shows its traceback.
    - SIGTERM and SIGINT unwind (``core.lifecycle``): every child, server, pool, /dev/shm entry and temporary
      directory is removed on the way out; the exit status is 143 or 130, without a traceback.
    """
    from urllib.error import URLError

    from syslab.core.data import ChecksumMismatch
    from syslab.core.lifecycle import Terminated, terminable

    try:
        with terminable():
            app(args=argv)   # standalone: usage errors exit 2, typer.Exit(n) exits n
    except (InputError, DatasetMissing) as e:
        _fail(str(e))
    except ChecksumMismatch as e:
        _fail(f"{e} Fix: try again later, or fetch from a mirror with --base-url.")
    except URLError as e:
        _fail(f"download failed ({e.reason}). Fix: check the network, or pass --base-url to a mirror.")
    except (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError) as e:
        _fail(f"{e.filename or ''}: {e.strerror}. Fix: check the path and its permissions.")
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG):
            raise
        _fail(f"{e.filename or ''}: {e.strerror}. Fix: free space or choose another folder.")
    except (Terminated, KeyboardInterrupt) as e:
        code = e.exit_code if isinstance(e, Terminated) else 130
        err.print(f"interrupted ({'SIGINT' if code == 130 else 'SIGTERM'}); stopped cleanly.")
        sys.exit(code)


def _fail(message: str) -> None:
    err.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
