"""PopFetcher: routing traces, the predictor, and the MoE-layer model's invariants."""

import numpy as np
import pytest

from syslab.training.popfetcher import routing as R
from syslab.training.popfetcher import sim as S
from tests.conftest import table

C = S.Cluster()


def test_synthetic_trace_conserves_tokens_and_is_skewed():
    tr = R.synthetic_trace(12, 3, 16, 1000, np.random.default_rng(0))
    assert tr.counts.shape == (12, 3, 16) and tr.transitions.shape == (12, 2, 16, 16)
    assert np.all(tr.counts.sum(axis=2) == 2 * 1000)                  # top-2: two rows per token per layer
    assert np.all(tr.transitions.sum(axis=(2, 3)) == 1000)            # top-1 transitions, one per token
    shares = np.sort(tr.counts[0, 0])[::-1] / tr.counts[0, 0].sum()
    assert shares[0] > 3 * shares[-1]
    flat = R.synthetic_trace(4, 2, 16, 4000, np.random.default_rng(1), alpha=0.0, band=0.0)
    assert np.sort(flat.counts[0, 0])[-1] / flat.counts[0, 0].sum() < 0.1


def test_predictor_is_exact_on_a_deterministic_chain():
    # every token's expert moves e -> e + 1 between layers, loads differ each iteration
    it, layers, experts = 6, 2, 4
    counts = np.zeros((it, layers, experts))
    trans = np.zeros((it, layers - 1, experts, experts))
    rng = np.random.default_rng(2)
    for i in range(it):
        c0 = rng.integers(1, 50, experts).astype(float)
        counts[i, 0], counts[i, 1] = c0, np.roll(c0, 1)
        trans[i, 0] = np.diag(c0)[:, np.r_[experts - 1, 0:experts - 1]]
    tr = R.RoutingTrace(counts, trans, 100, 1, "test")
    pred = R.predict_next_layer(tr, 5, 0, blend=1.0)
    assert np.allclose(pred, counts[5, 1])
    assert R.top_k_hit_rate(tr, lambda t, i, j: R.predict_next_layer(t, i, j, blend=1.0), k=2, start=1) == 1.0


def test_tiny_moe_trace_is_a_real_routing_log():
    torch = pytest.importorskip("torch")  # noqa: F841
    tr = R.tiny_moe_trace(iterations=3, layers=2, experts=8, vocab=64, hidden=16, batch=4, seq=8)
    assert tr.counts.shape == (3, 2, 8) and np.all(tr.counts.sum(axis=2) == 2 * 4 * 8)
    assert np.all(tr.transitions.sum(axis=(2, 3)) == 4 * 8)


def test_layer_time_conserves_rows_and_no_replicas_is_vanilla():
    load = np.random.default_rng(3).integers(100, 5000, C.experts).astype(float)
    load[0] = 60000.0                                                 # a hot expert: its owner is the bottleneck
    none = np.zeros((C.workers, C.experts), dtype=bool)
    assert S.layer_time(load, C, none, True, True).total_s == pytest.approx(S.vanilla(load, C).total_s)
    rep = none.copy()
    rep[:, 0] = True                                                  # every worker holds expert 0
    with_rep = S.layer_time(load, C, rep, True, True)
    assert with_rep.replicas == C.workers - 1
    assert with_rep.details["a2a_s"] < S.vanilla(load, C).details["a2a_s"]
    fifo = S.layer_time(load, C, rep, True, False)
    assert fifo.backward_s >= with_rep.backward_s and fifo.forward_s == with_rep.forward_s


def test_plan_takes_only_remote_experts_and_at_most_k():
    pred = np.zeros(C.experts)
    pred[:4] = [90000, 70000, 50000, 30000]
    rep = S._replicas_of(pred, C, k=2)
    for w in range(C.workers):
        chosen = np.flatnonzero(rep[w])
        assert len(chosen) <= 2 and all(C.owner(x) != w for x in chosen)
    assert rep[1:, 0].all() and not rep[0, 0]


