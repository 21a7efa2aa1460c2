"""BlitzScale pieces (work in progress): multicast schedules and the scaling rule."""

import numpy as np
import pandas as pd
import pytest

from syslab.core import gpu as G
from syslab.core.errors import InputError
from syslab.core.hardware import link
from syslab.serving import blitzscale as B
from tests.conftest import need, table

S = 16e9

@pytest.mark.parametrize("n", [1, 2, 8, 16])
def test_chain_schedule_matches_its_closed_form(n):
    lk = link("nvlink4")
    sim = B.multicast_schedule(S, n, lk, "chain").makespan
    assert sim == pytest.approx(B.chain_time_s(S, n, lk), rel=0.01)


def test_chain_to_8_costs_about_one_transfer_and_a_star_8():
    lk = link("nvlink4")
    one = lk.transfer_s(S)
    assert B.multicast_schedule(S, 8, lk, "chain").makespan / one == pytest.approx(1 + 7 / 32, rel=0.01)
    assert B.multicast_schedule(S, 8, lk, "star").makespan / one == pytest.approx(8, rel=0.01)
    tree = B.multicast_schedule(S, 8, lk, "tree").makespan / one
    assert 1.22 < tree < 8
    with pytest.raises(InputError):
        B.multicast_schedule(S, 2, lk, "ring")


def test_scale_rule_goes_to_the_band_middle_and_down_one_at_a_time():
    busy = [B.Band(load=100_000, capacity=10_000, high=0.7, low=0.5)]     # needs 15..20 instances
    assert B.scale_target(2, busy, max_num=100) == 18
    assert B.scale_target(2, busy) == 14                                  # clamped to max_num
    idle = [B.Band(load=0, capacity=10_000, high=0.7, low=0.5)]
    assert B.scale_target(10, idle) == 9 and B.scale_target(2, idle) == 2  # one at a time, never below 2
    inside = [B.Band(load=30_000, capacity=10_000, high=0.7, low=0.5)]    # 5..6
    assert B.scale_target(5, inside) == 5 and B.scale_target(6, inside) == 6


def test_serverlessllm_loads_from_ssd_on_a_cold_host_and_blitzscale_by_chain():
    import numpy as np
    import pandas as pd

    # A burst that needs more than two instances right away.
    n = 600
    df = pd.DataFrame({"arrival_s": np.linspace(0, 3, n), "prompt_tokens": [4000] * n, "output_tokens": [50] * n})
    _, sllm = B.run_policy(df, "serverlessllm")
    _, blitz = B.run_policy(df, "blitzscale")
    assert sllm and blitz
    assert {x["source"] for x in sllm} <= {"host", "ssd"} and {x["source"] for x in blitz} <= {"nvlink", "rdma", "ssd"}
    # Chains over NVLink/RDMA load faster than PCIe/SSD.
    assert np.mean([x["load_s"] for x in blitz]) < np.mean([x["load_s"] for x in sllm])
    with pytest.raises(InputError):
        B.run_policy(df, "magic")


