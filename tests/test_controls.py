"""Negative controls: with each system's mechanism replaced by the paper's main baseline (``Run.control``),
on the same workload, no finding of kind ``claim`` may hold. A claim that survives its control is measuring
something other than the mechanism (a band that cannot fail, a handicapped baseline, an oracle step)."""

import pytest

from syslab import catalog
from tests.conftest import need, system_params
from tests.test_reproductions import DATASETS


@pytest.mark.slow
@pytest.mark.parametrize("key", system_params(DATASETS))
def test_no_claim_holds_under_control(key, tmp_path):
    if DATASETS[key]:
        need(DATASETS[key])
    entry = catalog.get(key)
    if not entry.available:
        pytest.skip(f"{key} needs {', '.join(entry.missing())}")
    r = catalog.run_system(key, "quick", 0, tmp_path, control=True)
    assert r["status"] == "ok", r.get("traceback")
    assert r["control"] is True
    system = entry.load()
    claims = {c.id for c in system.headline_claims}
    assert claims, f"{key} has no claim of kind 'claim'"
    measured = {f["id"]: f for f in r["findings"] if f["kind"] == "claim"}
    assert set(measured) == claims, "under control every claim is still measured"
    survivors = {i: (f["measured"], f["expect"]) for i, f in measured.items() if f["holds"]}
    assert not survivors, f"claims that hold with the mechanism replaced by its baseline: {survivors}"
