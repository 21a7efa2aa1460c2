"""Online checking (the paper's proactive checks): the invariants are checked inside the traced process, on its
events as the tracer produces them, and the first violation stops the run where it happens.

The tracer feeds every event to an ``OnlineChecker``. When an iteration ends (an ``Optimizer.step`` returns,
or a forward starts after a backward with no step), the checker replays the templates on a window of the last
two iterations (the ``distinct_iters`` template compares an iteration with the one before) and keeps only the
examples of the iteration that just ended, with ``last_iter`` false, since the run goes on; the final
iteration is checked when the process exits, as the last one. Each iteration is thus checked once, exactly as
the offline check would, at O(events of two iterations) per iteration.

A violation is written to ``<trace dir>/violation-<pid>.json`` and raised as ``SilentErrorDetected``: a
``BaseException``, so that a training loop's ``except Exception`` cannot swallow it, while the loop's own
``finally`` blocks and the tracer's at-exit still run. The run is therefore stopped as the iteration that broke
the invariant ends: in its ``Optimizer.step`` (or, with no step, in the next iteration's first forward).

Limitation: a process sees only its own rank, so the cross-rank templates (``ranks_equal``,
``distinct_ranks``) are not checked online; ``api.check`` checks them on the whole trace after the run.
"""

from __future__ import annotations

import json
from pathlib import Path

from syslab.training.traincheck import relations as R


class SilentErrorDetected(BaseException):
    """Raised into the training program at its first invariant violation (online checking)."""

    def __init__(self, violations: list[R.Violation]) -> None:
        self.violations = violations
        v = violations[0]
        super().__init__(f"TrainCheck stopped the run in iteration {v.reported_at}: iteration {v.iter}, rank "
                         f"{v.rank} broke '{v.invariant.text}' ({v.evidence})")


def online_invariants(invariants: list[R.Invariant]) -> list[R.Invariant]:
    """The invariants one process can check on its own (all but the cross-rank ones)."""
    return [i for i in invariants if i.key[0] not in R.CROSS_RANK]


class OnlineChecker:
    """Consumes one process's trace events; ``end_iteration`` checks the iteration that just ended."""

    def __init__(self, invariants: list[R.Invariant], report_dir: str | Path | None = None) -> None:
        self.invariants = online_invariants(invariants)
        self.report_dir = Path(report_dir) if report_dir is not None else None
        self.parser = R.CallParser()
        self.calls: list[R.Call] = []          # completed calls of the current and the previous iteration
        self.violations: list[R.Violation] = []

    def feed(self, event: dict) -> None:
        call = self.parser.feed(event)
        if call is not None:
            self.calls.append(call)

    def end_iteration(self, it: int, now: int, last: bool = False) -> list[R.Violation]:
        """Check iteration ``it``, which just ended (the program is in iteration ``now``: ``it`` while its
        ``step`` returns, ``it + 1`` if a new forward ended it; ``last``: the process is exiting). The
        violations, also recorded and reported; [] if none or already stopped."""
        if self.violations or not self.invariants:
            return []
        window = sorted((c for c in self.calls if c.iter >= it - 1), key=lambda c: (c.rank, c.seq))
        self.calls = [c for c in window if c.iter >= it]                # bounded memory on long runs
        run = R.Run(window, "online", running=not last)
        R._mark_training_forwards(run.calls)
        found = R.check(run, self.invariants, iters={it})
        for v in found:
            v.reported_at = now
        self.violations = found
        if found and self.report_dir is not None:
            self._report(found)
        return found

    def _report(self, violations: list[R.Violation]) -> None:
        import os

        path = self.report_dir / f"violation-{os.getpid()}.json"
        path.write_text(json.dumps({"violations": [v.to_dict() for v in violations],
                                    "invariants": [v.invariant.to_dict() for v in violations]}) + "\n")


def read_reports(trace_dir: str | Path) -> list[R.Violation]:
    """The violations the processes of an online-checked run reported, earliest first."""
    out = []
    for path in sorted(Path(trace_dir).glob("violation-*.json")):
        data = json.loads(path.read_text())
        for v, inv in zip(data["violations"], data["invariants"], strict=True):
            out.append(R.Violation(R.Invariant.from_dict(inv), v["rank"], v["iteration"], v["subject"],
                                   v["evidence"], v.get("reported_at_iteration")))
    return sorted(out, key=lambda v: (v.iter, v.rank, v.invariant.text))
