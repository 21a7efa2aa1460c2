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
    tr = R.tiny_moe_trace(iterations=3, layers=2, experts=8, vocab=64, hidden=16, batch=4, seq=8, workers=4,
                          log_batch=8)
    assert tr.counts.shape == (3, 2, 8) and np.all(tr.counts.sum(axis=2) == 2 * 8 * 8)
    assert tr.worker_counts.shape == (3, 2, 4, 8) and np.all(tr.worker_counts.sum(axis=3) == 2 * 2 * 8)
    assert np.array_equal(tr.worker_counts.sum(axis=2), tr.counts)
    assert np.all(tr.transitions.sum(axis=(2, 3)) == 8 * 8)


def test_per_worker_synthetic_routing_sums_to_the_global_one_and_differs_by_worker():
    tr = R.synthetic_trace(6, 3, 16, 8 * 500, np.random.default_rng(14), workers=8)
    assert tr.worker_counts.shape == (6, 3, 8, 16)
    assert np.array_equal(tr.worker_counts.sum(axis=2), tr.counts)
    assert np.all(tr.worker_counts.sum(axis=3) == 2 * 500)
    tops = {int(np.argmax(tr.worker_counts[0, 0, w])) for w in range(8)}
    assert len(tops) > 1                                               # each worker's batch has its own topic
    even = R.synthetic_trace(6, 3, 16, 1000, np.random.default_rng(14))
    assert even.worker_counts is None and np.allclose(even.per_worker(4).sum(axis=2), even.counts)


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
    pred = np.zeros((C.workers, C.experts))
    pred[:, :4] = [90000 / 8, 70000 / 8, 50000 / 8, 30000 / 8]
    rep = S.plan_prefetch(pred, C, k=2)
    for w in range(C.workers):
        chosen = np.flatnonzero(rep[w])
        assert len(chosen) <= 2 and all(C.owner(x) != w for x in chosen)
    assert rep[1:, 0].sum() >= C.workers // 2 and not rep[0, 0]     # the hot expert, never by its owner
    assert S.layer_time(pred, C, rep, True, True).total_s < S.vanilla(pred, C).total_s


