"""``syslab stragglers``: what-if analysis of your own training trace (slowdown, attributions, heatmap)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from syslab.core.cli_support import err, out, print_json
from syslab.core.errors import InputError

app = typer.Typer(help="Stragglers what-if analysis on your own training trace.",
                  no_args_is_help=True)


@app.command("analyze")
def stragglers_analyze(
        trace: Annotated[Path, typer.Option(help="trace parquet (one row per op)")],
        meta: Annotated[Path, typer.Option(help="job metadata YAML (dp_size, pp_size, ...)")],
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        figure: Annotated[Path | None, typer.Option(help="heatmap PNG (default: ./<trace name>.heatmap.png)")] = None,
        timeline: Annotated[Path | None, typer.Option(help="write a Perfetto/Chrome trace of one step here")] = None,
        step: Annotated[int | None, typer.Option(help="step for --timeline (default: the most slowed)")] = None,
) -> None:
    """What-if analysis of a training trace: slowdown S, attributions, M_W, M_S."""
    from syslab.core.inputs import option
    from syslab.training import stragglers

    if step is not None:                                 # a step number of the trace (its ids are below 2**31)
        step = option(step, "--step", min=0, max=2**31, integer=True)
    a = stragglers.analyze_files(trace, meta)
    if timeline is not None:
        try:
            stragglers.write_timeline(stragglers.load_trace(trace), stragglers.load_meta(meta), timeline, step)
        except OSError as e:
            raise InputError(f"cannot write the timeline ({e.strerror}).", file=timeline, field="--timeline",
                             fix="pass --timeline PATH in a writable folder.") from None
        err.print(f"timeline (recorded / no launch delays / ideal): {timeline} — open it in ui.perfetto.dev")
    if as_json:
        print_json(a.to_dict())
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
