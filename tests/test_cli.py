"""The CLI: JSON shapes, user errors exit 2 without a traceback, crashes are recorded, optional deps, and each
system's tool mounted lazily from the catalog."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from syslab import catalog
from syslab.catalog import Entry
from syslab.cli import main
from syslab.core.errors import InputError
from tests.conftest import need


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_list_json_schema(capsys):
    code, out, _ = run_cli(["list", "--json"], capsys)
    rows = json.loads(out)
    assert code == 0 and {r["key"] for r in rows} >= {"stragglers", "wlb-llm"}
    assert all(set(r) == {"key", "name", "venue", "domain", "fidelity", "available"} for r in rows)


@pytest.mark.parametrize("args", [["list", "--json"], ["list"], ["--help"]])
def test_list_and_help_import_no_system_torch_pandas_or_matplotlib(args):
    code = ("import sys; from syslab.cli import main\n"
            f"try:\n    main({args!r})\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'pandas', 'matplotlib')]\n"
            "systems = [m for m in sys.modules if m.startswith('syslab.') and m.split('.')[1] not in "
            "('cli', 'catalog', 'core')]\n"
            "assert not heavy and not systems, (heavy[:5], systems)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ,
                                                                                            "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    if args == ["--help"]:                     # every tool is listed, with its catalog line
        for e in catalog.CATALOG:
            if e.tool:
                assert e.tool in proc.stdout and e.tool_help[:40] in proc.stdout


def test_python_m_syslab_lists_as_json():
    proc = subprocess.run([sys.executable, "-m", "syslab", "list", "--json"], capture_output=True, text=True)
    assert proc.returncode == 0 and {r["key"] for r in json.loads(proc.stdout)} == {e.key for e in catalog.CATALOG}


def test_python_m_syslab_cli_reaches_every_tool():
    # the tools defined below main() in the old cli.py were unreachable this way
    proc = subprocess.run([sys.executable, "-m", "syslab.cli", "poby", "provision", "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "--link-gbps" in proc.stdout


def test_cli_module_stays_small():
    import syslab.cli

    assert len(Path(syslab.cli.__file__).read_text().splitlines()) < 450


def test_catalog_tools_keep_their_names_and_clash_with_nothing():
    tools = [e.tool for e in catalog.CATALOG if e.tool]
    assert sorted(tools) == sorted({"stragglers", "wlb", "blitzscale", "kvcache", "llmstation", "traincheck",
                                    "greyhound", "crosspipe", "flexpipe", "afaas", "dede", "kamino", "burst",
                                    "poby", "popfetcher", "jenga", "mtuner", "optimus", "nanoflow", "obscura",
                                    "deepserve", "weaver"})
    assert not set(tools) & {"list", "show", "run", "reproduce", "data"}
    assert all(e.tool_help and "\n" not in e.tool_help for e in catalog.CATALOG if e.tool)
    assert all(not e.tool_help for e in catalog.CATALOG if not e.tool)


@pytest.mark.parametrize("entry", [e for e in catalog.CATALOG if e.tool], ids=lambda e: e.tool)
def test_every_tool_imports_has_commands_and_help(entry, capsys):
    try:
        module = importlib.import_module(entry.tool_module)
    except ImportError:
        if entry.missing():                    # e.g. torch not installed: the tool says so (tested below)
            pytest.skip(f"{entry.key} needs {entry.missing()}")
        raise
    assert module.app.registered_commands and module.app.info.help == entry.tool_help
    code, out, _ = run_cli([entry.tool, "--help"], capsys)
    assert code == 0 and "Commands" in out
    for c in module.app.registered_commands:
        assert c.name in out
        code, out_c, _ = run_cli([entry.tool, c.name, "--help"], capsys)
        assert code == 0 and "Usage" in out_c


def test_catalog_agrees_with_each_system_module():
    for e in catalog.CATALOG:
        if not e.available:                     # e.g. torch not installed: its own tests skip too
            continue
        s = e.load()
        assert s.requires == e.requires
        assert (s.key, s.name, s.venue, s.domain, s.fidelity.value) == (e.key, e.name, e.venue, e.domain, e.fidelity)
        assert s.claims and all(c.expect for c in s.claims)


def test_show(capsys):
    code, out, _ = run_cli(["show", "stragglers"], capsys)
    assert code == 0 and "REAL" in out and "M_S" in out


def test_unknown_system_exits_2_without_traceback(capsys):
    code, _, err = run_cli(["run", "no-such-system"], capsys)
    assert code == 2 and "unknown system" in err and "Traceback" not in err


def test_user_errors_exit_2_and_keep_the_file(tmp_path):
    bad = tmp_path / "lengths.json"
    bad.write_text("[5, -1]")
    proc = subprocess.run([sys.executable, "-m", "syslab.cli", "wlb", "pack", "--lengths", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "lengths[1]" in proc.stderr and "Traceback" not in proc.stderr
    assert bad.read_text() == "[5, -1]"
    meta = tmp_path / "m.yaml"
    meta.write_text("dp_size: 2\n")
    trace = tmp_path / "t.parquet"
    trace.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "syslab.cli", "stragglers", "analyze", "--trace", str(trace),
                           "--meta", str(meta)], capture_output=True, text=True)
    assert proc.returncode == 2 and "pp_size" in proc.stderr and "Traceback" not in proc.stderr


def test_stragglers_analyze_json(capsys, tmp_path):
    store = need("straggler_traces")
    code, out, _ = run_cli(["stragglers", "analyze", "--json",
                            "--trace", str(store.path("straggler_traces", "trace-ST.parquet")),
                            "--meta", str(store.path("straggler_traces", "meta-ST.yaml"))], capsys)
    d = json.loads(out)
    assert code == 0 and set(d) >= {"slowdown", "by_optype", "by_dp_rank", "by_stage", "m_w", "m_s"}
    assert d["by_stage"]["3"] == pytest.approx(1.2323, abs=1e-3) and d["m_s"] > 1


def test_stragglers_analyze_table_writes_heatmap(capsys, tmp_path):
    store = need("straggler_traces")
    fig = tmp_path / "h.png"
    code, out, _ = run_cli(["stragglers", "analyze", "--figure", str(fig),
                            "--trace", str(store.path("straggler_traces", "trace-AR.parquet")),
                            "--meta", str(store.path("straggler_traces", "meta-AR.yaml"))], capsys)
    assert code == 0 and "slow-worker" in out and fig.stat().st_size > 1000


def test_wlb_pack_json(capsys):
    store = need("wlb_doc_lengths")
    code, out, _ = run_cli(["wlb", "pack", "--json", "--iterations", "20", "--lengths",
                            str(store.path("wlb_doc_lengths", "doc_lengths.json"))], capsys)
    d = json.loads(out)
    assert code == 0 and set(d) >= {"original", "fixed_greedy", "wlb", "wlb_mean_delay_iters"}
    assert d["wlb"]["imbalance"] < d["original"]["imbalance"]


@pytest.fixture
def fake_catalog(monkeypatch):
    monkeypatch.setattr(catalog, "CATALOG", (
        Entry("fake-crash", "Crash", "OSDI 2025", "training", "REAL", "tests.fake_systems"),
        Entry("fake-ok", "Ok", "OSDI 2025", "training", "REAL", "tests.fake_ok_system"),
        Entry("fake-torch", "Needs torch", "ATC 2025", "training", "REAL", "tests.fake_ok_system",
              requires=("definitely_not_installed_pkg",)),
    ))


def test_run_of_a_system_missing_its_extra_exits_2_with_the_install_hint(fake_catalog, tmp_path, capsys):
    code, _, err = run_cli(["run", "fake-torch", "--out", str(tmp_path)], capsys)
    assert code == 2 and "definitely_not_installed_pkg" in err and "pip install" in err and "Traceback" not in err
    assert not (tmp_path / "results.json").exists()


@pytest.fixture
def fake_tool(monkeypatch):
    """Catalog entries with tools: one whose ``cli`` module is planted in sys.modules, one whose package needs a
    missing extra. Returns the list of modules imported through ``importlib.import_module`` since."""
    import types

    import typer

    from syslab.core.data import DatasetMissing

    tool = typer.Typer(help="Fake tool.", no_args_is_help=True)

    @tool.command("bad")
    def bad() -> None:
        raise InputError("a bad input.", field="--x", fix="give a good one.")

    @tool.command("nodata")
    def nodata() -> None:
        raise DatasetMissing("dataset toy is missing: run `syslab data fetch toy`")

    @tool.command("ok")
    def ok() -> None:
        print("fine")

    module = types.ModuleType("tests.fake_tool.cli")
    module.app = tool
    monkeypatch.setitem(sys.modules, module.__name__, module)
    imported, import_module = [], importlib.import_module

    def spy(name, package=None):
        imported.append(name)
        return import_module(name, package)

    monkeypatch.setattr(importlib, "import_module", spy)
    monkeypatch.setattr(catalog, "CATALOG", (
        Entry("fake-ok", "Ok", "OSDI 2025", "training", "REAL", "tests.fake_tool", tool="fake", tool_help="Fake tool."),
        Entry("fake-gone", "Gone", "OSDI 2025", "training", "REAL", "tests.fake_gone",
              requires=("definitely_not_installed_pkg",), tool="gone", tool_help="Needs a missing extra."),
    ))
    return imported


def test_tools_are_imported_only_when_invoked(fake_tool, capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0 and "fake" in out and "Fake tool." in out and "gone" in out and fake_tool == []
    code, out, _ = run_cli(["fake", "ok"], capsys)
    assert code == 0 and out.strip() == "fine" and fake_tool == ["tests.fake_tool.cli"]


def test_errors_inside_a_mounted_tool_exit_2_in_one_line(fake_tool, capsys):
    code, _, err = run_cli(["fake", "bad"], capsys)
    assert code == 2 and "--x" in err and "give a good one" in err and "Traceback" not in err
    code, _, err = run_cli(["fake", "nodata"], capsys)
    assert code == 2 and "syslab data fetch toy" in err and "Traceback" not in err
    code, _, err = run_cli(["gone", "anything"], capsys)
    assert code == 2 and "pip install definitely_not_installed_pkg" in err and "Traceback" not in err
    code, _, err = run_cli(["fake", "nope"], capsys)
    assert code == 2 and "No such command" in err


def test_reproduce_records_crashes_and_unavailable_systems(fake_catalog, tmp_path, capsys):
    code, _, _ = run_cli(["reproduce", "--jobs", "1", "--out", str(tmp_path)], capsys)
    assert code == 0
    systems = {s["system"]: s for s in json.loads((tmp_path / "results.json").read_text())["systems"]}
    assert systems["fake-crash"]["status"] == "failed" and "boom" in systems["fake-crash"]["error"]
    assert systems["fake-ok"]["status"] == "ok" and systems["fake-ok"]["findings"][0]["holds"] is True
    assert systems["fake-torch"]["status"] == "unavailable" and "pip install" in systems["fake-torch"]["error"]
    assert (tmp_path / "index.html").is_file() and (tmp_path / "summary.md").is_file()


def test_list_marks_missing_optional_dependency(fake_catalog, capsys):
    code, out, _ = run_cli(["list", "--json"], capsys)
    rows = {r["key"]: r for r in json.loads(out)}
    assert rows["fake-torch"]["available"] is False and rows["fake-ok"]["available"] is True


def test_run_json_shape(fake_catalog, tmp_path, capsys):
    code, out, _ = run_cli(["run", "fake-ok", "--json", "--out", str(tmp_path)], capsys)
    d = json.loads(out)
    assert code == 0 and d["system"] == "fake-ok"
    assert set(d["findings"][0]) >= {"id", "statement", "paper", "measured", "unit", "holds"}
    code, _, err = run_cli(["run", "fake-crash", "--out", str(tmp_path)], capsys)
    assert code == 1 and "boom" in err


def test_reproduce_domain_filter_and_bad_domain(fake_catalog, tmp_path, capsys):
    code, _, err = run_cli(["reproduce", "--domain", "nope", "--out", str(tmp_path)], capsys)
    assert code == 2 and "domain" in err
    code, _, err = run_cli(["reproduce", "--domain", "serving", "--out", str(tmp_path)], capsys)
    assert code == 2 and "no system" in err


def test_reproduce_with_ray_missing_is_a_clear_error(fake_catalog, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    code, _, err = run_cli(["reproduce", "fake-ok", "--ray", "auto", "--out", str(tmp_path)], capsys)
    assert code == 2 and "pip install" in err


def test_data_list_and_path(capsys):
    code, out, _ = run_cli(["data", "list", "--json"], capsys)
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and "straggler_traces" in rows and rows["wlb_doc_lengths"]["licence"]
    need("wlb_doc_lengths")
    code, out, _ = run_cli(["data", "path", "wlb_doc_lengths"], capsys)
    assert code == 0 and out.strip().endswith("doc_lengths.json")
    code, _, err = run_cli(["data", "path", "nope"], capsys)
    assert code == 2 and "unknown dataset" in err
    code, _, err = run_cli(["data", "path", "wlb_doc_lengths", "x.csv"], capsys)
    assert code == 2 and "no file" in err


def test_json_output_is_strict_even_with_nan(capsys):
    from syslab.core.cli_support import print_json

    print_json({"a": float("nan"), "b": [1.0, float("inf")]})
    assert json.loads(capsys.readouterr().out) == {"a": None, "b": [1.0, None]}


def test_run_keeps_other_systems_in_the_report(fake_catalog, tmp_path, capsys):
    run_cli(["run", "fake-ok", "--out", str(tmp_path)], capsys)
    run_cli(["run", "fake-crash", "--out", str(tmp_path)], capsys)
    run_cli(["run", "fake-ok", "--out", str(tmp_path)], capsys)
    systems = [s["system"] for s in json.loads((tmp_path / "results.json").read_text())["systems"]]
    assert sorted(systems) == ["fake-crash", "fake-ok"]


def _fake_run(key, scale="quick", seed=0, out_dir="report", **_):
    """Stands in for catalog.run_system: records when and in which process each system ran."""
    import os
    import time

    with open(os.path.join(out_dir, "order.txt"), "a") as f:
        f.write(f"{key} {os.getpid()} {time.perf_counter()}\n")
    time.sleep(0.2)
    return {"system": key, "name": key, "venue": "OSDI 2025", "domain": "training", "fidelity": "REAL",
            "scale": scale, "seed": seed, "status": "ok", "findings": [], "tables": [], "figures": [],
            "metrics": {}, "notes": [], "paper": key, "real": "", "modelled": "", "duration_s": 0.2}


def test_reproduce_runs_exclusive_systems_alone_after_the_others(monkeypatch, tmp_path, capsys):
    import os

    monkeypatch.setattr(catalog, "CATALOG", (
        Entry("fake-timed", "Timed", "OSDI 2025", "training", "REAL", "tests.fake_ok_system", exclusive=True),
        Entry("fake-a", "A", "OSDI 2025", "training", "REAL", "tests.fake_ok_system"),
        Entry("fake-b", "B", "OSDI 2025", "training", "REAL", "tests.fake_ok_system"),
    ))
    monkeypatch.setattr(catalog, "run_system", _fake_run)
    code, _, _ = run_cli(["reproduce", "--jobs", "2", "--out", str(tmp_path)], capsys)
    assert code == 0
    rows = [line.split() for line in (tmp_path / "order.txt").read_text().splitlines()]
    assert rows[-1][0] == "fake-timed" and int(rows[-1][1]) == os.getpid()     # last, in the driver
    assert {r[0] for r in rows[:2]} == {"fake-a", "fake-b"}


def test_crosspipe_compare_json_traces_and_bad_input(capsys, tmp_path):
    code, out, _ = run_cli(["crosspipe", "compare", "--microbatches", "4", "--latency", "2", "--milp-seconds", "10",
                            "--trace-dir", str(tmp_path), "--json"], capsys)
    body = json.loads(out)
    assert code == 0 and body["memory_budget"] == 4.0
    s = body["schedules"]
    assert {"1F1B", "IV1F1B", "ZBH1", "ZBV", "CrossUD", "CrossUDSub", "CrossWave", "MILP (UD)"} <= set(s)
    assert s["MILP (UD)"]["makespan"] <= s["CrossUD"]["makespan"] + 1e-6 < s["1F1B"]["makespan"]
    assert all(not r["problems"] for r in s.values())
    trace = json.loads((tmp_path / "CrossUD.json").read_text())
    assert any(e.get("ph") == "X" for e in trace["traceEvents"])
    code, _, err = run_cli(["crosspipe", "compare", "--latency", "-1"], capsys)
    assert code == 2 and "Traceback" not in err and "negative delay" in err


def test_flexpipe_simulate_json_and_bad_input(capsys, tmp_path):
    p = tmp_path / "lengths.json"
    p.write_text(json.dumps([500, 900, 1200, 3000, 20000] * 20))
    code, out, _ = run_cli(["flexpipe", "simulate", "--lengths", str(p), "--iterations", "30", "--json"], capsys)
    body = json.loads(out)
    assert code == 0 and body["iterations"] == 30
    pol = body["policies"]
    assert {"static (fewest stages)", "static (best fixed)", "static + recompute", "FlexPipe"} <= set(pol)
    assert pol["FlexPipe"]["tokens_per_s"] > 0 and pol["FlexPipe"]["max_decision_ms"] < 1000
    bad = tmp_path / "bad.json"
    bad.write_text("[1, -4]")
    code, _, err = run_cli(["flexpipe", "simulate", "--lengths", str(bad)], capsys)
    assert code == 2 and "Traceback" not in err and "bad.json" in err
    assert bad.read_text() == "[1, -4]"                                  # the user's file is untouched


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_afaas_bench_json_and_bad_input(capsys):
    from syslab.cloud.afaas import bench as AB

    code, out, _ = run_cli(["afaas", "bench", "--concurrency", "2", "--requests", "2", "--json"], capsys)
    body = json.loads(out)
    assert code == 0 and body["concurrency"] == 2 and body["resources"] in ("real", "emulated")
    assert body["fork_seed"]["p50_ms"] < body["spawn"]["p50_ms"]
    assert AB.leftovers() == []
    code, _, err = run_cli(["afaas", "bench", "--concurrency", "0"], capsys)
    assert code == 2 and "Traceback" not in err


def test_dede_te_and_cluster_json_and_bad_input(capsys, tmp_path):
    ds = need("dede_inputs")
    b4 = str(ds.path("dede_inputs", "B4.json"))
    demands = tmp_path / "d.json"
    demands.write_text(json.dumps([{"source": 0, "target": 5, "demand": 3.0}, {"source": 2, "target": 7,
                                                                               "demand": 1e9}]))
    code, out, _ = run_cli(["dede", "te", "--topology", b4, "--demands", str(demands), "--json"], capsys)
    body = json.loads(out)
    assert code == 0 and body["pairs"] == 2
    assert body["dede"]["objective"] == pytest.approx(body["monolithic"]["objective"], rel=0.02)
    assert body["monolithic"]["objective"] >= 3.0
    code, out, _ = run_cli(["dede", "cluster", "--throughputs", str(ds.path("dede_inputs", "cluster_throughputs.npy")),
                            "--jobs", "30", "--json"], capsys)
    body = json.loads(out)
    assert code == 0 and set(body) >= {"dede", "monolithic"} and body["dede"]["gap_pct"] <= 2
    demands.write_text(json.dumps([{"source": 0, "target": 5, "demand": -1}]))
    before = demands.read_text()
    code, _, err = run_cli(["dede", "te", "--topology", b4, "--demands", str(demands)], capsys)
    assert code == 2 and "demands[0].demand" in err and "Traceback" not in err and demands.read_text() == before
    code, _, err = run_cli(["dede", "cluster", "--throughputs", str(demands)], capsys)
    assert code == 2 and "npy" in err


def test_kamino_simulate_on_a_user_csv(capsys, tmp_path):
    f = tmp_path / "req.csv"
    rng = __import__("numpy").random.default_rng(0)
    times, kinds = sorted(rng.uniform(0, 20, 2000)), rng.zipf(1.5, 2000)
    rows = "".join(f"{t:.5f},sku{s}\n" for t, s in zip(times, kinds, strict=True))
    f.write_text("time_s,signature\n" + rows)
    code, out, _ = run_cli(["kamino", "simulate", "--requests", str(f), "--load", "0.6", "--json"], capsys)
    body = json.loads(out)
    assert code == 0 and body["requests"] == 2000
    assert set(body["schedulers"]) == {"round-robin", "JSQ", "power-of-two", "consistent-hash", "Kamino"}
    assert body["schedulers"]["Kamino"]["miss_rate"] < body["schedulers"]["JSQ"]["miss_rate"]
    code, _, err = run_cli(["kamino", "simulate", "--allocators", "0"], capsys)
    assert code == 2 and "Traceback" not in err


@pytest.mark.skipif(not catalog.get("burst").available, reason="needs a Redis-compatible server")
def test_burst_pagerank_json_on_a_user_graph(capsys, tmp_path):
    g = tmp_path / "edges.txt"
    rng = __import__("numpy").random.default_rng(0)
    g.write_text("# src dst\n" + "".join(f"{a} {b}\n" for a, b in rng.integers(0, 300, (3000, 2))))
    code, out, _ = run_cli(["burst", "pagerank", "--graph", str(g), "--workers", "4", "--group-size", "2",
                            "--iterations", "3", "--rtt-ms", "0", "--bandwidth-mbs", "1e6", "--json"], capsys)
    body = json.loads(out)
    assert code == 0 and body["max_rank_diff_vs_numpy"] < 1e-12 and body["edges"] == 3000
    assert body["burst"]["remote_messages"] == 3 * 2 and body["faas"]["remote_messages"] == 3 * 2 * 3
    assert body["burst"]["remote_bytes"] < body["faas"]["remote_bytes"]
    code, _, err = run_cli(["burst", "pagerank", "--workers", "6"], capsys)
    assert code == 2 and "powers of two" in err and "Traceback" not in err


def test_poby_provision_on_user_layers(capsys, tmp_path):
    import io
    import tarfile
    paths = []
    for i in range(2):
        p = tmp_path / f"l{i}.tar"
        with tarfile.open(p, "w") as tf:
            for j in range(30):
                data = (f"layer {i} file {j} " * (50 * j + 1)).encode()
                info = tarfile.TarInfo(f"app/{i}/{j}.txt")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        paths += ["--layer", str(p)]
    code, out, _ = run_cli(["poby", "provision", *paths, "--link-gbps", "100", "--json"], capsys)
    body = json.loads(out)
    assert code == 0 and body["trees_identical"] and body["layers"] == 2
    assert body["gzip_bytes"] < body["uncompressed_bytes"]
    code, _, err = run_cli(["poby", "provision", "--layer", str(tmp_path / "nope.tar")], capsys)
    assert code == 2 and "not found" in err
