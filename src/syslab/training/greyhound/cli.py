"""``syslab greyhound``: fail-slow detection on your iteration times or collective-call log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import out, print_json, read_csv_columns
from syslab.core.errors import InputError

app = typer.Typer(help="GreyHound: fail-slow detection on your iteration times or collective-call log.",
                  no_args_is_help=True)


@app.command("detect")
def greyhound_detect(iter_times: Annotated[Path, typer.Option(help="CSV with one iteration time per row, "
                                                              "column iter_time_s")],
                     as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Verified fail-slow change points in a series of iteration times (BOCD + the paper's checks)."""
    from syslab.training.greyhound.detect import detect

    df = read_csv_columns(iter_times, ("iter_time_s",))
    try:
        cps = detect(df["iter_time_s"].to_numpy())[0]
    except InputError as e:
        raise InputError(e.problem, file=iter_times, field=e.field, fix=e.fix) from None
    rows = [{"index": c.index, "detected_at": c.detected_at, "before_s": c.before, "after_s": c.after} for c in cps]
    if as_json:
        print_json({"change_points": rows})
        return
    table = Table("starts at iteration", "detected at", "before (s)", "after (s)", "change",
                  title=f"{len(cps)} verified change point(s) in {len(df)} iterations")
    for c in cps:
        table.add_row(str(c.index), str(c.detected_at), f"{c.before:.4f}", f"{c.after:.4f}",
                      f"{c.after / c.before - 1:+.0%}")
    out.print(table)


@app.command("period")
def greyhound_period(calls: Annotated[Path, typer.Option(help="CSV of one rank's collective calls in order: "
                                                         "columns call_id, timestamp_s")],
                     as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """The iteration period of a collective-call log (ACF + exact-repeat check) and the iteration times."""
    import numpy as np

    from syslab.training.greyhound.detect import iteration_times

    df = read_csv_columns(calls, ("call_id", "timestamp_s"))
    try:
        period, its = iteration_times(df["call_id"].to_numpy(), df["timestamp_s"].to_numpy())
    except InputError as e:
        raise InputError(e.problem, file=calls, field=e.field, fix=e.fix) from None
    if as_json:
        print_json({"period": period, "iter_times_s": its.tolist()})
        return
    out.print(f"period: {period} calls per iteration; {len(its)} iterations, median "
              f"{float(np.median(its)):.4f} s (min {its.min():.4f}, max {its.max():.4f})")
