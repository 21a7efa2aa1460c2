"""TrainCheck's reproduction: learn invariants from clean reference runs of small PyTorch programs, then catch
silent bugs in their buggy twins, against a loss-curve anomaly detector on the same runs. A second part
replays the paper's real-world bugs as miniature programs (``realworld.py``): the single-process ones in quick
scale, all of them (the 2-rank ones too) in full scale.

Negative control (``run.control``): TrainCheck's invariants are replaced by the loss-curve monitor on the same
traced buggy runs; the reference and clean runs (which feed inference and the checks only) are not traced."""

from __future__ import annotations

import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from syslab.core.claims import CHECK, Claim, Expect, Result, Table
from syslab.core.run import Run as RunContext
from syslab.core.run import pyplot
from syslab.training.traincheck import relations as R
from syslab.training.traincheck.collect import collect_many

PROGRAMS = Path(__file__).parent / "programs"

CLAIMS = (
    Claim("detected-within-one-iteration", "share of injected silent bugs whose first violation comes within one "
          "iteration of the trigger", paper=18 / 20, unit="", expect=Expect(at_least=0.8),
          source="abstract: 18 of 20 real-world silent errors, each within one iteration"),
    Claim("baseline-detected", "share caught within one iteration by a loss-curve anomaly detector (NaN, spikes, "
          "plateaus) on the same runs", paper=None, unit="", expect=Expect(at_most=0.3),
          source="our notes' acceptance (baseline <= 3 of 10)", kind=CHECK),  # the baseline's, a readout
    Claim("false-positive-invariants", "share of the inferred invariants violated by clean variants (other seed, "
          "batch size, learning rate)", paper="<5% with 2-3 references", unit="", expect=Expect(at_most=0.05),
          source="§ evaluation: < 2% with 5-6 references, < 5% with 2-3",
          kind=CHECK),  # a bound on false alarms: a checker that never fires meets it
    Claim("real-world-caught", "share of the replayed real-world bug miniatures (the artifact's bug ids that run on "
          "CPU torch) caught within one iteration of the trigger, each with invariants from two runs of its clean "
          "twin", paper=18 / 20, unit="", expect=Expect(at_least=0.5),
          source="abstract: 18 of 20 real-world silent errors; our miniatures, not the artifact's programs",
          kind=CHECK),  # miniatures of the paper's bugs, not its workloads: a readout, not the claim
)


@dataclass(frozen=True)
class Program:
    name: str
    script: str
    args: tuple[str, ...] = ()
    bug: str | None = None
    trigger: int | None = None

    def command(self) -> list[str]:
        extra = ("--bug", self.bug, "--at", str(self.trigger)) if self.bug else ()
        return [sys.executable, str(PROGRAMS / self.script), *self.args, *extra]


TRIGGER = 4
REFERENCES = (Program("mlp seed 0", "mlp.py", ("--seed", "0")),
              Program("mlp seed 1, first layer frozen", "mlp.py", ("--seed", "1", "--freeze-first")),
              Program("ddp seed 0", "ddp.py", ("--seed", "0")))
CLEAN = (Program("mlp seed 5, batch 32", "mlp.py", ("--seed", "5", "--batch-size", "32")),
         Program("mlp seed 6, lr 0.01", "mlp.py", ("--seed", "6", "--lr", "0.01")),
         Program("ddp seed 3, lr 0.02, batch 8", "ddp.py", ("--seed", "3", "--lr", "0.02", "--batch-size", "8")))
BUGS = tuple(Program(b, "mlp.py", ("--seed", "7"), b, TRIGGER) for b in (
    "no-zero-grad", "stale-optimizer", "lr-zero", "frozen-layer", "eval-left-on", "dtype-cast",
    "clip-before-backward", "no-op-step", "same-batch", "detached-branch", "bypassed-layer")) + tuple(
    Program(b, "ddp.py", ("--seed", "7"), b, TRIGGER) for b in ("raw-module", "same-shard"))
MORE_REFERENCES = (Program("mlp seed 2, batch 8", "mlp.py", ("--seed", "2", "--batch-size", "8")),
                   Program("ddp seed 1", "ddp.py", ("--seed", "1")))
MORE_CLEAN = (Program("mlp seed 8, frozen, lr 0.1", "mlp.py", ("--seed", "8", "--freeze-first", "--lr", "0.1")),
              Program("mlp seed 9, 20 steps", "mlp.py", ("--seed", "9", "--steps", "20")),
              Program("ddp seed 4, batch 32", "ddp.py", ("--seed", "4", "--batch-size", "32")))


# ---------------------------------------------------------------------------------------------------------
# The baseline: loss-curve anomaly detection
# ---------------------------------------------------------------------------------------------------------


