"""Weaver: kernels that sum to the engine's iteration, the cold GPU's timeline (polling, splitting, FIFO), both
models on the engine, MuxServe's shared GPUs, exact split attention, and the ``syslab weaver`` tool."""

import math

import numpy as np
import pandas as pd
import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from syslab.core.errors import InputError
from syslab.serving import engine as E
from syslab.serving import weaver as W
from syslab.serving.weaver import cosim as C
from syslab.serving.weaver import experiment as X
from tests.conftest import need, table

S = X.setup()


def _frame(n, rate, seed=0, prompt=(50, 3000), output=(2, 300)):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"arrival_s": np.sort(rng.uniform(0, n / rate, n)),
                         "prompt_tokens": rng.integers(*prompt, n), "output_tokens": rng.integers(*output, n)})


# --- kernels -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [(1, 0.0, 900.0, 0.0), (300, 0.0, 2e5, 0.0), (2048, 2048 * 1500.0, 5e4, 2000.0),
                                  (512, 512 * 256.0, 0.0, 512.0)])
def test_an_iterations_kernels_sum_to_the_engines_iteration_time(args):
    cost = S.cost(S.hot)
    layer, head = cost.kernels(*args)
    ref = E.IterationCost(S.hot, S.device).time_s(*args)
    assert S.hot.layers * layer.sum() + head.sum() == pytest.approx(ref, rel=1e-12)
    assert cost.time_s(*args) == ref


@given(st.lists(st.floats(1e-6, 0.05), min_size=1, max_size=30), st.sampled_from([None, 5e-4, 1e-3, 2e-3]))
def test_splitting_bounds_every_piece_by_tau_and_adds_only_its_overheads(kernels, tau):
    pieces = C.split_pieces(np.array(kernels), tau)
    if tau is None:
        assert pieces.tolist() == kernels
        return
    n = np.maximum(1, np.ceil(np.array(kernels) / tau))
    assert pieces.max() <= tau + C.SPLIT_S + C.POLL_S + 1e-15
    extra = ((n - 1) * C.SPLIT_S).sum() + n.sum() * C.POLL_S
    assert pieces.sum() == pytest.approx(sum(kernels) + extra, rel=1e-12)


def test_mux_cost_on_all_sms_of_an_idle_pair_is_the_engines_tp2_iteration():
    mc = C.MuxCost(S.cost(S.hot, 2), 1.0)
    ref = E.IterationCost(S.hot, S.device, 2)
    for args in ((64, 0.0, 64 * 1200.0, 0.0), (2048, 2048 * 1024.0, 0.0, 2048.0)):
        assert mc.time_s(*args) == pytest.approx(ref.time_s(*args), rel=1e-12)
    assert C.MuxCost(S.cost(S.hot, 2), 0.5).time_s(2048, 2048 * 1024.0, 0.0, 2048.0) > ref.time_s(
        2048, 2048 * 1024.0, 0.0, 2048.0)


# --- the cold GPU's timeline ----------------------------------------------------------------------------------------

def _cold_gpu(priority, tau):
    inst = E.Instance(S.cost(S.cold, tau_s=tau), S.cold_tokens, fast_forward=False, model="cold")
    reqs = [E.Request(0, 0.0, 1800, 5, model="cold")]
    return C.ColdGPU(inst, reqs, priority=priority), reqs


@pytest.mark.parametrize("priority", [True, False])
def test_a_task_waits_for_the_running_kernel_with_weaver_and_for_the_whole_iteration_when_naive(priority):
    gpu, reqs = _cold_gpu(priority, C.TAU_S if priority else None)
    gpu.advance(1e-12)                               # commits the prefill iteration
    cur = gpu.cur
    t = cur.start + 0.37 * (cur.end - cur.start)
    end = gpu.place(t, 2e-3)
    start = end - 2e-3
    if priority:
        assert t <= start <= t + C.TAU_S + C.SPLIT_S + C.POLL_S
        assert gpu.inst.clock == pytest.approx(cur.end) and cur.end == pytest.approx(cur.start + cur.cum[-1] + 2e-3)
    else:
        assert start == cur.end                      # FIFO behind the submitted iteration; it is not stretched
        assert cur.end == pytest.approx(cur.start + cur.cum[-1])
    gpu.finish()
    assert all(math.isfinite(r.finish_s) for r in reqs)
    if not priority:                                  # the next cold iteration waited for the task
        assert reqs[0].finish_s > reqs[0].first_token_s


def test_stretching_a_cold_iteration_moves_the_first_token_it_emits():
    plain, reqs0 = _cold_gpu(True, C.TAU_S)
    plain.finish()
    gpu, reqs = _cold_gpu(True, C.TAU_S)
    gpu.advance(1e-12)
    gpu.place(gpu.cur.start + 1e-4, 5e-3)
    gpu.finish()
    assert reqs[0].first_token_s == pytest.approx(reqs0[0].first_token_s + 5e-3)
    assert reqs[0].finish_s == pytest.approx(reqs0[0].finish_s + 5e-3)


