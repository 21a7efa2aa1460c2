"""DeepServe: the platform (request -> job -> task, pre-warm pool, scale-out), the real start-path measurement
(page cache evicted, cleaned up on SIGTERM) and the ``syslab deepserve scale`` tool."""

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from syslab.core import gpu as G
from syslab.core.errors import InputError
from syslab.serving import deepserve as D
from syslab.serving.deepserve import platform as P
from syslab.serving.deepserve.cli import app

STAGES = P.Stages(runtime_s=2.0, fork_s=0.05)


# ---------------------------------------------------------------------------------------------------------
# Stages and the scale-out planner
# ---------------------------------------------------------------------------------------------------------

def test_stage_costs_come_from_the_gpu_model_and_the_cited_constants():
    w = STAGES.weights_bytes
    assert STAGES.ssd_load_s() == pytest.approx(G.storage_s(w, "nvme"))
    assert STAGES.ssd_load_s(8) == pytest.approx(G.storage_s(8 * w, "nvme"))
    assert STAGES.dram_load_s == pytest.approx(G.copy_s(w, "H100-SXM", "h2d"))
    assert STAGES.fork_copy_s == pytest.approx(G.collective_s("sendrecv", w, 2, "H100-SXM", nodes=2))
    assert STAGES.cold_s() == pytest.approx(P.POD_START_S + 2.0 + P.DEVICE_INIT_S + STAGES.ssd_load_s() + P.WARMUP_S)
    assert STAGES.dram_s == pytest.approx(STAGES.dram_load_s + P.WARMUP_S)
    assert STAGES.fork_s_after(3) == pytest.approx(3 * (0.05 + STAGES.fork_copy_s) + P.WARMUP_S)
    with pytest.raises(InputError, match="runtime_s"):
        P.Stages(runtime_s=-1.0, fork_s=0.0)
    with pytest.raises(InputError):
        P.Stages(runtime_s=math.nan, fork_s=0.0)


def test_fork_rounds_double_the_sources():
    assert P.fork_rounds(1, 1) == [1]
    assert P.fork_rounds(7, 1) == [1, 2, 2, 3, 3, 3, 3]
    assert max(P.fork_rounds(64, 1)) == 7                     # 1 -> 2 -> ... -> 128 holders
    assert max(P.fork_rounds(63, 1)) == 6
    assert P.fork_rounds(4, 4) == [1, 1, 1, 1]


@settings(max_examples=50, deadline=None)
@given(k=st.integers(1, 300), s=st.integers(1, 40))
def test_fork_rounds_never_copy_from_more_holders_than_exist(k, s):
    r = P.fork_rounds(k, s)
    assert r == sorted(r) and min(r) >= 1
    for rnd in range(1, max(r) + 1):
        done_by = sum(1 for x in r if x <= rnd)
        assert done_by <= s * (2**rnd - 1)                    # holders double each round
        assert done_by == min(k, s * (2**rnd - 1))            # and every holder copies each round
    assert max(r) == math.ceil(math.log2(k / s + 1) - 1e-12)


def test_plan_scaleout_paths():
    slots = list(range(8, 24))                                # two hosts of 8
    cold = P.plan_scaleout(16, "cold", STAGES, pooled=16, sources=1, slots=slots)
    assert {p for p, _ in cold} == {"cold"}                   # the baseline ignores any pool
    assert all(t == pytest.approx(STAGES.cold_s(8)) for _, t in cold)        # 8 loads share each host's NVMe
    ds = P.plan_scaleout(16, "deepserve", STAGES, pooled=4, sources=1, slots=slots)
    assert [p for p, _ in ds] == ["fork"] * 4 + ["cold"] * 12
    assert [t for _, t in ds[:4]] == pytest.approx([STAGES.fork_s_after(r) for r in (1, 2, 2, 3)])
    assert ds[4][1] == pytest.approx(STAGES.cold_s(4)) and ds[-1][1] == pytest.approx(STAGES.cold_s(8))
    dram = P.plan_scaleout(3, "deepserve-dram", STAGES, pooled=3, sources=5, slots=slots)
    assert dram == [("dram", pytest.approx(STAGES.dram_s))] * 3
    nosrc = P.plan_scaleout(2, "deepserve", STAGES, pooled=2, sources=0, slots=slots)
    assert [p for p, _ in nosrc] == ["dram", "dram"]        # no serving source: DRAM pre-loading
    with pytest.raises(InputError, match="policy"):
        P.plan_scaleout(1, "magic", STAGES, 1, 1, slots)


