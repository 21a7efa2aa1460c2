"""stragglers: agreement with the artifact's published results, simulator invariants, model recovery, inputs."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syslab.core.errors import InputError
from syslab.training import stragglers as S
from tests.conftest import need

# Expected values published by the artifact (ByteDance-Seed/StragglerAnalysis, data/result-*.json,
# data/ms-*.json, data/mw-*.json). A faithful implementation agrees to three decimals.
ARTIFACT = {
    "ST": {"slowdown": 1.1787021836556841, "launch": 1.01921617557204, "m_s": 1.2193563788811714,
           "m_w": 0.031404269124045224, "stage": {3: 1.2322559543157936, 0: 0.9980450635272368},
           "dp": {1: 1.1778704237064905, 0: 1.1730828198099532},
           "optype": {"forward-compute": 1.0874989663025318, "backward-compute": 1.074156472437866,
                      "embedding-grads-all-reduce": 1.0095504024370303, "gc": 1.0}},
    "AR": {"slowdown": 1.9730450967262543, "launch": 1.0067506609199466, "m_s": -0.00121196404622606,
           "m_w": 1.0017012777290497, "stage": {0: 1.9791886375936654, 3: 1.0023690791892135},
           "dp": {0: 1.9730444100764113, 2: 1.0111514645495234},
           "optype": {"backward-compute": 1.580506213380076, "forward-compute": 1.3688857250958648,
                      "grads-reduce-scatter": 1.0107821191609507, "forward-pp-comm": 1.0010706985685933}},
    "SE": {"slowdown": 9.066555374169395 / 5.897478331588793, "m_s": 0.6877108929755429,
           "m_w": 0.025062266911209777, "stage": {1: 1.4354480066634938, 0: 1.1678121027453754},
           "dp": {8: 1.204479822846585, 24: 1.1180441127858989},
           "optype": {"backward-compute": 1.412770613588, "forward-compute": 1.145963507348328,
                      "embedding-grads-all-reduce": 1.001754713787978}},
}


@pytest.fixture(scope="module")
def real():
    store = need("straggler_traces")
    return {n: S.analyze_files(store.path("straggler_traces", f"trace-{n}.parquet"),
                               store.path("straggler_traces", f"meta-{n}.yaml")) for n in ARTIFACT}


@pytest.mark.parametrize("name", list(ARTIFACT))
def test_real_traces_agree_with_artifact_to_three_decimals(real, name):
    a, want = real[name], ARTIFACT[name]
    assert a.slowdown == pytest.approx(want["slowdown"], abs=1e-3)
    assert a.m_s.rem == pytest.approx(want["m_s"], abs=1e-3)
    assert a.m_w.rem == pytest.approx(want["m_w"], abs=1e-3)
    if "launch" in want:
        assert a.launch_slowdown == pytest.approx(want["launch"], abs=1e-3)
    for k, v in want["stage"].items():
        assert a.by_stage[k] == pytest.approx(v, abs=1e-3)
    for k, v in want["dp"].items():
        assert a.by_dp_rank[k] == pytest.approx(v, abs=1e-3)
    for k, v in want["optype"].items():
        assert a.by_optype[k] == pytest.approx(v, abs=1e-3)
    assert list(a.by_optype)[0] == max(want["optype"], key=want["optype"].get)


def test_real_traces_root_causes(real):
    assert S.name_root_cause(real["SE"]) == "sequence-imbalance"
    assert S.name_root_cause(real["ST"]) == "last-stage"
    assert S.name_root_cause(real["AR"]) == "slow-worker"
    assert real["AR"].worst_workers == [{"rank": 0, "dp_rank": 0, "stage": 0}]


def test_replay_with_launch_delays_reproduces_the_recorded_steps(real):
    for a in real.values():
        assert a.sim_error < 1e-6
        # Launch delays are >= -10 ms (clock skew is kept), so removing them cannot lengthen a step by more.
        assert np.all(np.array(a.step_t_nodelay) <= np.array(a.step_t_trace) + 1e-2)
        assert a.launch_slowdown >= 1.0


def _reference_times(model, duration, transfer, n_steps, dp):
    """Brute force: one copy at a time, group members end at (latest start over group [and DP]) + transfer,
    by repeated relaxation until nothing changes."""
    nodes = model.nodes
    idx = {n: i for i, n in enumerate(nodes)}
    gid = model.group_of()
    k_total = n_steps * dp
    start = np.full((len(nodes), k_total), np.nan)
    end = np.full((len(nodes), k_total), np.nan)
    changed = True
    while changed:
        changed = False
        for n in nodes:
            i = idx[n]
            if not np.isnan(start[i]).any():
                continue
            deps = [idx[u] for u in model.deps[n]]
            if any(np.isnan(end[d]).any() for d in deps):
                continue
            start[i] = np.max([end[d] for d in deps], axis=0) if deps else 0.0
            changed = True
        for n in nodes:
            i = idx[n]
            if not np.isnan(end[i]).any() or np.isnan(start[i]).any():
                continue
            if n not in gid:
                end[i] = start[i] + duration[i]
                changed = True
                continue
            members = [idx[m] for m in model.groups[gid[n]]]
            if np.isnan(start[members]).any():
                continue
            go = start[members].max(axis=0)
            if n in model.dp_sync:
                go = np.repeat(go.reshape(n_steps, dp).max(axis=1), dp)
            for m in members:
                end[m] = go + transfer[m]
            changed = True
    return start, end


def test_simulator_matches_brute_force_reference():
    cfg = S.SynthConfig(pp=3, dp=2, microbatches=4, steps=3)
    model = S.synthetic_model(cfg)
    rng = np.random.default_rng(3)
    dur = rng.uniform(0.01, 0.1, (len(model.nodes), cfg.steps * cfg.dp))
    tr = rng.uniform(0.0, 0.01, dur.shape)
    start, end = S.Simulator(model, cfg.steps, cfg.dp).run(dur, tr)
    ref_start, ref_end = _reference_times(model, dur, tr, cfg.steps, cfg.dp)
    assert np.allclose(start, ref_start) and np.allclose(end, ref_end)


@settings(max_examples=12, deadline=None)
@given(pp=st.integers(2, 4), dp=st.integers(1, 3), extra=st.integers(0, 4), cause=st.sampled_from([None, *S.CAUSES]),
       seed=st.integers(0, 1000))
def test_analysis_rebuilds_the_true_dependency_model_from_timestamps(pp, dp, extra, cause, seed):
    cfg = S.SynthConfig(pp=pp, dp=dp, microbatches=pp + extra, steps=3)
    df, meta = S.synthesize_trace(cfg, cause, np.random.default_rng(seed))
    truth = S.synthetic_model(cfg)
    rebuilt = S.build_dependency_model(df, meta.dsp_size)
    assert set(rebuilt.nodes) == set(truth.nodes)
    for n in truth.nodes:
        assert set(rebuilt.deps[n]) == set(truth.deps[n]), n
    assert sorted(map(sorted, rebuilt.groups)) == sorted(map(sorted, truth.groups))
    assert rebuilt.dp_sync == truth.dp_sync
    a = S.analyze(df, meta)
    assert a.sim_error < 1e-9                      # replay with launch delays reproduces the synthetic trace
    assert len(a.steps) == 3


def test_schedule_invariants_in_simulated_times():
    cfg = S.SynthConfig(pp=4, dp=2, microbatches=6, steps=4)
    df, meta = S.synthesize_trace(cfg, "gc", np.random.default_rng(0))
    r = S.Replay(df, meta)
    start, end = r.simulate()
    idx = {n: i for i, n in enumerate(r.model.nodes)}
    for n, deps in r.model.deps.items():
        for u in deps:
            assert np.all(start[idx[n]] >= end[idx[u]] - 1e-12)
    for g in r.model.groups:   # a collective cannot end before its last member started
        rows = [idx[m] for m in g]
        assert np.all(end[rows] >= start[rows].max(axis=0) - 1e-12)


def test_attribution_names_injected_causes():
    cfg = S.SynthConfig()
    for cause in S.CAUSES:
        df, meta = S.synthesize_trace(cfg, cause, np.random.default_rng(11))
        assert S.name_root_cause(S.analyze(df, meta)) == cause


def test_no_cause_means_no_straggler():
    df, meta = S.synthesize_trace(S.SynthConfig(), None, np.random.default_rng(5))
    a = S.analyze(df, meta)
    assert a.slowdown < S.DECOMPOSE_THRESHOLD and a.by_optype is None and S.name_root_cause(a) == "none"


def test_compute_noise_alone_is_not_named_sequence_imbalance():
    import dataclasses

    cfg = dataclasses.replace(S.SynthConfig(), compute_jitter=0.3)      # heavy noise, independent per op
    df, meta = S.synthesize_trace(cfg, None, np.random.default_rng(6))
    a = S.analyze(df, meta)
    assert a.slowdown >= S.DECOMPOSE_THRESHOLD and next(iter(a.by_optype)) in ("forward-compute", "backward-compute")
    assert abs(a.work_agreement[0]) < 0.2 and S.name_root_cause(a) == "noise"
    seq, meta = S.synthesize_trace(S.SynthConfig(), "sequence-imbalance", np.random.default_rng(6))
    b = S.analyze(seq, meta)
    assert b.work_agreement[0] > 0.8 and S.name_root_cause(b) == "sequence-imbalance"


def test_synchronised_gc_recovers_most_of_the_gc_slowdown():
    df, meta = S.synthesize_trace(S.SynthConfig(), "gc", np.random.default_rng(2))
    out = S.synchronized_gc_recovery(df, meta)
    assert out["t_no_gc_s"] <= out["t_sync_gc_s"] <= out["t_nodelay_s"]
    assert out["recovered"] > 0.5


def test_unsynchronised_gc_baseline_recovers_nothing():
    df, meta = S.synthesize_trace(S.SynthConfig(), "gc", np.random.default_rng(2))
    out = S.synchronized_gc_recovery(df, meta, synchronise=False)
    assert out["t_sync_gc_s"] == pytest.approx(out["t_nodelay_s"])
    assert out["recovered"] == pytest.approx(0.0)


# --- bad input -------------------------------------------------------------------------------------------

@pytest.fixture
def small_trace(tmp_path):
    df, meta = S.synthesize_trace(S.SynthConfig(pp=2, dp=2, microbatches=2, steps=2), None, np.random.default_rng(0))
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    meta_path = tmp_path / "m.yaml"
    meta_path.write_text("dp_size: 2\npp_size: 2\n")
    return df, path, meta_path


def test_missing_column_is_named(small_trace, tmp_path):
    df, _, _ = small_trace
    bad = tmp_path / "bad.parquet"
    df.drop(columns=["duration"]).to_parquet(bad)
    before = bad.read_bytes()
    with pytest.raises(InputError) as e:
        S.load_trace(bad)
    assert e.value.field == "duration" and str(bad) in str(e.value)
    assert bad.read_bytes() == before


def test_meta_errors(tmp_path, small_trace):
    _, trace, _ = small_trace
    m = tmp_path / "m.yaml"
    m.write_text("dp_size: 2\n")
    with pytest.raises(InputError) as e:
        S.load_meta(m)
    assert e.value.field == "pp_size"
    m.write_text("dp_size: 2\npp_size: 4\n")
    with pytest.raises(InputError, match="pp_size=4"):
        S.analyze_files(trace, m)
    m.write_text("dp_size: 1\npp_size: 2\n")
    with pytest.raises(InputError, match="dp_size=1"):
        S.analyze_files(trace, m)
    m.write_text("dp_size: 2\npp_size: 2\nworld_size: 5\n")
    with pytest.raises(InputError) as e:
        S.load_meta(m)
    assert e.value.field == "world_size"
    m.write_text("dp_size: [\n")
    with pytest.raises(InputError, match="YAML"):
        S.load_meta(m)


def test_unknown_optype_and_non_parquet(tmp_path, small_trace):
    df, _, _ = small_trace
    bad = df.copy()
    bad.loc[0, "optype"] = "teleport"
    with pytest.raises(InputError, match="teleport"):
        S.validate_trace(bad)
    p = tmp_path / "x.parquet"
    p.write_text("not parquet")
    with pytest.raises(InputError, match="parquet"):
        S.load_trace(p)


def test_inconsistent_schedule_is_an_input_error(small_trace):
    df, _, _ = small_trace
    df = S.validate_trace(df[~((df.step == df.step.max()) & (df.optype == "gc") & (df.dp_rank == 1))])
    with pytest.raises(InputError, match="exactly once"):
        S.analyze(df, S.JobMeta("x", dp_size=2, pp_size=2))
    assert isinstance(df, pd.DataFrame)


def test_timeline_export_has_three_views_of_one_step(tmp_path):
    import json

    df, meta = S.synthesize_trace(S.SynthConfig(pp=2, dp=2, microbatches=3, steps=3), "gc", np.random.default_rng(1))
    path = S.write_timeline(df, meta, tmp_path / "t.json", step=1)
    events = json.loads(path.read_text())["traceEvents"]
    names = {e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert names == {"recorded", "no launch delays", "ideal"}
    spans = [e for e in events if e["ph"] == "X"]
    n_ops = len(df[(df.step == 1)])
    assert len(spans) == 3 * n_ops and all(e["dur"] >= 0 for e in spans)
    with pytest.raises(InputError, match="step 99"):
        S.write_timeline(df, meta, tmp_path / "u.json", step=99)


def test_vectorised_node_lookup_agrees_with_tuple_lookup():
    from syslab.training.stragglers.simulator import _node_ids

    rng = np.random.default_rng(0)
    nodes = [(o, int(q), int(t)) for o in ("forward-compute", "backward-compute", "dp-allreduce")
             for q in range(-2, 6) for t in range(3)]
    rows = [nodes[i] for i in rng.integers(0, len(nodes), 200)] + [("forward-compute", 99, 0), ("optimizer", 0, 0)]
    df = pd.DataFrame(rows, columns=["optype", "seq_id", "stage"])
    index = {n: i for i, n in enumerate(nodes)}
    expected = [index.get((o, q, t), -1) for o, q, t in rows]
    assert _node_ids(df, nodes).tolist() == expected
