"""Weaver: cold-GPU waits, kernel splitting, hot step times, and exact split attention."""

import numpy as np
import pytest

from syslab.serving import weaver as W
from tests.conftest import need, table

NODE = W.A100_LLAMA3_8B

def test_waits_stop_at_kernel_boundaries_or_at_the_end_of_the_queue():
    tl = W.ColdTimeline(starts=np.array([0.0, 1.0, 5.0]), ends=np.array([1.0, 3.0, 6.0]),
                        batch_end=np.array([3.0, 3.0, 6.0]), horizon_s=10.0)
    t = np.array([0.5, 2.0, 4.0, 5.5])
    assert tl.wait(t, weaver=True).tolist() == [0.5, 1.0, 0.0, 0.5]
    assert tl.wait(t, weaver=False).tolist() == [2.5, 1.0, 0.0, 0.5]
    assert tl.utilisation == pytest.approx(0.4)


def test_splitting_bounds_kernels_by_tau_and_adds_only_its_overheads():
    prompts, outputs = np.array([4000, 3000]), np.array([3, 3])
    plain, _ = W.cold_timeline(NODE, prompts, outputs, 1.0, 3.0, np.random.default_rng(1), None)
    split, overhead = W.cold_timeline(NODE, prompts, outputs, 1.0, 3.0, np.random.default_rng(1), W.TAU_S)
    assert (split.ends - split.starts).max() <= W.TAU_S + W.SPLIT_S + W.POLL_S + 1e-12
    assert (plain.ends - plain.starts).max() > W.TAU_S            # long prefill GEMMs exist before splitting
    assert (split.ends - split.starts).sum() > (plain.ends - plain.starts).sum() and overhead > 0


def test_hot_step_without_offload_is_dense_plus_local_attention():
    tp = W.tpot_samples(NODE, 64, 1000.0, 0.0, None, True, np.random.default_rng(0), samples=5)
    expect = NODE.shape.layers * (NODE.dense_layer_s(64) + NODE.attention_layer_s(64 * 1000.0))
    assert np.allclose(tp, expect)


def test_offloading_to_an_idle_cold_gpu_speeds_up_attention_heavy_steps():
    idle = W.ColdTimeline(np.array([0.0]), np.array([1e-9]), np.array([1e-9]), 100.0)
    alone = W.tpot_samples(NODE, 128, 4000.0, 0.0, None, True, np.random.default_rng(0)).mean()
    woven = W.tpot_samples(NODE, 128, 4000.0, 0.5, idle, True, np.random.default_rng(0)).mean()
    assert woven < alone


def test_split_attention_matches_unsplit_execution():
    assert W.split_attention_error(steps=5, requests=4, dim=8, seed=3) < 1e-12


# --- sensitivity to the cold model's rate and the offload cap ----------------------------------------------------

def _loop_timeline(node, prompts, outputs, rate_rps, horizon_s, rng, split_tau_s):
    """The cold timeline kernel by kernel, as a plain loop: the reference the vectorised one must equal bit for bit."""
    s = node.shape
    starts, ends, batch_end, t, overhead = [], [], [], 0.0, None
    arrivals = np.cumsum(rng.exponential(1.0 / rate_rps, int(rate_rps * horizon_s * 2) + 10))
    for k, arrival in enumerate(arrivals):
        if arrival >= horizon_s:
            break
        t = max(t, arrival)
        p, o = int(prompts[k % len(prompts)]), int(outputs[k % len(outputs)])
        steps = (node.dense_layer_s(1) + np.asarray(node.attention_layer_s(p + np.arange(o - 1, dtype=float)))) / 4
        subs = [node.prefill_kernels_s(p) * s.layers] + [[float(d)] * (4 * s.layers) for d in np.atleast_1d(steps)]
        for j, kernels in enumerate(subs):
            pieces = []
            for d in kernels:
                n = max(1, int(np.ceil(d / split_tau_s))) if split_tau_s else 1
                pieces += [d / n + (W.SPLIT_S if n > 1 else 0.0) + (W.POLL_S if split_tau_s else 0.0)] * n
            for d in pieces:
                starts.append(t)
                t += d
                ends.append(t)
            batch_end += [t] * len(pieces)
            if j == 1 and overhead is None:
                overhead = sum(pieces) - sum(kernels)
    return starts, ends, batch_end, overhead or 0.0


@pytest.mark.parametrize("tau", [None, W.TAU_S])
def test_vectorised_cold_timeline_equals_the_kernel_by_kernel_loop(tau):
    prompts, outputs = np.array([4000, 300, 1200, 50]), np.array([3, 2, 40, 7])
    tl, overhead = W.cold_timeline(NODE, prompts, outputs, 2.0, 4.0, np.random.default_rng(5), tau)
    starts, ends, batch_end, ref_overhead = _loop_timeline(NODE, prompts, outputs, 2.0, 4.0,
                                                           np.random.default_rng(5), tau)
    assert tl.starts.tolist() == starts and tl.ends.tolist() == ends and tl.batch_end.tolist() == batch_end
    assert overhead == ref_overhead