def losses(run: R.Run) -> list[tuple[int, float]]:
    """(iteration, loss) of rank 0's backward calls: the curve a loss monitor would see."""
    out = []
    for c in run.calls:
        if c.rank == 0 and c.api in ("Tensor.backward", "autograd.backward"):
            value = (c.args.get("loss") or {}).get("value") if isinstance(c.args.get("loss"), dict) else None
            if value is not None:
                out.append((c.iter, float(value)))
    return out


def loss_anomaly(curve: list[tuple[int, float]], window: int = 4, spike: float = 2.0,
                 flat: float = 1e-6) -> int | None:
    """The first iteration a loss monitor flags: a non-finite loss, a spike above ``spike`` x the median of the
    previous ``window`` losses, or a plateau (the last ``window`` losses within ``flat`` of each other)."""
    seen: list[float] = []
    for it, v in curve:
        if isinstance(v, str) or not math.isfinite(v):
            return it
        if len(seen) >= window:
            recent = seen[-window:]
            if v > spike * statistics.median(recent) or max(recent + [v]) - min(recent + [v]) < flat:
                return it
        seen.append(v)
    return None


# ---------------------------------------------------------------------------------------------------------
# Running the suite
# ---------------------------------------------------------------------------------------------------------


def trace_all(programs: list[Program], workdir: Path, workers: int = 2, progress=lambda m: None
              ) -> dict[str, R.Run]:
    """Run every program under the tracer (``workers`` at a time) and load its trace."""
    dirs = [workdir / f"{i:02d}" for i in range(len(programs))]
    collect_many([p.command() for p in programs], dirs, workers, timeout_s=300,
                 progress=lambda m: progress(f"traced {m}"))
    return {p.name if not p.bug else f"bug:{p.bug}": R.Run.load(d) for p, d in zip(programs, dirs, strict=True)}


@dataclass
class Outcome:
    program: Program
    first_violation: int | None
    violations: list[R.Violation]
    baseline: int | None

    @property
    def detected(self) -> bool:
        return self.first_violation is not None and self.program.trigger <= self.first_violation \
            <= self.program.trigger + 1

    @property
    def early(self) -> bool:
        """A violation before the bug was switched on: a false alarm on the identical clean prefix."""
        return self.first_violation is not None and self.first_violation < self.program.trigger

    @property
    def baseline_detected(self) -> bool:
        return self.baseline is not None and self.program.trigger <= self.baseline <= self.program.trigger + 1


def reproduce(run: RunContext) -> Result:
    result = Result(system="traincheck")
    refs = list(REFERENCES) + ([] if run.quick else list(MORE_REFERENCES))
    clean = list(CLEAN) + ([] if run.quick else list(MORE_CLEAN))
    if run.control:                         # no invariants to learn or false alarms to count under control
        refs, clean = [], []
    workdir = Path(tempfile.mkdtemp(prefix="syslab-traincheck-"))
    try:
        t0 = time.perf_counter()
        traces = trace_all(refs + clean + list(BUGS), workdir, progress=run.progress)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    t1 = time.perf_counter()
    invariants = R.infer([traces[p.name] for p in refs]) if refs else []
    infer_s = time.perf_counter() - t1

    violated: set[str] = set()
    clean_rows = []
    for p in clean:
        v = R.check(traces[p.name], invariants)
        violated |= {x.invariant.text for x in v}
        clean_rows.append([p.name, len(v), "; ".join(x.invariant.text for x in v[:2]) or "-",
                           "yes" if loss_anomaly(losses(traces[p.name])) is not None else "no"])
    outcomes = []
    for p in BUGS:
        trace = traces[f"bug:{p.bug}"]
        monitor = loss_anomaly(losses(trace))
        if run.control:                     # the negative control: the loss monitor in TrainCheck's slot
            outcomes.append(Outcome(p, monitor, [], monitor))
            continue
        v = R.check(trace, invariants)
        outcomes.append(Outcome(p, min((x.iter for x in v), default=None), v, monitor))

    n = len(outcomes)
    caught = sum(o.detected for o in outcomes)
    result.findings.append(CLAIMS[0].measure(
        caught / n, f"{caught} of {n} bugs, each at its trigger iteration or the next; "
        f"{sum(o.early for o in outcomes)} flagged before the trigger; {len(invariants)} invariants from "
        f"{len(refs)} reference runs"))
    base = sum(o.baseline_detected for o in outcomes)
    result.findings.append(CLAIMS[1].measure(
        base / n, f"{base} of {n}; it also fires on {sum(r[3] == 'yes' for r in clean_rows)} of {len(clean)} "
        "clean runs"))
    result.findings.append(CLAIMS[2].measure(
        len(violated) / len(invariants) if invariants else None, f"{len(violated)} of {len(invariants)} invariants "
        f"violated on {len(clean)} clean variants"))

    result.tables.append(Table(
        f"Silent bugs (switched on at iteration {TRIGGER}); invariants from: {', '.join(p.name for p in refs)}",
        ["bug", "program", "first violation (iteration)", "violated invariants", "first reported",
         "loss monitor flags at"],
        [[o.program.bug, o.program.script, "-" if o.first_violation is None else o.first_violation, len(o.violations),
          o.violations[0].invariant.text if o.violations else "-",
          "-" if o.baseline is None else o.baseline] for o in outcomes]))
    result.tables.append(Table("Clean variants (any violation is a false positive)",
                               ["run", "violations", "violated invariants", "loss monitor fires"], clean_rows))
    kinds: dict[str, int] = {}
    for inv in invariants:
        kinds[inv.key[0]] = kinds.get(inv.key[0], 0) + 1
    result.tables.append(Table("Inferred invariants by template",
                               ["template", "invariants", "with a precondition", "of which a disjunction"],
                               [[k, c, sum(1 for i in invariants if i.key[0] == k and i.conditional),
                                 sum(1 for i in invariants if i.key[0] == k and i.disjunctive)]
                                for k, c in sorted(kinds.items())]))
    result.metrics.update({"invariants": len(invariants), "trace_wall_s": wall, "infer_s": infer_s,
                           "bugs": {o.program.bug: {"first_violation": o.first_violation, "baseline": o.baseline,
                                                    "violations": [x.to_dict() for x in o.violations[:5]]}
                                    for o in outcomes}})
    result.figures.append(_detection_figure(run, outcomes))
    _real_world(run, result)
    return result


