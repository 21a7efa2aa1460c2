"""Relation templates, invariant inference with preconditions, and checking, over traces of training runs.

Every template turns a trace into *examples*: for one hypothesis (a key such as ``("cover",
"Optimizer.zero_grad", "Tensor.backward")``), one occurrence that either satisfies it or not, with the
*properties* of that occurrence (the call's scalar arguments, the variable's attributes, whether it is the
first or last iteration). Inference pools the examples of the clean reference runs: a hypothesis with at
least two positive examples becomes an invariant if no example is negative, or if a precondition excludes
every negative one. A precondition is a disjunction of conjunctions of ``property == value`` clauses: every
positive example meets at least one conjunction, and no negative example meets any. Checking replays the
same templates on a new trace and reports each invariant's first applicable negative example as a
violation.

Templates (TrainCheck's, in the forms our traces support):

* ``cover`` A -> B: every call of B in an iteration comes after some call of A in that iteration;
  ``lead`` A -> B: every call of A is followed by some call of B in its iteration (APISequence/Lead/Cover).
* ``changes`` / ``keeps`` (API, attribute): the call changes (or leaves unchanged) that attribute of each
  parameter between its pre and post snapshots (EventContain).
* ``const`` (variable type, attribute, value): the attribute always has that value (Consistent over time).
* ``ranks_equal`` (attribute): a parameter's attribute is equal across ranks at the same point
  (Consistent across ranks); ``distinct_iters`` / ``distinct_ranks``: the model's input differs from one
  iteration to the next, and across ranks (DistinctArgument).
* ``positive`` / ``finite`` (API, field): a numeric argument or result stays above zero / finite (APIArg,
  APIOutput, Threshold).

Precondition search (``precondition``) follows TrainCheck's recursive search: the clauses true in every
positive example, less those no negative example breaks; if some negative still meets them all, the positives
are split into the groups that share a further clause and each group is searched again (a disjunction), at
most ``MAX_PRECONDITION_DEPTH`` levels deep. Each conjunction found is then shortened by greedy set cover
over its own clauses, so a precondition that needs no disjunction is the short conjunction it always was.
Cost: linear in the number of examples, which is about (calls x APIs) + (snapshots) per trace; a split
multiplies it by the number of groups, and happens only where no conjunction separates.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syslab.core.errors import InputError

MIN_POSITIVES = 2      # TrainCheck's POSITIVE_EXAMPLES_THRESHOLD
MAX_PRECONDITION_DEPTH = 8     # TrainCheck's MAX_PRECOND_DEPTH: how often a precondition may split
STATE_APIS = ("Optimizer.step", "Optimizer.zero_grad", "Tensor.backward", "autograd.backward",
              "nn.utils.clip_grad_norm_", "nn.utils.clip_grad_value_")
PARAM_PROPS = ("requires_grad", "has_grad", "in_optimizer", "dtype", "grad_zero")
CHANGE_ATTRS = ("value", "grad", "has_grad")
CONST_ATTRS = ("requires_grad", "dtype", "in_optimizer")
# the values a ``const`` hypothesis may name (each example is tested against all of them, so that a run with
# a value the references never had still meets the references' invariant)
CONST_VALUES = {"requires_grad": (True, False), "in_optimizer": (True, False),
                "dtype": ("float32", "float64", "float16", "bfloat16")}

# ---------------------------------------------------------------------------------------------------------
# A run, read from its per-process traces
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Call:
    api: str
    rank: int
    iter: int
    seq: int
    args: dict
    ret: Any = None
    pre: dict[str, tuple[str, dict]] = field(default_factory=dict)     # var -> (vtype, attrs)
    post: dict[str, tuple[str, dict]] = field(default_factory=dict)
    followed_by_backward: bool = False

    def scalar_args(self) -> dict[str, Any]:
        return {f"arg.{k}": v for k, v in self.args.items() if isinstance(v, bool | int | str)}


@dataclass
class Run:
    """One training run: its API calls per rank in order, with the state snapshots taken around them."""

    calls: list[Call]
    source: str = ""
    # True while the run is still going (online checking): no iteration seen so far is its last one
    running: bool = False

    @property
    def ranks(self) -> list[int]:
        return sorted({c.rank for c in self.calls})

    @functools.cached_property
    def _last_iters(self) -> dict[int, int]:
        """Each rank's last iteration: asked once per example, so computed in one pass, once."""
        last: dict[int, int] = {}
        for c in self.calls:
            last[c.rank] = max(last.get(c.rank, 0), c.iter)
        return last

    def last_iter(self, rank: int) -> int:
        return self._last_iters.get(rank, 0)

    @classmethod
    def load(cls, paths: list[Path] | Path) -> Run:
        """From a trace directory or a list of ``trace-*.jsonl`` files."""
        if isinstance(paths, Path | str):
            root = Path(paths)
            if not root.is_file():
                from syslab.core.inputs import user_dir

                user_dir(root, field="trace", fix="pass a trace directory written by syslab traincheck collect.")
            files = sorted(root.glob("trace-*.jsonl")) if root.is_dir() else [root]
            source = str(root)
        else:
            files, source = list(paths), ", ".join(str(p) for p in paths)
        if not files:
            raise InputError("no trace files.", file=source, fix="collect a trace first (syslab traincheck learn).")
        calls: list[Call] = []
        for path in files:
            calls += _read_process(Path(path))
        calls.sort(key=lambda c: (c.rank, c.seq))
        _mark_training_forwards(calls)
        return cls(calls, source)