def test_an_idle_cold_gpu_makes_nobody_wait():
    empty = W.ColdTimeline(np.array([]), np.array([]), np.array([]), 10.0)
    assert empty.wait(np.array([1.0, 2.0]), True).tolist() == [0.0, 0.0] and empty.utilisation == 0.0


def test_sorted_waits_equal_unsorted_lookups():
    tl, _ = W.cold_timeline(NODE, np.array([3000, 800]), np.array([20, 60]), 1.0, 5.0, np.random.default_rng(2),
                            W.TAU_S)
    t = np.random.default_rng(3).uniform(0, 6.0, 500)
    i = np.searchsorted(tl.starts, t, side="right") - 1
    inside = (i >= 0) & (t < tl.ends[np.maximum(i, 0)])
    for weave, until in ((True, tl.ends), (False, tl.batch_end)):
        assert np.array_equal(tl.wait(t, weave), np.where(inside, until[np.maximum(i, 0)] - t, 0.0))


def _short_run(control=False):
    from syslab.core.run import Run
    return Run(system="weaver", control=control)


def _lengths():
    rng = np.random.default_rng(0)
    return (np.maximum(1, rng.lognormal(np.log(1020), 0.8, 200)).astype(int),
            np.maximum(2, rng.lognormal(np.log(129), 0.9, 200)).astype(int))


def test_a_busier_cold_model_leaves_less_spare_kv_and_the_cap_trades_gain_for_cold_time():
    prompts, outputs = _lengths()
    rows = W.cold_rate_sensitivity(NODE, 1200.0, prompts, outputs, 40.0, _short_run(), rates=(0.2, 0.5, 1.0))
    util = [r["naive_tl"].utilisation for r in rows]
    spare = [r["kv_both"] - r["kv_hot"] for r in rows]
    assert util == sorted(util) and util[0] < util[-1]          # same arrival draws, scaled: more work per second
    assert spare == sorted(spare, reverse=True)
    for r in rows:
        caps = W.cap_tradeoff(NODE, r, 1200.0)
        gain = [c["ratio"] for c in caps]
        assert gain == sorted(gain)                              # a looser cap only adds candidate points
        assert caps[-1]["ratio"] == pytest.approx(r["ratio"])    # the last cap (70%) is the claims' search
        assert caps[0]["cold_added_ms"] <= caps[-1]["cold_added_ms"] + 1e-9   # offloading less costs the cold less


def test_sweep_under_control_never_offloads():
    prompts, outputs = _lengths()
    rows = W.cold_rate_sensitivity(NODE, 1200.0, prompts, outputs, 20.0, _short_run(control=True), rates=(0.1, 0.5))
    assert all(r["ratio"] == 1.0 and r["weaver"]["offload"] == 0.0 and r["cold_added_ms"] == 0.0 for r in rows)


def test_where_a_sweep_flips():
    held = W._where([0.1, 0.3, 0.5], [True, True, False], "rate", " rps")
    assert held == "holds for rate <= 0.3 rps (swept 0.1-0.5 rps)"
    assert W._where([1, 2], [False, True], "x", "").startswith("holds for x >= 2")
    assert W._where([1, 2], [False, False], "x", "").startswith("does not flip anywhere")


@pytest.mark.slow
def test_reproduction_sensitivity_tables_are_consistent_with_the_claims(quick_reproduction):
    need("azure_llm_2023")
    r, _ = quick_reproduction("weaver")
    assert r["status"] == "ok", r.get("traceback")
    f = {x["id"]: x for x in r["findings"]}
    rate = table(r, "Sensitivity to the cold model's request rate")
    cols = rate["columns"]
    rows = {row[0]: dict(zip(cols, row, strict=True)) for row in rate["rows"]}
    default = rows[W.COLD_RATE_RPS]
    assert default["hot-throughput (x)"] == round(f["hot-throughput"]["measured"], 3)
    assert default["cold overhead (ms)"] == round(f["cold-overhead-ms"]["measured"], 2)
    assert default["cold GPU utilisation"] == round(r["metrics"]["cold_utilisation"], 3)
    ordered = [rows[k] for k in sorted(rows)]
    assert [x["cold GPU utilisation"] for x in ordered] == sorted(x["cold GPU utilisation"] for x in ordered)
    gains = [x["hot-throughput (x)"] for x in ordered]
    assert gains == sorted(gains, reverse=True)                  # a busier cold GPU never helps the hot model
    cap = table(r, "Sensitivity to the largest offloaded share")
    for row in cap["rows"]:
        gain = [float(c.split("x")[0]) for c in row[1:]]
        assert gain == sorted(gain)
    assert "sensitivity to the cold rate" in f["hot-throughput"]["note"]
    assert "sensitivity to the offload cap" in f["cold-overhead-ms"]["note"]