def test_control_puts_vanilla_expert_parallelism_in_popfetchers_slots():
    tr = R.synthetic_trace(12, 3, 16, C.tokens, np.random.default_rng(4))
    out = S.run_policies(tr, C, control=True)
    assert np.allclose(out["popfetcher"], out["vanilla"]) and np.allclose(out["popfetcher-fifo"], out["vanilla"])
    assert S.run_policies(tr, C)["popfetcher"].mean() < out["vanilla"].mean()


def test_a_subset_of_policies_times_exactly_as_the_full_run_and_unknown_ones_are_refused():
    tr = R.synthetic_trace(12, 3, 16, C.tokens, np.random.default_rng(5))
    full = S.run_policies(tr, C)
    part = S.run_policies(tr, C, policies=("vanilla", "popfetcher"))
    assert set(part) == {"vanilla", "popfetcher"}
    assert all(np.array_equal(part[p], full[p]) for p in part)
    with pytest.raises(ValueError, match="unknown policies"):
        S.run_policies(tr, C, policies=("vanilla", "lina"))


def test_routing_flip_and_blend_flip_are_computed_from_the_sweep():
    from syslab.training.popfetcher import reproduce as P

    cuts = (0.0, 0.1, 0.2, 0.1, 0.2)
    rows = [{"tokens": t, **{n: cut for n in P.NICS}} for t, cut in zip(P.TOKENS, cuts, strict=True)]
    note = P.routing_flip(P.CLAIMS[1], rows)
    assert f"from {P.TOKENS[-1]:,} tokens" in note                      # holds at 32K, not at 16K: only 32K counts
    rows[3] = {"tokens": P.TOKENS[3], **{n: 0.2 for n in P.NICS}}
    assert f"from {P.TOKENS[2]:,} tokens" in P.routing_flip(P.CLAIMS[1], rows)
    blends = [{"blend": b, "diff": d} for b, d in zip(P.BLENDS, (-0.2, -0.1, 0.0, 0.06, 0.1), strict=True)]
    assert P.blend_flip(P.CLAIMS[3], blends, lambda r: r["diff"]).endswith("0.75, 1")
    assert "at no blend weight" in P.blend_flip(P.CLAIMS[3], blends[:3], lambda r: r["diff"])


def test_more_bandwidth_never_slows_vanilla_and_the_sweep_cluster_changes_only_what_it_names():
    from syslab.training.popfetcher import reproduce as P

    c = P.cluster_with(16384, "ib-ndr")
    assert (c.tokens, c.fabric.nic) == (16384, "ib-ndr")
    assert (c.workers, c.experts, c.hidden, c.fabric.intra) == (C.workers, C.experts, C.hidden, C.fabric.intra)
    load = np.random.default_rng(6).integers(100, 5000, C.experts).astype(float)
    times = [S.vanilla(load, P.cluster_with(C.tokens, nic)).total_s for nic in ("roce-100", "ib-hdr", "ib-ndr")]
    assert times[0] >= times[1] >= times[2]


@pytest.mark.slow
def test_reproduction_sensitivity_tables_start_at_the_claims_setting(quick_reproduction):
    from syslab.training.popfetcher import reproduce as P

    r, _ = quick_reproduction("popfetcher")
    assert r["status"] == "ok", r.get("traceback")
    f = {x["id"]: x for x in r["findings"]}
    routing = table(r, "Sensitivity (not a claim, not a tuning): PopFetcher's cut")
    row = next(dict(zip(routing["columns"], x, strict=True)) for x in routing["rows"] if x[0] == C.tokens)
    assert row[f"cut, {C.fabric.nic}"] == round(f["time-reduction-real-routing"]["measured"], 4)
    windows = [x[1] for x in routing["rows"]]
    assert windows == sorted(windows)                                  # the dense window grows with tokens
    blend = table(r, "Sensitivity (not a claim, not a tuning): top-4 hit rate")
    b = next(dict(zip(blend["columns"], x, strict=True)) for x in blend["rows"] if x[0] == P.DEFAULT_BLEND)
    assert b["predictor, skewed"] == round(f["predictor-top4"]["measured"], 3)
    assert b["predictor - last (worse trace)"] == round(f["predictor-vs-last"]["measured"], 3)
    for key in ("time-reduction-real-routing", "predictor-top4", "predictor-vs-last"):
        assert "sensitivity:" in f[key]["note"], key
