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
    assert "1/1 claims hold" in md and "failed" in md


def test_fmt():
    assert fmt(None) == "—" and fmt(1.234567) == "1.235" and fmt(float("nan")) == "—" and fmt("x") == "x"


def test_nan_measurements_become_null_in_results_json(tmp_path):
    s = _system()
    s["findings"][0]["measured"] = float("nan")
    write_report([s], tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["systems"][0]["findings"][0]["measured"] is None