class CallParser:
    """One process's events -> its calls, one event at a time (a trace file, or a running tracer's stream)."""

    def __init__(self) -> None:
        self.open: dict[int, Call] = {}     # distinct processes may share call numbers; a parser is one process

    def feed(self, e: dict) -> Call | None:
        """The call this event completes, if any. Raises KeyError/TypeError on a malformed event."""
        kind = e["kind"]
        if kind == "api" and e["phase"] == "pre":
            self.open[e["call"]] = Call(e["api"], e["rank"], e["iter"], e["seq"], e.get("args") or {})
        elif kind == "api" and e["phase"] == "post" and e["call"] in self.open:
            c = self.open.pop(e["call"])
            c.ret = e.get("ret")
            return c
        elif kind == "state" and e.get("call") in self.open:
            target = self.open[e["call"]].pre if e["phase"] == "pre" else self.open[e["call"]].post
            target.update({var: (vtype, attrs) for var, (vtype, attrs) in e["vars"].items()})
        return None


def _read_process(path: Path) -> list[Call]:
    parser = CallParser()
    done: list[Call] = []
    with path.open() as f:
        for n, line in enumerate(f, 1):
            try:
                c = parser.feed(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise InputError(f"line {n} is not a trace event ({err}).", file=path, field=f"line {n}",
                                 fix="use traces written by syslab traincheck.") from err
            if c is not None:
                done.append(c)
    done += parser.open.values()                                # calls the process never returned from
    return done


def _mark_training_forwards(calls: list[Call]) -> None:
    """A forward is a training forward if a backward follows it in its iteration (validation ones don't)."""
    backward_at: dict[tuple[int, int], int] = {}
    for c in calls:
        if c.api in ("Tensor.backward", "autograd.backward"):
            backward_at[(c.rank, c.iter)] = max(backward_at.get((c.rank, c.iter), -1), c.seq)
    for c in calls:
        if c.api == "Module.forward":
            c.followed_by_backward = backward_at.get((c.rank, c.iter), -1) > c.seq


# ---------------------------------------------------------------------------------------------------------
# Templates -> examples
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Example:
    key: tuple
    ok: bool
    props: dict[str, Any]
    rank: int
    iter: int
    subject: str           # the API or variable the example is about
    evidence: str = ""


def _iter_props(run: Run, c: Call) -> dict[str, Any]:
    return {"first_iter": c.iter == 0, "last_iter": not run.running and c.iter == run.last_iter(c.rank)}


def sequence_examples(run: Run, apis: set[str] = frozenset()) -> Iterator[Example]:
    """``apis``: more APIs to relate each call to than those the run itself calls (inference passes every
    reference run's APIs, checking those its invariants name): a call that never happens in this run must
    still break "every B comes after an A" and "every A is followed by a B"."""
    apis = sorted({c.api for c in run.calls} | set(apis))
    by_iter: dict[tuple[int, int], list[Call]] = defaultdict(list)
    for c in run.calls:
        by_iter[(c.rank, c.iter)].append(c)
    for calls in by_iter.values():
        seen_before: set[str] = set()
        firsts: dict[str, int] = {}
        lasts: dict[str, int] = {}
        for i, c in enumerate(calls):
            firsts.setdefault(c.api, i)
            lasts[c.api] = i
        for i, c in enumerate(calls):
            props = {**_iter_props(run, c), **c.scalar_args()}
            if c.api == "Module.forward":
                props["training_forward"] = c.followed_by_backward
            for a in apis:
                if a == c.api:
                    continue
                yield Example(("cover", a, c.api), a in seen_before, props, c.rank, c.iter, c.api,
                              f"{c.api} with no {a} before it in the iteration")
                yield Example(("lead", c.api, a), lasts.get(a, -1) > i, props, c.rank, c.iter, c.api,
                              f"{c.api} with no {a} after it in the iteration")
            seen_before.add(c.api)


def _param_props(attrs: dict) -> dict[str, Any]:
    return {f"var.{k}": attrs.get(k) for k in PARAM_PROPS if k in attrs}


def _lr_positive(c: Call) -> bool | None:
    lrs = [a["lr"] for vtype, a in c.pre.values() if vtype == "optimizer"]
    return all(lr > 0 for lr in lrs) if lrs else None


def change_examples(run: Run) -> Iterator[Example]:
    for c in run.calls:
        if c.api not in STATE_APIS or not c.post:
            continue
        base = {**_iter_props(run, c), **c.scalar_args()}
        lr = _lr_positive(c)
        if lr is not None:
            base["lr_positive"] = lr
        for var, (vtype, before) in c.pre.items():
            if vtype != "param" or var not in c.post:
                continue
            after = c.post[var][1]
            props = {**base, **_param_props(before)}
            for attr in CHANGE_ATTRS:
                changed = before.get(attr) != after.get(attr)
                what = f"{var}.{attr}: {before.get(attr)} -> {after.get(attr)}"
                yield Example(("changes", c.api, attr), changed, props, c.rank, c.iter, var, f"unchanged {what}")
                yield Example(("keeps", c.api, attr), not changed, props, c.rank, c.iter, var, f"changed {what}")


def const_examples(run: Run) -> Iterator[Example]:
    for c in run.calls:
        if c.api == "Optimizer.step":
            for var, (vtype, attrs) in c.pre.items():
                if vtype != "param":
                    continue
                props = {**_iter_props(run, c), **_param_props(attrs)}
                for attr in CONST_ATTRS:
                    values = CONST_VALUES[attr]
                    for value in values if attrs.get(attr) in values else (*values, attrs.get(attr)):
                        yield Example(("const", "param", attr, value), attrs.get(attr) == value,
                                      {k: v for k, v in props.items() if k != f"var.{attr}"}, c.rank, c.iter, var,
                                      f"{var}.{attr} = {attrs.get(attr)}")
        if c.api == "Module.forward":
            for var, (vtype, attrs) in c.pre.items():
                if vtype == "module":
                    props = {**_iter_props(run, c), "training_forward": c.followed_by_backward}
                    for value in (True, False):
                        yield Example(("const", "module", "training", value), attrs["training"] == value, props,
                                      c.rank, c.iter, var, f"{var}.training = {attrs['training']}")


def rank_examples(run: Run) -> Iterator[Example]:
    if len(run.ranks) < 2:
        return
    for api, phase, attr in (("Optimizer.step", "post", "value"), ("Optimizer.step", "pre", "grad")):
        groups: dict[tuple, dict[int, dict]] = defaultdict(dict)
        count: dict[tuple, int] = defaultdict(int)
        for c in run.calls:
            if c.api != api:
                continue
            count[(c.rank, c.iter)] += 1
            snap = c.post if phase == "post" else c.pre
            for var, (vtype, attrs) in snap.items():
                if vtype == "param":
                    groups[(var, c.iter, count[(c.rank, c.iter)])][c.rank] = attrs
        for (var, it, _), per_rank in groups.items():
            if len(per_rank) < 2:
                continue
            values = {r: a.get(attr) for r, a in per_rank.items()}
            first = per_rank[min(per_rank)]
            yield Example(("ranks_equal", f"{api}.{phase}", attr), len(set(values.values())) == 1,
                          {"first_iter": it == 0, **_param_props(first)}, min(per_rank), it, var,
                          f"{var}.{attr} differs across ranks: " + ", ".join(f"rank {r}: {v}" for r, v in
                                                                             sorted(values.items())))


def distinct_examples(run: Run) -> Iterator[Example]:
    forwards = [c for c in run.calls if c.api == "Module.forward" and c.followed_by_backward
                and c.args.get("input") is not None]
    last: dict[int, Call] = {}
    for c in forwards:
        prev = last.get(c.rank)
        if prev is not None and prev.iter != c.iter:
            yield Example(("distinct_iters", "Module.forward", "input"), c.args["input"] != prev.args["input"],
                          _iter_props(run, c), c.rank, c.iter, "Module.forward",
                          f"same input as iteration {prev.iter}: {c.args['input']}")
        last[c.rank] = c
    if len(run.ranks) > 1:
        by_iter: dict[int, dict[int, str]] = defaultdict(dict)
        for c in forwards:
            by_iter[c.iter].setdefault(c.rank, c.args["input"])
        for it, inputs in by_iter.items():
            if len(inputs) > 1:
                yield Example(("distinct_ranks", "Module.forward", "input"),
                              len(set(inputs.values())) == len(inputs), {"first_iter": it == 0}, min(inputs), it,
                              "Module.forward", "ranks got the same input: " + str(sorted(inputs)))


def _numbers(prefix: str, value: Any) -> Iterator[tuple[str, float]]:
    if isinstance(value, dict):
        if isinstance(value.get("value"), int | float | str) and "tensor" in value:
            v = value["value"]
            yield prefix, float(v) if not isinstance(v, str) else float(v.replace("inf", "inf"))
        else:
            for k, v in value.items():
                if k != "tensor":
                    yield from _numbers(f"{prefix}.{k}", v)
    elif isinstance(value, float | int) and not isinstance(value, bool):
        yield prefix, float(value)


def threshold_examples(run: Run) -> Iterator[Example]:
    for c in run.calls:
        props = {**_iter_props(run, c), **c.scalar_args()}
        fields = list(_numbers("args", c.args)) + list(_numbers("ret", c.ret))
        if c.api == "Optimizer.step":
            fields += [("lr", a["lr"]) for vtype, a in c.pre.values() if vtype == "optimizer"]
        for name, v in fields:
            finite = v == v and abs(v) != float("inf")
            yield Example(("finite", c.api, name), finite, props, c.rank, c.iter, c.api, f"{name} = {v}")
            yield Example(("positive", c.api, name), v > 0, props, c.rank, c.iter, c.api, f"{name} = {v}")


TEMPLATES = (sequence_examples, change_examples, const_examples, rank_examples, distinct_examples,
             threshold_examples)


def examples(run: Run, apis: set[str] = frozenset()) -> Iterator[Example]:
    """Every template's examples; ``apis``: as in ``sequence_examples``."""
    for template in TEMPLATES:
        yield from template(run, apis) if template is sequence_examples else template(run)


def _sequence_apis(invariants: list[Invariant]) -> set[str]:
    return {a for i in invariants if i.key[0] in ("cover", "lead") for a in i.key[1:3]}


# ---------------------------------------------------------------------------------------------------------
# Inference and checking
# ---------------------------------------------------------------------------------------------------------


Clause = tuple[str, Any]                # property == value
Conjunction = list[Clause]
# A precondition: a disjunction of conjunctions, met if any conjunction holds. ``[[]]`` (one empty conjunction)
# always holds: an unconditional invariant.
Precondition = list[Conjunction]


def meets(props: dict[str, Any], conjunction: Conjunction) -> bool:
    return all(props.get(k) == v for k, v in conjunction)


def precondition_text(pre: Precondition) -> str:
    """``a = 1 and b = 2``; a disjunction as ``(a = 1 and b = 2) or c = 3``; "" if unconditional."""
    parts = [" and ".join(f"{p} = {v}" for p, v in conj) for conj in pre if conj]
    if len(parts) <= 1:
        return parts[0] if parts else ""
    return " or ".join(f"({t})" if len(conj) > 1 else t for t, conj in zip(parts, pre, strict=True))


@dataclass
class Invariant:
    key: tuple
    precondition: Precondition
    positives: int
    negatives: int

    def applies(self, props: dict[str, Any]) -> bool:
        return any(meets(props, conj) for conj in self.precondition)

    @property
    def conditional(self) -> bool:
        return any(self.precondition)

    @property
    def disjunctive(self) -> bool:
        return len(self.precondition) > 1

    @property
    def text(self) -> str:
        k = self.key
        body = {
            "cover": lambda: f"every {k[2]} comes after a {k[1]} in its iteration",
            "lead": lambda: f"every {k[1]} is followed by a {k[2]} in its iteration",
            "changes": lambda: f"{k[1]} changes each parameter's {k[2]}",
            "keeps": lambda: f"{k[1]} leaves each parameter's {k[2]} unchanged",
            "const": lambda: f"every {k[1]}'s {k[2]} is {k[3]}",
            "ranks_equal": lambda: f"each parameter's {k[2]} is equal across ranks at {k[1]}",
            "distinct_iters": lambda: "the model's input differs from one iteration to the next",
            "distinct_ranks": lambda: "the model's input differs across ranks",
            "finite": lambda: f"{k[1]}'s {k[2]} is finite",
            "positive": lambda: f"{k[1]}'s {k[2]} is above zero",
        }[k[0]]()
        if self.conditional:
            body += " when " + precondition_text(self.precondition)
        return body

    def to_dict(self) -> dict:
        """A single conjunction is written as before (a list of [property, value] pairs), so files without a
        disjunction read the same in the previous format; a disjunction as ``{"any": [[pairs], ...]}``."""
        pairs = [[list(c) for c in conj] for conj in self.precondition]
        return {"relation": self.key[0], "key": list(self.key),
                "precondition": pairs[0] if len(pairs) == 1 else {"any": pairs},
                "positives": self.positives, "negatives": self.negatives, "text": self.text}

    @classmethod
    def from_dict(cls, d: dict) -> Invariant:
        return cls(tuple(d["key"]), _read_precondition(d.get("precondition", [])), int(d["positives"]),
                   int(d.get("negatives", 0)))


def _read_precondition(raw: Any) -> Precondition:
    """Either form ``to_dict`` writes (a list of pairs: one conjunction; ``{"any": [...]}``: a disjunction)."""
    conjunctions = raw["any"] if isinstance(raw, dict) else [raw]
    return [[tuple(c) for c in conj] for conj in conjunctions]


def _clauses(e: Example) -> frozenset[Clause]:
    return frozenset((k, v) for k, v in e.props.items() if isinstance(v, bool | int | str | None))


def _shorten(conjunction: frozenset[Clause], negatives: list[Example]) -> Conjunction:
    """A short subset of ``conjunction`` that still excludes every negative, by greedy set cover: the clause
    false in the most remaining negatives first (ties: the shorter property name)."""
    remaining, chosen = negatives, []
    while remaining:
        scored = [(sum(n.props.get(k) != v for n in remaining), k, v) for k, v in conjunction]
        scored = [s for s in scored if s[0] > 0]
        if not scored:
            raise AssertionError("the conjunction does not exclude every negative")
        _, k, v = max(scored, key=lambda s: (s[0], -len(s[1]), str(s[1])))
        chosen.append((k, v))
        remaining = [n for n in remaining if n.props.get(k) == v]
    return sorted(chosen, key=lambda c: str(c[0]))


def precondition(positives: list[Example], negatives: list[Example], max_depth: int = MAX_PRECONDITION_DEPTH,
                 min_support: int = MIN_POSITIVES) -> Precondition | None:
    """A precondition true in every positive and false in every negative; None if there is none.

    The search (TrainCheck's, §4.4 of the paper): take the clauses true in every positive, less those no
    negative breaks. If they exclude every negative, they are the precondition (one conjunction). Otherwise
    split: the clauses true in some but not all positives, grouped by the positives they hold in; each maximal
    such group (of at least ``min_support`` positives) is searched again against the negatives still let
    through, at most ``max_depth`` levels deep. The conjunctions found are the disjunction; it must cover every
    positive. Each is then shortened by greedy set cover against all negatives, and one implied by another
    (a superset of its clauses) is dropped."""
    if not negatives:
        return [[]]
    sets = [_clauses(e) for e in positives]
    useful = {c for s in sets for c in s if any(n.props.get(c[0]) != c[1] for n in negatives)}
    memo: dict[frozenset[int], tuple[list[frozenset[Clause]], set[int]]] = {}

    def search(group: frozenset[int], depth: int) -> tuple[list[frozenset[Clause]], set[int]]:
        """(conjunctions, the positives they cover) for the positives in ``group``. The negatives a group's
        common clauses let through depend on the group only, so a group reached twice is searched once."""
        if group in memo:
            return memo[group]
        common = frozenset.intersection(*(sets[i] for i in group)) & useful
        passing = [n for n in negatives if meets(n.props, list(common))]
        found: tuple[list[frozenset[Clause]], set[int]] = ([], set())
        if not passing:
            found = ([common], set(group))
        elif depth < max_depth:
            support: dict[Clause, set[int]] = defaultdict(set)
            for i in group:
                for c in sets[i] - common:
                    if any(n.props.get(c[0]) != c[1] for n in passing):
                        support[c].add(i)
            subs = {frozenset(g) for g in support.values() if len(g) >= min_support}
            maximal = [g for g in subs if not any(g < h for h in subs)]
            conjunctions, covered = [], set()
            for g in sorted(maximal, key=lambda g: (-len(g), sorted(g))):
                sub, got = search(g, depth + 1)
                conjunctions += sub
                covered |= got
            found = (conjunctions, covered)
        memo[group] = found
        return found

    conjunctions, covered = search(frozenset(range(len(positives))), 0)
    if len(covered) < len(positives):
        return None
    short = {frozenset(_shorten(c, negatives)) for c in conjunctions}
    kept = [c for c in short if not any(o < c for o in short)]
    return sorted((sorted(c, key=lambda x: str(x[0])) for c in kept), key=lambda c: (len(c), str(c)))


def infer(runs: list[Run], min_positives: int = MIN_POSITIVES) -> list[Invariant]:
    """Invariants that hold (under their preconditions) in every reference run."""
    pos: dict[tuple, list[Example]] = defaultdict(list)
    neg: dict[tuple, list[Example]] = defaultdict(list)
    apis = {c.api for run in runs for c in run.calls}
    for run in runs:
        for e in examples(run, apis):
            (pos if e.ok else neg)[e.key].append(e)
    out = []
    for key, p in pos.items():
        if len(p) < min_positives:
            continue
        pre = precondition(p, neg.get(key, []))
        if pre is not None:
            out.append(Invariant(key, pre, len(p), len(neg.get(key, []))))
    return sorted(out, key=lambda i: [str(x) for x in i.key])


@dataclass
class Violation:
    invariant: Invariant
    rank: int
    iter: int
    subject: str
    evidence: str
    # online checking: the iteration the run was in when the violation was reported (None: after the run)
    reported_at: int | None = None

    def to_dict(self) -> dict:
        out = {"invariant": self.invariant.text, "relation": self.invariant.key[0], "rank": self.rank,
               "iteration": self.iter, "subject": self.subject, "evidence": self.evidence}
        if self.reported_at is not None:
            out["reported_at_iteration"] = self.reported_at
        return out


CROSS_RANK = ("ranks_equal", "distinct_ranks")     # templates that need every rank's trace at once


def check(run: Run, invariants: list[Invariant], iters: set[int] | None = None) -> list[Violation]:
    """Each invariant's first violation in ``run`` (earliest iteration), ordered by iteration; with ``iters``,
    only violations in those iterations (an online check of the iteration that just ended)."""
    by_key: dict[tuple, list[Invariant]] = defaultdict(list)
    for inv in invariants:
        by_key[inv.key].append(inv)
    first: dict[int, Violation] = {}
    for e in examples(run, _sequence_apis(invariants)):
        if e.ok or e.key not in by_key or (iters is not None and e.iter not in iters):
            continue
        for inv in by_key[e.key]:
            if inv.applies(e.props):
                v = first.get(id(inv))
                if v is None or (e.iter, e.rank) < (v.iter, v.rank):
                    first[id(inv)] = Violation(inv, e.rank, e.iter, e.subject, e.evidence)
    return sorted(first.values(), key=lambda v: (v.iter, v.rank, v.invariant.text))


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------


def save(invariants: list[Invariant], path: Path, references: list[str], apis: list[str] = ()) -> None:
    """Write invariants (and the extra APIs the references traced, which a check must trace too)."""
    path.write_text(json.dumps({"format": "syslab-traincheck-invariants/1", "references": references,
                                "apis": list(apis), "invariants": [i.to_dict() for i in invariants]},
                               indent=1) + "\n")


def load(path: Path) -> list[Invariant]:
    return load_file(path)[0]


def load_file(path: Path) -> tuple[list[Invariant], list[str]]:
    """The invariants of a file and the extra APIs its references traced."""
    from syslab.core.inputs import number, parse_json, read_text

    path = Path(path)
    fix = "use a file written by syslab traincheck learn --out FILE."

    def bad(why: str) -> InputError:
        return InputError(f"not an invariants file ({why}).", file=path, field="invariants", fix=fix)

    text = read_text(path, fix=fix)                 # missing, a directory, binary, not UTF-8
    try:
        data = parse_json(text, source=path, fix=fix)
    except InputError as e:
        raise bad(e.problem.rstrip(".")) from None
    if not isinstance(data, dict) or not isinstance(data.get("invariants"), list):
        raise bad("no 'invariants' list")
    apis = data.get("apis", [])
    if not isinstance(apis, list) or not all(isinstance(a, str) for a in apis):
        raise bad("'apis' is not a list of names")
    # the length of each template's key, as the templates above build it (and Invariant.text reads it)
    key_length = {"cover": 3, "lead": 3, "changes": 3, "keeps": 3, "const": 4, "ranks_equal": 3,
                  "distinct_iters": 3, "distinct_ranks": 3, "finite": 3, "positive": 3}
    scalar = str | int | float | bool | None
    out = []
    for i, d in enumerate(data["invariants"]):
        key = d.get("key") if isinstance(d, dict) else None
        if not (isinstance(key, list) and key and isinstance(key[0], str) and key_length.get(key[0]) == len(key)
                and all(isinstance(k, str) for k in key[1:3]) and all(isinstance(k, scalar) for k in key)):
            raise bad(f"invariant {i} has key {str(key)[:80]}")
        pre = d.get("precondition", [])
        conjunctions = pre.get("any") if isinstance(pre, dict) else [pre]

        def pairs(conj: Any) -> bool:
            return isinstance(conj, list) and all(isinstance(c, list) and len(c) == 2 and isinstance(c[0], str)
                                                  and isinstance(c[1], scalar) for c in conj)
        if not (isinstance(conjunctions, list) and conjunctions and all(pairs(c) for c in conjunctions)):
            raise bad(f"invariant {i}'s precondition is neither a list of [property, value] pairs nor "
                      '{"any": [such lists]}')
        counts = [number(d.get(k, 0), field=f"invariants[{i}].{k}", file=path, fix=fix, integer=True, min=0)
                  for k in ("positives", "negatives")]
        out.append(Invariant(tuple(key), _read_precondition(pre), *counts))
    return out, apis