# ---------------------------------------------------------------------------------------------------------
# The platform on the engine
# ---------------------------------------------------------------------------------------------------------

def burst(n: int = 400, span_s: float = 6.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"arrival_s": np.sort(rng.uniform(0, span_s, n)),
                         "prompt_tokens": rng.integers(200, 2000, n), "output_tokens": rng.integers(5, 200, n)})


def test_pool_takes_and_refills():
    je = P.JobExecutor(P.default_cost(), STAGES, "deepserve", prewarm=3)
    assert len(je.pool.ready(0.0)) == 3 and je.tasks[0].state == "serving"
    got = je.pool.take(2.0, 2)
    assert len(got) == 2 and len(je.pool.tasks) == 1 and je.pool.held_s == pytest.approx(4.0)
    assert je.pool.open_s(10.0) == pytest.approx(10.0)
    with pytest.raises(InputError, match="prewarm"):
        P.JobExecutor(P.default_cost(), STAGES, "deepserve", prewarm=-1)
    with pytest.raises(InputError, match="prewarm"):
        P.JobExecutor(P.default_cost(), STAGES, "deepserve", prewarm=64)


def test_replays_scale_out_by_their_paths_and_count_the_pool():
    tr = burst()
    out = P.compare(tr, STAGES, prewarm=4)
    cold, dram, fork = out["cold"], out["deepserve-dram"], out["deepserve"]
    for r in out.values():
        assert r.scaleout_s["count"] >= 1 and r.instances == 1 + r.scaleout_s["count"]
        assert r.gpu_seconds >= r.pool_gpu_seconds >= 0
    assert cold.pool_gpu_seconds == 0 and {s["path"] for s in cold.scaleouts} == {"cold"}
    assert "fork" not in {s["path"] for s in dram.scaleouts}
    assert dram.pool_gpu_seconds > 0 and fork.pool_gpu_seconds > 0
    cold_times = [STAGES.cold_s(n) for n in range(1, P.GPUS_PER_HOST + 1)]     # 1..8 loads sharing a host's NVMe
    assert all(any(s["ready_in_s"] == pytest.approx(c) for c in cold_times) for s in cold.scaleouts)
    assert fork.p99_ttft_s < cold.p99_ttft_s                  # a burst: ~5 s against ~15 s to the first new instance


def test_without_a_pool_deepserve_is_the_baseline_and_control_equals_it():
    tr = burst(200)
    cold = P.replay(tr, "cold", STAGES, prewarm=8)
    empty = P.replay(tr, "deepserve", STAGES, prewarm=0)
    assert empty.p99_ttft_s == cold.p99_ttft_s and empty.gpu_seconds == pytest.approx(cold.gpu_seconds)
    ctl = P.compare(tr, STAGES, prewarm=8, control=True)
    assert len({r.p99_ttft_s for r in ctl.values()}) == 1


def test_burst_window_compresses_the_first_minutes():
    df = pd.DataFrame({"arrival_s": [0.0, 30.0, 59.0, 61.0, 200.0], "prompt_tokens": 5, "output_tokens": 5})
    w = P.burst_window(df, 1, 10.0)
    assert list(w.arrival_s) == [0.0, 3.0, 5.9]


