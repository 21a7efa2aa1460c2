"""Stand-in system modules for catalog and CLI tests: one that crashes, one that needs a missing extra."""

from syslab.core.claims import Claim, Expect, Fidelity, Result, System


def _crash(run):
    raise RuntimeError("boom")


def _ok(run):
    r = Result(system="fake-ok")
    r.findings.append(CLAIM.measure(2.0))
    return r


CLAIM = Claim("c", "a number", paper=1.0, unit="", expect=Expect(at_least=1.5))
CRASHING = System(key="fake-crash", name="Crash", paper="p", venue="OSDI 2025", domain="training",
                  fidelity=Fidelity.REAL, real="-", modelled="-", claims=(CLAIM,), reproduce=_crash)
OK = System(key="fake-ok", name="Ok", paper="p", venue="OSDI 2025", domain="training", fidelity=Fidelity.REAL,
            real="-", modelled="-", claims=(CLAIM,), reproduce=_ok)
SYSTEM = CRASHING
