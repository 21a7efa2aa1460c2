"""Op DAGs on resources -> scheduled start/end times, makespan, utilisation, critical path, Chrome trace.

Each resource (a GPU stream, a link, a CPU) runs its ops one at a time *in the order they are given*, which
is how pipeline schedules, kernel streams and NIC queues behave; an op also waits for its dependencies.
Resource ``None`` means unlimited (pure delays). Scheduling is one Kahn pass over dependency + resource-order
edges: O(ops + edges). The Chrome-trace JSON opens in Perfetto (ui.perfetto.dev) or chrome://tracing.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syslab.core.errors import InputError


@dataclass(frozen=True)
class Op:
    name: str
    duration_s: float
    resource: str | None = None
    deps: tuple[str, ...] = ()
    category: str = ""
    args: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Span:
    """One interval on a track, for Chrome-trace export."""

    name: str
    track: str
    start_s: float
    end_s: float
    category: str = "op"
    args: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    process: str = "syslab"


def chrome_trace(spans: Iterable[Span]) -> dict[str, Any]:
    """Chrome trace-event JSON (opens in ui.perfetto.dev): one process per ``Span.process``, one thread per
    track, one complete ('X') event per span; times in microseconds."""
    spans = list(spans)
    pids = {p: i for i, p in enumerate(dict.fromkeys(s.process for s in spans))}
    tids: dict[tuple[str, str], int] = {}
    for sp in spans:
        tids.setdefault((sp.process, sp.track), len(tids))
    events: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": p}}
                                    for p, pid in pids.items()]
    events += [{"name": "thread_name", "ph": "M", "pid": pids[p], "tid": tid, "args": {"name": t}}
               for (p, t), tid in tids.items()]
    for sp in spans:
        events.append({"name": sp.name, "cat": sp.category, "ph": "X", "pid": pids[sp.process],
                       "tid": tids[(sp.process, sp.track)], "ts": sp.start_s * 1e6,
                       "dur": (sp.end_s - sp.start_s) * 1e6, "args": sp.args})
    return {"traceEvents": events, "displayTimeUnit": "ms"}


@dataclass
class Schedule:
    ops: dict[str, Op]
    start: dict[str, float]
    end: dict[str, float]

    @property
    def makespan(self) -> float:
        return max(self.end.values(), default=0.0) - min(self.start.values(), default=0.0)

    def utilisation(self) -> dict[str, float]:
        """Busy time / makespan per resource."""
        busy: dict[str, float] = defaultdict(float)
        for name, op in self.ops.items():
            if op.resource is not None:
                busy[op.resource] += self.end[name] - self.start[name]
        span = self.makespan or 1.0
        return {r: b / span for r, b in sorted(busy.items())}

    def critical_path(self, tol: float = 1e-12) -> list[str]:
        """Ops from the first start to the last end such that each one started as its predecessor ended
        (a dependency or the previous op on the same resource)."""
        if not self.ops:
            return []
        prev_on_resource: dict[str, str | None] = {}
        by_resource: dict[str, list[str]] = defaultdict(list)
        for name, op in self.ops.items():
            if op.resource is not None:
                by_resource[op.resource].append(name)
        for names in by_resource.values():
            names.sort(key=lambda n: (self.start[n], self.end[n]))
            for a, b in zip([None, *names[:-1]], names, strict=True):
                prev_on_resource[b] = a
        node = max(self.end, key=lambda n: self.end[n])
        path = [node]
        while True:
            cands = [d for d in self.ops[node].deps] + ([prev_on_resource[node]] if prev_on_resource.get(node) else [])
            tight = [c for c in cands if abs(self.end[c] - self.start[node]) <= tol]
            if not tight:
                break
            node = max(tight, key=lambda c: self.end[c] - self.start[c])
            path.append(node)
        return path[::-1]

    def to_chrome_trace(self) -> dict[str, Any]:
        """Chrome trace-event JSON: one complete ('X') event per op, one track per resource."""
        return chrome_trace([Span(name, op.resource or "(unbounded)", self.start[name], self.end[name],
                                  op.category or "op", op.args) for name, op in self.ops.items()])

    def write_chrome_trace(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_chrome_trace()))
        return path


def schedule(ops: Iterable[Op]) -> Schedule:
    """Schedule ``ops`` (in per-resource order) as early as dependencies and resources allow."""
    ops = list(ops)
    by_name: dict[str, Op] = {}
    for op in ops:
        if op.name in by_name:
            raise InputError(f"duplicate op name {op.name!r}.", field="name", fix="give every op a unique name.")
        if op.duration_s < 0:
            raise InputError(f"op {op.name!r} has negative duration {op.duration_s}.", field="duration_s",
                             fix="durations are seconds >= 0.")
        by_name[op.name] = op
    preds: dict[str, list[str]] = {op.name: list(op.deps) for op in ops}
    last_on: dict[str, str] = {}
    for op in ops:
        for d in op.deps:
            if d not in by_name:
                raise InputError(f"op {op.name!r} depends on unknown op {d!r}.", field="deps",
                                 fix="list only ops that exist.")
        if op.resource is not None:
            if op.resource in last_on:
                preds[op.name].append(last_on[op.resource])
            last_on[op.resource] = op.name
    succ: dict[str, list[str]] = defaultdict(list)
    indeg = {n: len(p) for n, p in preds.items()}
    for n, ps in preds.items():
        for p in ps:
            succ[p].append(n)
    queue = deque(n for n in by_name if indeg[n] == 0)
    start: dict[str, float] = {}
    end: dict[str, float] = {}
    while queue:
        n = queue.popleft()
        start[n] = max((end[p] for p in preds[n]), default=0.0)
        end[n] = start[n] + by_name[n].duration_s
        for s in succ[n]:
            indeg[s] -= 1
            if indeg[s] == 0:
                queue.append(s)
    if len(start) != len(by_name):
        stuck = sorted(set(by_name) - set(start))[:5]
        raise InputError(f"dependencies and resource order form a cycle (stuck: {stuck}).", field="deps",
                         fix="order each resource's ops consistently with their dependencies.")
    return Schedule(ops=by_name, start=start, end=end)
