"""PopFetcher: routing traces, the predictor, and the MoE-layer model's invariants."""

import numpy as np
import pytest

from syslab.training.popfetcher import routing as R
from syslab.training.popfetcher import sim as S

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