def test_cli_replay_json_has_each_policy(tmp_path, capsys):
    import json

    from syslab.cli import main

    p = tmp_path / "t.csv"
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"] + [
        f"2023-11-16 18:{m:02d}:{s:02d}.000000,{200 + 10 * s},{20 + s}" for m in range(2) for s in range(0, 60, 2)]
    p.write_text("\n".join(rows) + "\n")
    with pytest.raises(SystemExit) as e:
        main(["blitzscale", "replay", "--trace", str(p), "--time-scale", "2", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert e.value.code == 0
    for policy in ("blitzscale", "serverlessllm", "static"):
        assert set(d[policy]) >= {"p99_ttft_s", "gpu_seconds"} and d[policy]["gpu_seconds"] > 0
    p.write_text("TIMESTAMP,ContextTokens\n2023-11-16 18:00:00,5\n")
    with pytest.raises(SystemExit) as e:
        main(["blitzscale", "replay", "--trace", str(p)])
    assert e.value.code == 2


# --- sensitivity: load time and SLO ------------------------------------------------------------------------------

def _burst():
    import numpy as np
    import pandas as pd

    n = 600
    return pd.DataFrame({"arrival_s": np.linspace(0, 3, n), "prompt_tokens": [4000] * n, "output_tokens": [50] * n})


@pytest.fixture(scope="module")
def burst_compare():
    df = _burst()
    runs: dict = {}
    return df, B.compare(df, static_runs=runs), runs


def test_slower_stop_the_world_loads_never_help_serverlessllm(burst_compare):
    df, out, _ = burst_compare
    rows = B.load_sensitivity(df, out)
    assert [(r["model"], r["host_cache"]) for r in rows] == list(B.SWEEP_LOADS)
    default = [r for r in rows if r["default"]]
    assert len(default) == 1 and default[0]["sllm"] is out["serverlessllm"] and default[0]["blitz"] is out["blitzscale"]
    assert default[0]["reduction"] == 1 - out["blitzscale"]["p99_ttft_s"] / out["serverlessllm"]["p99_ttft_s"]
    # the sweep's rows go from the fastest load to the slowest: host cache, NVMe, then bigger weights from NVMe
    load = [r["sllm"]["mean_load_s"] for r in rows]
    p99 = [r["sllm"]["p99_ttft_s"] for r in rows]
    assert load == sorted(load) and p99 == sorted(p99)
    blitz = [r["blitz"]["p99_ttft_s"] for r in rows]
    assert blitz == sorted(blitz)                        # bigger weights take BlitzScale's chains longer too


def test_load_sweep_under_control_gives_blitzscale_no_edge(burst_compare):
    df, out, _ = burst_compare
    rows = B.load_sensitivity(df, out, control=True)
    assert all(r["reduction"] == 0.0 for r in rows if not r["default"])


@pytest.mark.parametrize("body, says", [
    ("", "0 data row"),                                                                  # header only
    ("2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:50.53,396.5,109\n", "row 3 has '396.5'"),  # fractional
    ("2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:50.53,abc,109\n", "row 3 has 'abc'"),      # not a number
])
def test_cli_replay_rejects_a_malformed_trace_naming_file_and_row(tmp_path, capsys, body, says):
    from syslab.cli import main

    p = tmp_path / "mine.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + body)
    before = p.read_bytes()
    with pytest.raises(SystemExit) as e:
        main(["blitzscale", "replay", "--trace", str(p)])
    msg = capsys.readouterr().err
    assert e.value.code == 2 and "mine.csv" in msg and says in msg and "Traceback" not in msg
    assert p.read_bytes() == before


def test_static_replays_are_reused_and_looser_slos_need_no_more_instances(burst_compare):
    df, out, runs = burst_compare
    assert out["static"]["instances"] in runs
    before = dict(runs)
    rows = B.slo_sensitivity(df, out, runs)
    assert all(runs[n] is before[n] for n in before)     # nothing replayed twice
    assert [r["multiple"] for r in rows] == list(B.SWEEP_SLO_MULTIPLES)
    n = [r["static_n"] for r in rows]
    assert n == sorted(n, reverse=True)
    default = next(r for r in rows if r["default"])
    assert default["static_n"] == out["static"]["instances"]
    assert default["saving"] == 1 - out["blitzscale"]["gpu_seconds"] / out["static"]["gpu_seconds"]
    assert [r["blitz_meets"] for r in rows] == sorted(r["blitz_meets"] for r in rows)   # looser SLOs are easier


def test_host_cache_switch_sends_serverlessllm_to_nvme():
    df = _burst()
    _, hit = B.run_policy(df, "serverlessllm")
    _, miss = B.run_policy(df, "serverlessllm", host_cache=False)
    assert "host" in {x["source"] for x in hit} and {x["source"] for x in miss} == {"ssd"}


@pytest.mark.slow
@pytest.mark.shared_cores
@pytest.mark.xdist_group("blitzscale")
def test_reproduction_sensitivity_tables_are_consistent_with_the_claims(quick_reproduction):
    need("azure_llm_2023")
    r, _ = quick_reproduction("blitzscale")
    assert r["status"] == "ok", r.get("traceback")
    f = {x["id"]: x for x in r["findings"]}
    paper = table(r, "The paper's setting")
    claim_row = next(row for row in paper["rows"] if row[0] == f"{B.MULTI_CLAIM_GB:g}")
    assert claim_row[-1] == round(f["p99-vs-serverlessllm"]["measured"], 3)
    load = table(r, "Sensitivity to the load time")
    pol = r["metrics"]["policies"]
    single = 1 - pol["blitzscale"]["p99_ttft_s"] / pol["serverlessllm"]["p99_ttft_s"]
    assert load["rows"][0][-1] == round(single, 3) and f"({single:.0%} lower)" in f["p99-vs-serverlessllm"]["note"]
    slo = table(r, "Sensitivity to the TTFT SLO")
    cols = slo["columns"]
    rows = [dict(zip(cols, row, strict=True)) for row in slo["rows"]]
    default = next(x for x in rows if x["SLO (x unloaded)"] == B.SLO_MULTIPLE)
    assert default["BlitzScale saving"] == round(f["gpu-vs-static"]["measured"], 3)
    sllm_saving = 1 - pol["serverlessllm"]["gpu_seconds"] / pol["static"]["gpu_seconds"]
    assert default["ServerlessLLM saving"] == round(sllm_saving, 3)
    assert f"saves {sllm_saving:.3f}" in f["gpu-vs-static"]["note"]     # the control's value, computed
    assert "the load-time sweep there" in f["p99-vs-serverlessllm"]["note"]
    assert "sensitivity to the SLO" in f["gpu-vs-static"]["note"]


def test_three_models_scale_from_their_own_instances_and_the_control_loads_like_serverlessllm():
    rng = np.random.default_rng(1)
    n = 900
    arrivals = np.sort(np.concatenate([rng.uniform(0, 60, n // 3), rng.uniform(20, 26, 2 * n // 3)]))
    df = pd.DataFrame({"arrival_s": arrivals, "prompt_tokens": rng.integers(500, 4000, n),
                       "output_tokens": rng.integers(20, 300, n)})
    mixed = B.assign_models(df, seed=0)
    assert set(mixed.model) == {m for m, _, _ in B.MULTI_MODELS}
    res, loads = B.run_multi(mixed, "blitzscale", host_gb=160)
    assert loads and {x["source"] for x in loads} <= {"nvlink", "rdma", "ssd"}
    assert all(x["wait_s"] >= 0 for x in loads)
    served = res.requests
    assert (served.groupby("instance").model.nunique() == 1).all()       # an instance serves one model
    rows = B.multi_model_sensitivity(df, control=True)
    assert all(r["reduction"] == pytest.approx(0.0) for r in rows)
    with pytest.raises(InputError, match="policy"):
        B.run_multi(mixed, "static", host_gb=160)


def test_tp_groups_stay_inside_a_host_and_transfers_queue_on_shared_resources():
    c = B.Cluster(nodes=2, gpus_per_node=8)
    c.placement[0] = (0, (0, 1, 2, 3))
    groups = c.free_groups(4)
    assert groups == [(0, (4, 5, 6, 7)), (1, (0, 1, 2, 3)), (1, (4, 5, 6, 7))]
    assert [len(g) for _, g in c.free_groups(3)] == [3, 3, 3]            # 4 left on host 0: one group of 3
    assert c.reserve(("ssd", 0), 1.0, 2.0) == 1.0 and c.reserve(("ssd", 0), 1.5, 2.0) == 3.0
    assert c.reserve(("ssd", 1), 1.5, 2.0) == 1.5


def test_serverlessllm_loads_on_one_host_share_its_nvme_and_zigzag_helps_a_warm_instance():
    from syslab.serving import engine as E
    cost = B.COST
    made = []

    def launch(ready_in):
        inst = E.Instance(cost, 20000, id=len(made) + 10, ready_s=ready_in)
        made.append(inst)
        return inst
    for mode, live in (("serverlessllm", False), ("blitzscale", True)):
        made.clear()
        sc = B.Scaler(cost, mode, live=live, cluster=B.Cluster(nodes=2, gpus_per_node=4), host_cache=False)
        warm = E.Instance(cost, 20000, id=0)
        sc.place_initial([0])
        view = E.ClusterView(0.0, [warm], 0, 0, launch, lambda i: None)
        sc._scale_up(view, [warm], 3)
        waits = sorted(x["wait_s"] for x in sc.loads)
        if mode == "serverlessllm":   # three loads from host 0's NVMe, one after another
            one = G.storage_s(cost.shape.weight_bytes(), B.SSD_MEDIUM)
            assert waits == pytest.approx([0.0, one, 2 * one])
            assert not warm.splits
        else:                         # one NVLink chain from the warm host; the busiest warm instance is helped
            assert {x["source"] for x in sc.loads} == {"nvlink"} and waits == [0.0, 0.0, 0.0]
            assert len(warm.splits) == 1 and warm.splits[0].ready_s == pytest.approx(made[0].ready_s)