def test_an_idle_cold_gpu_runs_a_task_at_once_and_tasks_never_overlap():
    inst = E.Instance(S.cost(S.cold), S.cold_tokens, fast_forward=False, model="cold")
    gpu = C.ColdGPU(inst, [], priority=True)
    assert gpu.place(1.0, 1e-3) == 1.001
    assert gpu.place(1.0005, 1e-3) == pytest.approx(1.002)      # behind the first task
    assert gpu.waits[0] == 0.0 and gpu.waits[1] == pytest.approx(5e-4)


# --- both models on the engine -------------------------------------------------------------------------------------

def test_the_two_instance_loop_equals_the_engines_cluster_on_dedicated_gpus():
    hot_df, cold_df = _frame(80, 6.0, 1), _frame(8, 0.5, 2)
    ref = X.run("dedicated", S, hot_df, cold_df)
    hot_r, cold_r = X.requests(hot_df, "hot"), X.requests(cold_df, "cold")
    hot = E.Instance(S.cost(S.hot), S.pool(S.hot), max_batch_tokens=S.max_batch_tokens, max_seqs=S.max_seqs,
                     fast_forward=False, model="hot")
    cold = E.Instance(S.cost(S.cold), S.pool(S.cold), max_batch_tokens=S.max_batch_tokens, max_seqs=S.max_seqs,
                      id=1, fast_forward=False, model="cold")
    C.cosimulate(hot, hot_r, cold, cold_r)
    for got, want in ((hot_r, ref["hot"]), (cold_r, ref["cold"])):
        ttft = np.array([r.first_token_s - r.arrival_s for r in got])
        assert np.allclose(ttft, want.ttft_s.to_numpy(), rtol=1e-9, atol=1e-12)


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["naive", "weaver"]), st.floats(2.0, 14.0))
def test_weaving_serves_everyone_and_weaver_waits_at_most_one_split_kernel(seed, policy, rate):
    hot_df, cold_df = _frame(40, rate, seed), _frame(6, 1.0, seed + 1)
    out = X.run(policy, S, hot_df, cold_df)
    for df in (out["hot"], out["cold"]):
        assert len(df) and (df.ttft_s >= 0).all() and (df.tpot_s.fillna(0) >= 0).all()
    assert 0.0 <= out["offloaded_share"] <= 1.0
    if policy == "weaver":     # a hot task never arrives while its previous one runs: one kernel's wait at most
        assert out["p99_wait_s"] <= C.TAU_S + C.SPLIT_S + C.POLL_S + 1e-12


def test_offloading_to_an_idle_cold_gpu_speeds_up_a_decode_heavy_hot_model():
    hot_df = _frame(120, 30.0, 4, prompt=(20, 60), output=(200, 400))
    ded = X.metrics(X.run("dedicated", S, hot_df, hot_df.iloc[:0])["hot"])
    wv = X.run("weaver", S, hot_df, hot_df.iloc[:0])
    assert wv["offloaded_share"] > 0.1 and X.metrics(wv["hot"])["mean_tpot_s"] < ded["mean_tpot_s"]


def test_naive_at_weavers_share_waits_longer_than_weaver_behind_a_busy_cold_model():
    hot_df, cold_df = _frame(60, 8.0, 5), _frame(20, 2.0, 6)
    wv = X.run("weaver", S, hot_df, cold_df, fixed_share=0.4)
    nv = X.run("naive", S, hot_df, cold_df, fixed_share=0.4)
    assert nv["mean_wait_s"] > 5 * wv["mean_wait_s"]
    assert X.metrics(nv["hot"])["p99_tpot_s"] > X.metrics(wv["hot"])["p99_tpot_s"]


def test_the_lent_kv_and_muxserves_pool_add_up_to_the_same_memory():
    ded_total = S.pool(S.hot) + S.pool(S.cold)
    assert S.pool(S.hot) + S.lent_tokens + S.cold_tokens == pytest.approx(ded_total, abs=2)
    assert X._mux_pool(S) == pytest.approx(ded_total, rel=1e-3)
    with pytest.raises(InputError, match="policy"):
        X.run("magic", S, _frame(2, 1.0), _frame(1, 1.0))


def test_hot_window_rescales_to_the_rate_and_keeps_the_order():
    trace = _frame(500, 5.0, 7)
    w = X.hot_window(trace, 10.0, 20.0)
    assert len(w) == 200 and (np.diff(w.arrival_s) >= 0).all()
    assert len(w) / w.arrival_s.iloc[-1] == pytest.approx(10.0)


