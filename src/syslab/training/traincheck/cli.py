"""``syslab traincheck``: learn invariants from clean training runs and check new ones (torch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from syslab.core.cli_support import err, need_torch, out, print_json

app = typer.Typer(help="TrainCheck: learn invariants from clean training runs, catch silent errors in new ones "
                       "(torch). Put the training command after --.",
                  no_args_is_help=True)

CommandArg = Annotated[list[str] | None, typer.Argument(help="the training command, after --", show_default=False)]


@app.command("collect")
def traincheck_collect(out_dir: Annotated[Path, typer.Option("--out", help="directory for the trace files")],
                       command: CommandArg = None) -> None:
    """Run a training command traced (unedited) and keep its per-process traces."""
    from syslab.training.traincheck.collect import collect

    need_torch()
    with err.status("running the command traced"):
        files = collect(command or [], out_dir)
    out.print(f"{len(files)} trace file(s) in {out_dir}")


@app.command("learn")
def traincheck_learn(out_file: Annotated[Path, typer.Option("--out", help="invariants file to write (JSON)")],
                     trace: Annotated[list[Path] | None, typer.Option(help="a trace directory of another clean "
                                                                      "run (repeatable)")] = None,
                     api_names: Annotated[list[str] | None, typer.Option("--api", help="also trace this API, e.g. "
                                                                         "torch.nn.functional.softmax "
                                                                         "(repeatable)")] = None,
                     command: CommandArg = None) -> None:
    """Infer invariants from clean runs: the command after -- (run traced) and/or --trace directories."""
    from syslab.training.traincheck import api

    need_torch()
    with err.status("tracing and inferring"):
        invariants = api.learn([command] if command else [], trace or [], out_file, apis=api_names or [])
    out.print(f"{len(invariants)} invariants -> {out_file}")


@app.command("check")
def traincheck_check(invariants: Annotated[Path, typer.Option(help="invariants file from learn")],
                     trace: Annotated[Path | None, typer.Option(help="check this trace directory instead of "
                                                                "running a command")] = None,
                     every: Annotated[int, typer.Option(help="snapshot state only every N-th iteration (less "
                                                           "overhead; state violations may surface up to N-1 "
                                                           "iterations late)")] = 1,
                     online: Annotated[bool, typer.Option(help="check each iteration as it ends and stop the run "
                                                           "at the first violation (needs a command)")] = False,
                     as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
                     command: CommandArg = None) -> None:
    """Check a run against invariants: exit 1 and print the violations if any, exit 0 if clean."""
    from syslab.core.inputs import option, user_dir
    from syslab.training.traincheck import api
    from syslab.training.traincheck import relations as R

    need_torch()
    # snapshotting every N-th iteration: any N >= 1 is meaningful; above 2**31 no run gets a second snapshot
    every = option(every, "--every", min=1, max=2**31, integer=True, fix="e.g. --every 10.")
    invs = R.load(invariants)
    if trace is not None:
        user_dir(trace, field="--trace", fix="pass a trace directory written by syslab traincheck collect.")
    with err.status("tracing and checking"):
        violations = api.check(invariants, command or None, trace, every=every, online=online)
    if as_json:
        print_json({"invariants": len(invs), "violations": [v.to_dict() for v in violations]})
    elif violations:
        columns = ("iteration", "rank", "invariant", "evidence") + (("reported (run stopped) in",) if online else ())
        table = Table(*columns, title=f"{len(violations)} of {len(invs)} invariants violated (earliest first)")
        for v in violations:
            when = ("after the run" if v.reported_at is None else f"iteration {v.reported_at}",) if online else ()
            table.add_row(str(v.iter), str(v.rank), v.invariant.text, v.evidence, *when)
        out.print(table)
    else:
        out.print(f"clean: no violation of {len(invs)} invariants")
    if violations:
        raise typer.Exit(1)


@app.command("show")
def traincheck_show(invariants: Annotated[Path, typer.Argument(help="invariants file")],
                    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """List the invariants in a file, with their preconditions and support."""
    from syslab.training.traincheck import relations as R

    invs = R.load(invariants)
    if as_json:
        print_json([i.to_dict() for i in invs])
        return
    table = Table("template", "invariant", "precondition", "positive examples",
                  title=f"{len(invs)} invariants in {invariants}")
    for i in invs:
        # a disjunction one conjunction per line, each line read "or"
        pre = "\n".join(("or " if n else "") + R.precondition_text([conj]) for n, conj in enumerate(i.precondition))
        table.add_row(i.key[0], i.text.split(" when ")[0], pre if i.conditional else "always", str(i.positives))
    out.print(table)
