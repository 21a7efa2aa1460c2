"""The Python API: the same learn / check / show as the CLI, for scripts and notebooks."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from syslab.core.errors import InputError
from syslab.training.traincheck import relations as R
from syslab.training.traincheck.collect import collect


def _runs(commands: list[list[str]], traces: list[str | Path], timeout_s: float | None,
          tracer_env: dict[str, str] | None = None) -> list[R.Run]:
    runs = [R.Run.load(Path(t)) for t in traces]
    for command in commands:
        with tempfile.TemporaryDirectory(prefix="syslab-traincheck-") as tmp:
            collect(command, tmp, timeout_s, tracer_env)
            runs.append(R.Run.load(Path(tmp)))
    return runs


def selection(invariants: list[R.Invariant], every: int = 1) -> dict[str, str]:
    """The tracer settings a check needs: parameter snapshots only around the APIs the invariants read
    (selective instrumentation), in every ``every``-th iteration (sampling: violations of state invariants
    may then surface up to ``every - 1`` iterations late)."""
    from syslab.training.traincheck.instrument import ENV_EVERY, ENV_STATE_APIS

    apis = set()
    for inv in invariants:
        kind, *rest = inv.key
        if kind in ("changes", "keeps"):
            apis.add(rest[0])
        elif kind == "const" and rest[0] == "param":
            apis.add("Optimizer.step")
        elif kind == "ranks_equal":
            apis.add(rest[0].rsplit(".", 1)[0])
    return {ENV_STATE_APIS: ",".join(sorted(apis)), ENV_EVERY: str(max(1, every))}


def learn(commands: list[list[str]] = (), traces: list[str | Path] = (), out: str | Path | None = None,
          timeout_s: float | None = None, apis: list[str] = ()) -> list[R.Invariant]:
    """Infer invariants from clean runs: run each command traced (and/or read trace directories). ``apis``:
    more APIs to trace by dotted name; they are saved with the invariants so that checks trace them too."""
    from syslab.training.traincheck.instrument import ENV_APIS

    if not commands and not traces:
        raise InputError("no clean run to learn from.", field="COMMAND / --trace",
                         fix="give a command after -- or a trace directory with --trace.")
    if out is not None:                     # before the traced runs, which may take long
        from syslab.core.inputs import output_file

        output_file(out, field="--out", fix="write the invariants into an existing, writable folder.")
    _validate_apis(apis)
    runs = _runs(list(commands), list(traces), timeout_s, {ENV_APIS: ",".join(apis)} if apis else None)
    invariants = R.infer(runs)
    if out is not None:
        R.save(invariants, Path(out), [str(t) for t in traces] + [" ".join(c) for c in commands], list(apis))
    return invariants


def _validate_apis(apis) -> None:
    from syslab.training.traincheck.instrument import _resolve

    for a in apis:
        try:
            _resolve(a)
        except ValueError as e:
            raise InputError(str(e) + ".", field="--api", fix="give a dotted name such as "
                             "torch.nn.functional.softmax or torch.Tensor.add_.") from e


def check(invariants: list[R.Invariant] | str | Path, command: list[str] | None = None,
          trace: str | Path | None = None, timeout_s: float | None = None, every: int = 1,
          online: bool = False) -> list[R.Violation]:
    """Check a run (a command to trace, or a trace directory) against invariants; the violations, earliest
    first. A command is traced selectively: only the state the invariants read (see ``selection``).
    ``online``: check the command's iterations as they end and stop it at the first violation (``online.py``);
    the violations then carry ``reported_at`` (the iteration the run was stopped in), and the cross-rank
    invariants, which no single process can check, are checked on the trace after the run."""
    if command is None and trace is None:
        raise InputError("no run to check.", field="COMMAND / --trace",
                         fix="give a command after -- or a trace directory with --trace.")
    if online and command is None:
        raise InputError("online checking watches a running command, and none was given.", field="--online",
                         fix="give the training command after --, or drop --online to check a trace.")
    from syslab.training.traincheck.instrument import ENV_APIS

    invs, apis = R.load_file(Path(invariants)) if isinstance(invariants, str | Path) else (invariants, [])
    env = selection(invs, every)
    if apis:
        env[ENV_APIS] = ",".join(apis)
    if online:
        return _check_online(invs, apis, command, timeout_s, env)
    run = _runs([command] if command else [], [trace] if trace else [], timeout_s, env)[0]
    return R.check(run, invs)


def _check_online(invs: list[R.Invariant], apis: list[str], command: list[str], timeout_s: float | None,
                  env: dict[str, str]) -> list[R.Violation]:
    from syslab.training.traincheck.instrument import ENV_ONLINE
    from syslab.training.traincheck.online import read_reports

    with tempfile.TemporaryDirectory(prefix="syslab-traincheck-") as tmp:
        spec = Path(tmp) / "invariants.json"           # the traced processes load the invariants from here
        R.save(invs, spec, [], apis)
        traces = Path(tmp) / "trace"
        try:
            collect(command, traces, timeout_s, {**env, ENV_ONLINE: str(spec)})
        except InputError:
            if not read_reports(traces):                # the command failed on its own, not stopped by us
                raise
        stopped = read_reports(traces)
        cross = [i for i in invs if i.key[0] in R.CROSS_RANK]
        after = R.check(R.Run.load(traces), cross) if cross else []
    return sorted(stopped + after, key=lambda v: (v.iter, v.rank, v.invariant.text))


@contextlib.contextmanager
def tracing(out_dir: str | Path | None = None, online: list[R.Invariant] | None = None) -> Iterator[dict]:
    """Trace the training code run inside the ``with`` block, in this process. On exit, ``box["run"]`` holds
    the loaded ``Run`` (check it with ``relations.check``)::

        with tracing() as box:
            train(model, steps=10)
        violations = relations.check(box["run"], invariants)

    With ``online`` invariants, each iteration is checked as it ends and the first violation is raised into
    the block as ``online.SilentErrorDetected``."""
    from syslab.training.traincheck.instrument import Tracer

    tmp = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="syslab-traincheck-"))
    tracer = Tracer(tmp, online=online).install()
    box: dict = {}
    try:
        yield box
    finally:
        path = tracer.close()
        box["run"] = R.Run.load([path])
        if out_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)