# ---------------------------------------------------------------------------------------------------------
# The real measurement
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_measured_fork_is_faster_than_cold_reads_evicted_weights_and_leaves_nothing(tmp_path):
    m = D.measure_starts(megabytes=32, repeats=1, rng=np.random.default_rng(0), workdir=tmp_path,
                         runtime="numpy,scipy.linalg")
    # Only the robust ordering: a fork skips interpreter start-up and imports; timings are benchmarks.
    assert m["seed"]["client_s"] < m["cold"]["total_s"] and m["prewarm"]["client_s"] < m["cold"]["total_s"]
    assert m["touch"]["touch_s"] >= 0 and m["cold"]["runtime_s"] > 0
    if hasattr(os, "posix_fadvise") and not _on_tmpfs(tmp_path) and math.isfinite(m["bytes"]["resident_max"]):
        assert m["bytes"]["resident_max"] <= 0.05            # every cold read found the file out of the page cache
    assert not list(tmp_path.iterdir())                         # the weight file was removed
    assert not _children()                                       # every helper was reaped (no zombies either)
    st_ = D.stages_from(m)
    assert st_.runtime_s == m["cold"]["runtime_s"] and st_.fork_s == m["seed"]["client_s"]


def test_resident_fraction_sees_reads_and_evictions(tmp_path):
    p = D.write_weights(tmp_path / "w.npy", 8, np.random.default_rng(0))
    p.read_bytes()
    hot = D.resident_fraction(p)
    if hot is None:
        pytest.skip("mincore unavailable")
    assert hot > 0.9
    if not hasattr(os, "posix_fadvise") or _on_tmpfs(tmp_path):
        pytest.skip("no page-cache eviction on this file system")
    assert D.evict(p)
    assert D.resident_fraction(p) <= 0.05