def test_control_runs_dedicated_in_weavers_slot():
    from syslab.core.run import Run

    trace = _frame(200, 5.0, 8)
    ded, wv = W._pair(S, trace, _frame(4, 0.5, 9), 12.0, 2, Run(system="weaver", control=True))
    assert wv["rate_rps"] == ded["rate_rps"] and wv["run"].get("offloaded_share", 0.0) == 0.0


def test_split_attention_matches_unsplit_execution():
    assert W.split_attention_error(steps=5, requests=4, dim=8, seed=3) < 1e-12


# --- the tool -------------------------------------------------------------------------------------------------------

def _tool():
    from syslab.serving.weaver.cli import app

    parent = typer.Typer()
    parent.add_typer(app, name="weaver")
    return parent


def _csv(path, rows):
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(f"{r}\n" for r in rows))
    return path


def test_tool_prints_every_policy_on_a_users_trace(tmp_path):
    import json

    rows = [f"2023-11-16 18:00:{s // 10:02d}.{s % 10}00000,{300 + 37 * s % 900},{20 + s % 60}"
            for s in range(0, 500, 5)]
    p = _csv(tmp_path / "mine.csv", rows)
    r = CliRunner().invoke(_tool(), ["weaver", "simulate", "--trace", str(p), "--cold-rate", "1", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert set(d["policies"]) == set(X.POLICIES) and d["requests"] == 100
    for v in d["policies"].values():
        assert {"p99_ttft_s", "mean_ttft_s", "p99_tpot_s", "mean_tpot_s", "slo_attainment"} <= set(v["hot"])
    assert d["policies"]["muxserve"]["sm_share"] in X.MUX_SHARES
    r = CliRunner().invoke(_tool(), ["weaver", "simulate", "--trace", str(p)])
    assert r.exit_code == 0 and "100 hot requests" in r.stdout


@pytest.mark.parametrize("rows, args, field", [
    ([], [], None),                                                                         # header only
    (["2023-11-16 18:00:00.0,374,44", "2023-11-16 18:00:01.0,abc,9"], [], "ContextTokens"),  # not a number
    (["2023-11-16 18:00:00.0,374,44"], ["--hot-model", "gpt-5"], "--hot-model"),             # unknown model
    (["2023-11-16 18:00:00.0,374,44"], ["--cold-model", "nope"], "--cold-model"),
    (["2023-11-16 18:00:00.0,374,44"], ["--gpu", "Z80"], "--gpu"),
    (["2023-11-16 18:00:00.0,374,44"], ["--cold-rate", "-1"], "--cold-rate"),
    (["2023-11-16 18:00:00.0,374,44"], ["--cold-rate", "nan"], "--cold-rate"),
    (["2023-11-16 18:00:00.0,374,44"], ["--hot-model", "llama2-70b"], "--hot-model"),        # does not fit a GPU
    (["2023-11-16 18:00:00.0,300000,44"], [], "ContextTokens"),                              # over one GPU's KV
])
def test_tool_refuses_impossible_inputs_naming_the_field(tmp_path, rows, args, field):
    p = _csv(tmp_path / "bad.csv", rows)
    before = p.read_bytes()
    r = CliRunner().invoke(_tool(), ["weaver", "simulate", "--trace", str(p), *args])
    assert isinstance(r.exception, InputError), r.output
    if field:
        assert field in str(r.exception)
    assert r.exception.fix and p.read_bytes() == before


# --- the reproduction ------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.shared_cores
@pytest.mark.xdist_group("weaver")
def test_reproduction_tables_are_consistent_with_the_claims(quick_reproduction):
    need("azure_llm_2023")
    r, _ = quick_reproduction("weaver")
    assert r["status"] == "ok", r.get("traceback")
    f = {x["id"]: x for x in r["findings"]}
    main = table(r, "Largest hot request rate within the SLO")
    rows = {row[0]: dict(zip(main["columns"], row, strict=True)) for row in main["rows"]}
    ded, wv = rows["dedicated"], rows["Weaver"]
    assert wv["hot rps"] / ded["hot rps"] == pytest.approx(f["hot-throughput"]["measured"], rel=0.01)
    assert wv["cold mean TPOT (ms)"] - ded["cold mean TPOT (ms)"] == pytest.approx(
        f["cold-overhead-ms"]["measured"], abs=0.02)
    for row in rows.values():                       # each policy's row is a run that met the SLO
        if row["policy"].startswith("naive"):
            continue
        assert row["P99 TPOT (ms)"] <= X.SLO_TPOT_S * 1e3 and row["P99 TTFT (s)"] <= X.SLO_TTFT_S
    sens = table(r, "Sensitivity: GPU memory")
    first = dict(zip(sens["columns"], sens["rows"][0], strict=True))
    assert first["gain (x)"] == pytest.approx(f["hot-throughput"]["measured"], abs=1e-3)
    assert "sensitivity (GPU memory x decode share)" in f["hot-throughput"]["note"]
    assert "sensitivity to the cold model's budget" in f["vs-muxserve"]["note"]
