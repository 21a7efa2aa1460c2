"""Claims, expectations, findings and results: what a reproduction promises and what it measured.

A ``Claim`` carries the paper's number (``paper``) and an ``Expect`` band fixed before running. A
``Finding`` is a claim measured here; whether it holds is *computed* from the measurement and the band,
never written by hand. The paper's number is only ever displayed beside ours.

Every claim has a ``kind``:

- ``claim``: a paper's result about its mechanism, measured by running the mechanism against the paper's
  baseline on the same workload. The report's headline counts these only. Under a negative control
  (``Run.control``: the mechanism replaced by that baseline) none of them may hold; if one does, it measures
  something other than the mechanism.
- ``check``: everything else worth reporting (an invariant, exactness against a reference, a closed form,
  hygiene, a calibration readout, a band that cannot fail by construction). Counted apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syslab.core.run import Run


class Kind(StrEnum):
    CLAIM = "claim"  # the paper's mechanism against the paper's baseline, same workload: the evidence
    CHECK = "check"  # an invariant, exactness, closed form, hygiene or calibration readout


CLAIM, CHECK = Kind.CLAIM, Kind.CHECK


class Fidelity(StrEnum):
    REAL = "REAL"          # mechanism and measurement run here on real inputs
    HYBRID = "HYBRID"      # mechanism runs for real; time or hardware comes from a model
    MODELLED = "MODELLED"  # only a model of hardware we lack; the algorithm still runs


@dataclass(frozen=True)
class Expect:
    """The direction and rough size we require of a measurement, set before running."""

    at_least: float | None = None
    at_most: float | None = None

    def __post_init__(self) -> None:
        if self.at_least is None and self.at_most is None:
            raise ValueError("Expect needs at_least, at_most or both")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError(f"empty band: at_least={self.at_least} > at_most={self.at_most}")

    @classmethod
    def between(cls, low: float, high: float) -> Expect:
        return cls(at_least=low, at_most=high)

    def check(self, value: float | None) -> bool:
        if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
            return False
        if self.at_least is not None and value < self.at_least:
            return False
        return not (self.at_most is not None and value > self.at_most)

    def describe(self) -> str:
        if self.at_least is not None and self.at_most is not None:
            return f"in [{self.at_least:g}, {self.at_most:g}]"
        if self.at_least is not None:
            return f">= {self.at_least:g}"
        return f"<= {self.at_most:g}"


@dataclass(frozen=True)
class Claim:
    """One headline statement of a paper, with the paper's number and the band we hold ourselves to."""

    id: str
    statement: str
    paper: float | str | None
    unit: str
    expect: Expect
    source: str = ""  # where in the paper (table, figure, section)
    kind: Kind = Kind.CLAIM

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))

    def measure(self, measured: float | None, note: str = "") -> Finding:
        value = None if measured is None else float(measured)
        return Finding(id=self.id, statement=self.statement, paper=self.paper, measured=value,
                       unit=self.unit, expect=self.expect.describe(), holds=self.expect.check(value),
                       note=note, kind=self.kind)


@dataclass
class Finding:
    id: str
    statement: str
    paper: float | str | None
    measured: float | None
    unit: str
    expect: str
    holds: bool
    note: str = ""
    kind: Kind = Kind.CLAIM

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": str(self.kind)}


@dataclass
class Figure:
    path: str      # relative to the report directory
    caption: str


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Result:
    """What one system's reproduction returns: findings, tables, figures and free-form metrics."""

    system: str
    findings: list[Finding] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    status: str = "ok"            # ok | failed | unavailable
    error: str | None = None
    duration_s: float | None = None

    def finding(self, claim_id: str) -> Finding:
        for f in self.findings:
            if f.id == claim_id:
                return f
        raise KeyError(claim_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "status": self.status,
            "error": self.error,
            "duration_s": self.duration_s,
            "findings": [f.to_dict() for f in self.findings],
            "tables": [asdict(t) for t in self.tables],
            "figures": [asdict(f) for f in self.figures],
            "metrics": jsonable(self.metrics),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class System:
    """A system module's declaration: what it is, how faithful it is, what it claims, how to reproduce it."""

    key: str
    name: str
    paper: str
    venue: str
    domain: str
    fidelity: Fidelity
    real: str
    modelled: str
    claims: tuple[Claim, ...]
    reproduce: Callable[[Run], Result]
    requires: tuple[str, ...] = ()   # optional extras, e.g. ("torch",)

    def claim(self, claim_id: str) -> Claim:
        for c in self.claims:
            if c.id == claim_id:
                return c
        raise KeyError(claim_id)

    @property
    def headline_claims(self) -> tuple[Claim, ...]:
        """The findings of kind ``claim``: what the headline counts and what a negative control must refute."""
        return tuple(c for c in self.claims if c.kind is Kind.CLAIM)


def tally(findings: list[dict[str, Any]]) -> dict[str, int]:
    """Counts for a headline: claims held / claims, checks passed / checks (findings as JSON dicts; one
    without a ``kind`` predates kinds and counts as a claim)."""
    claims = [f for f in findings if f.get("kind", "claim") == "claim"]
    checks = [f for f in findings if f.get("kind", "claim") == "check"]
    return {"claims_hold": sum(bool(f["holds"]) for f in claims), "claims": len(claims),
            "checks_pass": sum(bool(f["holds"]) for f in checks), "checks": len(checks)}


def headline(findings: list[dict[str, Any]]) -> str:
    """``claims: H/N hold · checks: h/n pass``: the one line a reader takes away."""
    t = tally(findings)
    return f"claims: {t['claims_hold']}/{t['claims']} hold · checks: {t['checks_pass']}/{t['checks']} pass"


def jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and tuples so json.dumps accepts them; NaN/inf become None."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if np is not None and isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if np is not None and isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