@pytest.mark.skipif(not hasattr(os, "fork") or not sys.platform.startswith("linux"), reason="Linux only")
def test_sigterm_mid_measurement_removes_weights_and_children(tmp_path):
    code = textwrap.dedent(f"""
        from pathlib import Path
        from syslab.core.lifecycle import Terminated, terminable
        from syslab.serving import deepserve as D
        try:
            with terminable():
                D.measure_starts(64, 50, workdir=Path({str(tmp_path)!r}), runtime="numpy,scipy.linalg")
        except Terminated:
            raise SystemExit(143)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob("*/weights.npy")):
        time.sleep(0.05)
    assert list(tmp_path.glob("*/weights.npy")), "the measurement never wrote its weights"
    time.sleep(0.5)                                             # let it start its cold starts
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _mentions(str(tmp_path)):
        time.sleep(0.05)
    assert not list(tmp_path.iterdir())                         # the temporary directory went
    assert not _mentions(str(tmp_path))                         # no helper or cold-start child survived


# ---------------------------------------------------------------------------------------------------------
# The tool
# ---------------------------------------------------------------------------------------------------------

def _cli(args):
    mount = typer.Typer()
    mount.add_typer(app, name="deepserve")
    return CliRunner().invoke(mount, ["deepserve", "scale", *args])


def _trace(path, rows):
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(f"{r}\n" for r in rows))
    return path


def _azure_rows(n=120, seed=0):
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2023-11-16 18:15:46")
    ts = t0 + pd.to_timedelta(np.sort(rng.uniform(0, 12, n)), unit="s")
    return [f"{t},{int(p)},{int(o)}" for t, p, o in zip(ts, rng.integers(100, 2000, n), rng.integers(5, 150, n),
                                                        strict=True)]


def test_tool_reports_every_policy(tmp_path):
    import json
    res = _cli(["--trace", str(_trace(tmp_path / "t.csv", _azure_rows())), "--runtime-s", "2", "--fork-s", "0.05",
                "--prewarm", "4", "--json"])
    assert res.exception is None, res.output
    out = json.loads(res.output)
    assert set(out["policies"]) == set(P.POLICIES) and out["requests"] == 120 and out["prewarm"] == 4
    for v in out["policies"].values():
        assert v["p99_ttft_s"] > 0 and v["gpu_seconds"] > 0 and "mean" in v["scaleout_s"]
    assert out["one_instance_s"]["cold"]["ready_in_s"] > out["one_instance_s"]["deepserve"]["ready_in_s"]
    res = _cli(["--trace", str(tmp_path / "t.csv"), "--runtime-s", "2", "--fork-s", "0.05", "--gpu", "h100"])
    assert res.exception is None and "(fork)" in res.output and "(dram)" in res.output and "(cold)" in res.output


@pytest.mark.parametrize("rows, args, field", [
    ([], [], "rows"),                                                       # header only
    (["2023-11-16 18:15:46,abc,5"], [], "ContextTokens"),                   # a non-number
    (None, ["--prewarm", "-1"], "--prewarm"),
    (None, ["--prewarm", "64"], "--prewarm"),
    (None, ["--time-scale", "0"], "--time-scale"),
    (None, ["--time-scale", "nan"], "--time-scale"),
    (None, ["--model", "gpt-5"], "--model"),
    (None, ["--gpu", "tpu-v9"], "--gpu"),
    (None, ["--model", "llama2-70b"], "--model"),                           # does not fit on one GPU
    (None, ["--runtime-s", "1"], "--runtime-s"),                             # only one of the two
    (None, ["--runtime-s", "-1", "--fork-s", "0"], "--runtime-s"),
])
def test_tool_rejects_impossible_inputs(tmp_path, rows, args, field):
    p = _trace(tmp_path / "t.csv", _azure_rows(5) if rows is None else rows)
    before = p.read_bytes()
    res = _cli(["--trace", str(p), *args] + ([] if "--runtime-s" in args else ["--runtime-s", "1", "--fork-s", "0"]))
    assert isinstance(res.exception, InputError), res.output
    assert field.lower() in str(res.exception).lower() or field == "rows"
    assert p.read_bytes() == before                             # nothing the user gave is modified


def _on_tmpfs(path) -> bool:
    best, fs = "", ""
    for line in open("/proc/mounts"):
        _, mnt, kind = line.split()[:3]
        if str(path).startswith(mnt) and len(mnt) > len(best):
            best, fs = mnt, kind
    return fs in ("tmpfs", "ramfs")


def _mentions(text: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd and int(entry) != os.getpid():
                out.append(int(entry))
    return out


def _children() -> list[int]:
    me, out = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                out.append(int(entry))
    return out


def test_stages_replace_keeps_validation():
    with pytest.raises(InputError):
        replace(STAGES, warmup_s=-1.0)


def test_routing_experiment_control_routes_shape_blind():
    rng = np.random.default_rng(0)
    heavy = pd.DataFrame({"prompt_tokens": rng.integers(800, 3000, 200), "output_tokens": rng.integers(5, 60, 200)})
    light = pd.DataFrame({"prompt_tokens": rng.integers(10, 120, 200), "output_tokens": rng.integers(100, 400, 200)})
    test, train = D.mixed_workload(heavy, light, 80, np.random.default_rng(1), rps=5.0)
    assert len(test) == len(train) == 80 and (np.diff(test.arrival_s) >= 0).all()
    on = D.pd_routing(test, train)
    off = D.pd_routing(test, train, control=True)
    th = on.pop("_threshold")
    off.pop("_threshold")
    assert 0 < th["share"] < 1 and th["ratio"] > 0
    assert set(on) == set(off) and "all-colocated" in on and "all-disaggregated 1P:3D" in on
    blind = off["mixed, shape-blind"]["mean_e2e_s"]
    assert off["mixed, PD-aware (bucket median)"]["mean_e2e_s"] == blind == on["mixed, shape-blind"]["mean_e2e_s"]
    assert on["all-colocated"]["to_pd"] == 0 and on["all-disaggregated 2P:2D"]["to_pd"] == 1
    assert on["mixed, PD-aware (oracle)"]["to_pd"] > 0.3               # the prefill-heavy half goes to PD
