import json

from syslab.core.report import fmt, write_report


def _system(status="ok"):
    return {"system": "toy", "name": "Toy", "venue": "OSDI 2025", "domain": "training", "fidelity": "REAL",
            "status": status, "error": None if status == "ok" else "ValueError: boom", "duration_s": 1.0,
            "findings": [{"id": "c", "statement": "speedup <b>", "paper": 1.3, "measured": 1.25, "unit": "x",
                          "expect": ">= 1.15", "holds": True, "note": ""}] if status == "ok" else [],
            "tables": [{"title": "t", "columns": ["a"], "rows": [[1.23456]]}], "figures": [], "metrics": {},
            "notes": ["n"]}


def test_report_writes_html_json_and_markdown(tmp_path):
    html = write_report([_system(), {**_system("failed"), "system": "bad", "name": "Bad"}], tmp_path)
    page = html.read_text()
    assert "Toy" in page and "speedup &lt;b&gt;" in page and "1.25" in page and "Bad" in page and "boom" in page
    data = json.loads((tmp_path / "results.json").read_text())
    assert [s["system"] for s in data["systems"]] == ["toy", "bad"]
    assert data["systems"][0]["findings"][0]["holds"] is True
    md = (tmp_path / "summary.md").read_text()
    assert "claims: 1/1 hold · checks: 0/0 pass" in md and "failed" in md
    assert data["headline"] == "claims: 1/1 hold · checks: 0/0 pass" and data["control"] is False


def test_headline_counts_claims_only_and_checks_apart(tmp_path):
    s = _system()
    s["findings"] += [{**s["findings"][0], "id": "k1", "kind": "check", "holds": True},
                      {**s["findings"][0], "id": "k2", "kind": "check", "holds": False},
                      {**s["findings"][0], "id": "c2", "kind": "claim", "holds": False}]
    html = write_report([s], tmp_path)
    assert "claims: 1/2 hold · checks: 1/2 pass" in html.read_text()
    assert "claims: 1/2 hold · checks: 1/2 pass" in (tmp_path / "summary.md").read_text()


def test_control_report_says_so_and_never_merges_with_a_real_one(tmp_path):
    from syslab.core.report import merge_into_report

    write_report([_system()], tmp_path)
    assert "Negative control" not in (tmp_path / "index.html").read_text()
    other = {**_system(), "system": "other", "control": True, "scale": "quick"}
    assert [s["system"] for s in merge_into_report(other, tmp_path)] == ["other"]
    write_report([other], tmp_path, control=True)
    page = (tmp_path / "index.html").read_text()
    assert "negative-control report" in page and "Negative control" in page
    assert "negative-control summary" in (tmp_path / "summary.md").read_text()


def test_over_budget_is_reported_not_failed(tmp_path):
    s = {**_system(), "duration_s": 75.0}
    write_report([s], tmp_path)
    assert "over the 60 s quick budget" in (tmp_path / "index.html").read_text()
    assert "toy (75 s)" in (tmp_path / "summary.md").read_text()


def test_fmt():
    assert fmt(None) == "—" and fmt(1.234567) == "1.235" and fmt(float("nan")) == "—" and fmt("x") == "x"


def test_nan_measurements_become_null_in_results_json(tmp_path):
    s = _system()
    s["findings"][0]["measured"] = float("nan")
    write_report([s], tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["systems"][0]["findings"][0]["measured"] is None
