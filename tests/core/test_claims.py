import math

import pytest

from syslab.core.claims import Claim, Expect, Result


def test_expect_bands_check_both_sides():
    band = Expect.between(1.0, 2.0)
    assert band.check(1.0) and band.check(2.0) and band.check(1.5)
    assert not band.check(0.99) and not band.check(2.01)
    assert Expect(at_least=3).check(3) and not Expect(at_least=3).check(2.9)
    assert Expect(at_most=0.1).check(-5) and not Expect(at_most=0.1).check(0.2)


def test_missing_or_nan_measurement_never_holds():
    band = Expect(at_least=0)
    assert not band.check(None)
    assert not band.check(math.nan)
    assert not band.check(math.inf)


def test_empty_or_inverted_band_is_rejected():
    with pytest.raises(ValueError):
        Expect()
    with pytest.raises(ValueError):
        Expect(at_least=2, at_most=1)


def test_finding_holds_is_computed_from_measurement():
    claim = Claim("x", "speedup", paper=1.3, unit="x", expect=Expect(at_least=1.15))
    assert claim.measure(1.2).holds
    f = claim.measure(1.1, note="short")
    assert not f.holds and f.paper == 1.3 and f.measured == 1.1 and f.note == "short"
    assert claim.measure(None).holds is False


def test_findings_carry_their_claims_kind():
    from syslab.core.claims import CHECK, Kind, tally

    claim = Claim("x", "speedup", paper=1.3, unit="x", expect=Expect(at_least=1.15))
    check = Claim("y", "exact", paper=None, unit="", expect=Expect(at_most=0), kind="check")
    assert claim.kind is Kind.CLAIM and check.kind is CHECK
    assert claim.measure(1.2).to_dict()["kind"] == "claim" and check.measure(0).to_dict()["kind"] == "check"
    assert tally([claim.measure(1.2).to_dict(), check.measure(1).to_dict()]) == {
        "claims_hold": 1, "claims": 1, "checks_pass": 0, "checks": 1}
    with pytest.raises(ValueError):
        Claim("z", "s", paper=None, unit="", expect=Expect(at_most=0), kind="evidence")


def test_result_dict_is_json_ready():
    import json

    import numpy as np
    r = Result(system="s", metrics={"a": np.float64(1.5), "b": np.arange(3), "c": float("nan")})
    d = r.to_dict()
    json.dumps(d)
    assert d["metrics"] == {"a": 1.5, "b": [0, 1, 2], "c": None}