def _real_world(run: RunContext, result: Result) -> None:
    """The real-world bug miniatures: a table, one check, and the per-bug outcome in the metrics."""
    from syslab.training.traincheck import realworld as W

    cases = W.QUICK if run.quick else W.CASES
    t0 = time.perf_counter()
    replays = W.replay(cases, progress=run.progress, control=run.control)
    ids = [(bug, r) for r in replays for bug in r.case.bugs]
    caught = sum(r.verdict == "caught" for _, r in ids)      # under control: the loss monitor's verdict
    missed = [bug for bug, r in ids if r.verdict != "caught"]
    alarms = sum(bool(r.clean_violations) for r in replays)
    replayed = sum(len(c.bugs) for c in W.CASES)
    result.findings.append(CLAIMS[3].measure(
        caught / len(ids), f"{caught} of {len(ids)} bug ids ({len(replays)} miniatures"
        + (f"; the {replayed - len(ids)} 2-rank ones run in full scale only" if len(ids) < replayed else "")
        + f"; {len(W.NOT_REPLAYED)} of the artifact's {replayed + len(W.NOT_REPLAYED)} ids not replayed); "
        + ("the loss monitor in TrainCheck's place (control)" if run.control else
           f"missed or late: {', '.join(missed) or 'none'}; {alarms} clean twins with a false alarm")))
    result.tables.append(Table(
        f"The paper's real-world bugs as miniature programs ({'quick: single-process ones' if run.quick else 'all'};"
        " invariants from two clean runs of each twin; caught = first violation at the trigger or the next "
        "iteration)", W.COLUMNS, W.table_rows(replays)))
    result.metrics["real_world"] = {
        "wall_s": time.perf_counter() - t0,
        "bugs": {", ".join(r.case.bugs): {"trigger": r.case.trigger, "first_violation": r.first_violation,
                                          "verdict": r.verdict, "baseline": r.baseline,
                                          "clean_violations": len(r.clean_violations)} for r in replays}}


def _detection_figure(run: RunContext, outcomes: list[Outcome]):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 0.35 * len(outcomes) + 1.2))
    for y, o in enumerate(outcomes):
        ax.axvspan(o.program.trigger - 0.5, o.program.trigger + 1.5, ymin=0, ymax=1, color="0.95", zorder=0)
        ax.plot([o.program.trigger], [y], marker="|", color="k", ms=14)
        if o.first_violation is not None:
            ax.plot([o.first_violation], [y], marker="o", color="tab:blue", label="TrainCheck: first violation")
        if o.baseline is not None:
            ax.plot([o.baseline], [y], marker="x", color="tab:red", label="loss monitor: first flag")
    ax.set_yticks(range(len(outcomes)), [o.program.bug for o in outcomes], fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="lower right")
    ax.set_xlabel("iteration (| = the bug is switched on; shaded: within one iteration)")
    ax.invert_yaxis()
    return run.save_figure(fig, "detection", "When each silent bug is first reported: TrainCheck's invariants vs a "
                           "loss-curve monitor.")