def _programs(seed: int, n: int = 6):
    tr = R.synthetic_trace(14, 3, 16, C.tokens * C.workers, np.random.default_rng(seed), workers=C.workers)
    for it in range(10, 10 + n // 2):
        for layer in range(2):
            pred = S.scaled_loads(R.predict_worker_loads(tr, it, layer, C.workers), C, tr.top_k)
            yield pred, S.PrefetchProgram.build(pred, C, 2)


@pytest.mark.parametrize("seed", [15, 16])
def test_the_plans_enumeration_finds_the_milps_optimum(seed):
    for _, prog in _programs(seed):
        y = prog.solve().astype(float)[None]
        z = prog.solve_milp().astype(float)[None]
        assert prog.objective(y)[0] <= prog.objective(z)[0] * (1 + 1e-4) + 1e-12      # HiGHS's default gap
        assert prog.objective(y)[0] <= prog.objective(np.zeros_like(y))[0] + 1e-15      # never worse than none


def test_the_linear_program_is_the_layer_model_where_it_is_linear():
    # with no candidate taken the program's value is the layer model's up to the secant of the expert GEMMs
    for pred, prog in _programs(17, 2):
        none = prog.objective(np.zeros((1, len(prog.cand))))[0]
        assert none == pytest.approx(S.vanilla(pred, C).total_s, rel=0.05)


def test_fair_baselines_get_the_window_and_priority_rules():
    load = np.full((C.workers, C.experts), 200.0)
    load[:, 0] = 4000.0                                                # one hot expert on every worker's batch
    janus = S.janus_static(load, C)(load)
    assert janus.replicas == C.workers - 1                              # pulled into the free window
    fifo = S.janus_static(load, C, priority=False)(load)
    assert janus.backward_s <= fifo.backward_s
    assert S.fastermoe(load, C).backward_s <= S.fastermoe(load, C, priority=False).backward_s


def test_the_oracle_plan_bounds_popfetcher_on_the_same_trace():
    tr = R.synthetic_trace(14, 3, 16, C.tokens * C.workers, np.random.default_rng(18), workers=C.workers)
    out = S.run_policies(tr, C, policies=("vanilla", "popfetcher", "oracle"))
    assert out["oracle"].mean() <= out["popfetcher"].mean() * 1.001 and out["oracle"].mean() <= out["vanilla"].mean()


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


def test_the_routing_logger_records_what_the_gates_chose(tmp_path):
    torch = pytest.importorskip("torch")
    from syslab.training.popfetcher.cli import load_routing
    from syslab.training.popfetcher.logger import RoutingLogger

    torch.manual_seed(0)
    gates = [torch.nn.Linear(8, 6, bias=False) for _ in range(3)]
    seen = []
    with RoutingLogger(gates, top_k=2, workers=2) as log:
        for _ in range(4):
            x = torch.randn(10, 8)
            seen.append([g(x).topk(2, dim=-1).indices.numpy() for g in gates])
            log.step()
    path = log.save(tmp_path / "routing")
    trace = load_routing(path)
    assert trace.worker_counts.shape == (4, 3, 2, 6) and trace.top_k == 2 and trace.tokens == 10
    for it, per_layer in enumerate(seen):
        for layer, idx in enumerate(per_layer):
            for w, rows in enumerate((slice(0, 5), slice(5, 10))):
                expect = np.bincount(idx[rows].ravel(), minlength=6)
                assert np.array_equal(trace.worker_counts[it, layer, w], expect)
        for layer in range(2):
            expect = np.zeros((6, 6))
            np.add.at(expect, (per_layer[layer][:, 0], per_layer[layer + 1][:, 0]), 1)
            assert np.array_equal(trace.transitions[it, layer], expect)
    with pytest.raises(RuntimeError, match="saw no tokens"):
        RoutingLogger(gates).step()


def test_cli_simulate_on_a_users_routing_and_its_malformed_inputs(tmp_path, capsys):
    import json

    from syslab.cli import main

    tr = R.synthetic_trace(14, 3, 16, 8 * 1000, np.random.default_rng(19), workers=8)
    good = tmp_path / "routing.npz"
    np.savez(good, counts=tr.worker_counts, transitions=tr.transitions, top_k=2)
    with pytest.raises(SystemExit) as e:
        main(["popfetcher", "simulate", "--routing", str(good), "--json"])
    d = json.loads(capsys.readouterr().out)
    assert e.value.code == 0 and set(d["policies"]) == {"vanilla", "fastermoe", "janus", "popfetcher", "oracle"}
    assert d["per_worker_routing"] and d["iterations"] == 7              # after half of 14 (fewer than 20)
    assert d["policies"]["oracle"]["mean_ms"] <= d["policies"]["vanilla"]["mean_ms"]
    bad = {"nan.npz": dict(counts=np.full((3, 2, 4), np.nan)), "neg.npz": dict(counts=-np.ones((3, 2, 4))),
           "flat.npz": dict(counts=np.ones(5)), "none.npz": dict(other=np.ones(3)),
           "shape.npz": dict(counts=tr.counts, transitions=np.ones((2, 2, 2, 2))),
           "empty.npz": dict(counts=np.zeros((3, 2, 4)))}
    for name, arrays in bad.items():
        np.savez(tmp_path / name, **arrays)
    (tmp_path / "binary.npz").write_bytes(b"\x00\xffnot a zip")
    for name in [*bad, "binary.npz", "missing.npz"]:
        with pytest.raises(SystemExit) as e:
            main(["popfetcher", "simulate", "--routing", str(tmp_path / name)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "Traceback" not in err and name in err, name
    for opts in (["--workers", "4"], ["--workers", "32"], ["--gpu", "B9000"], ["--nic", "carrier-pigeon"],
                 ["--tokens", "0"], ["--hidden", "nan"]):
        with pytest.raises(SystemExit) as e:
            main(["popfetcher", "simulate", "--routing", str(good), *opts])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "Traceback" not in err, opts
