"""The serving simulator: fast-forward equals the step-by-step reference, invariants hold, costs are right."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syslab.core.errors import InputError
from syslab.core.hardware import gpu, link
from syslab.core.models import model
from syslab.serving import engine as E
from tests.conftest import need

COST = E.IterationCost(model("llama3-8b"), gpu("H100-SXM"))
# Generated traces are often unsorted on purpose; the sorting warning has its own test below.
pytestmark = pytest.mark.filterwarnings("ignore:.*arrivals were not sorted")


def _frame(arrivals, prompts, outputs):
    return pd.DataFrame({"arrival_s": arrivals, "prompt_tokens": prompts, "output_tokens": outputs})


def _run(df, kv_tokens=20000, fast=True, n=1, **kw):
    reqs = E.requests_from_frame(df)
    res = E.simulate(reqs, lambda i, s, r: E.Instance(COST, kv_tokens, id=i, start_s=s, ready_s=r, fast_forward=fast,
                                                      **kw), initial_instances=n)
    return reqs, res


traces = st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0, 5), min_size=n, max_size=n), st.lists(st.integers(1, 3000), min_size=n, max_size=n),
    st.lists(st.integers(1, 400), min_size=n, max_size=n)))


@settings(max_examples=40, deadline=None)
@given(traces, st.sampled_from([6000, 20000]), st.sampled_from([512, 8192]), st.integers(1, 2))
def test_fast_forward_matches_the_step_by_step_reference(trace, kv, chunk, n):
    df = _frame(*trace)
    _, fast = _run(df, kv, True, n, max_batch_tokens=chunk, max_seqs=16)
    _, slow = _run(df, kv, False, n, max_batch_tokens=chunk, max_seqs=16)
    for col in ("ttft_s", "e2e_s"):
        assert np.allclose(fast.requests[col], slow.requests[col], rtol=1e-9, atol=1e-12)
    assert fast.iterations == slow.iterations
    assert (fast.requests.preemptions == slow.requests.preemptions).all()


@settings(max_examples=30, deadline=None)
@given(traces)
def test_every_request_finishes_once_with_all_its_tokens(trace):
    df = _frame(*trace)
    reqs, res = _run(df, 8000, max_seqs=8)
    assert len(res.requests) == len(df) and res.requests.id.is_unique
    assert all(r.generated == r.output and r.kv == 0 for r in reqs)
    assert (res.requests.ttft_s > 0).all() and (res.requests.e2e_s >= res.requests.ttft_s).all()
    assert res.requests.output_tokens.sum() == df.output_tokens.sum()


@settings(max_examples=30, deadline=None)
@given(traces, st.sampled_from([4000, 20000]), st.booleans(), st.integers(1, 3))
def test_incremental_load_equals_a_rescan_of_the_queues_at_every_arrival(trace, kv, fast, n):
    seen = []

    def checking_router(r, instances):
        for inst in instances:                          # preemptions included: tight KV and few blocks
            assert inst.load == inst.recount_load() >= 0
        seen.append(len(instances))
        return E.least_loaded(r, instances)

    df = _frame(*trace)
    reqs = E.requests_from_frame(df)
    made = []

    def make(i, s, r):
        made.append(E.Instance(COST, kv, id=i, start_s=s, ready_s=r, fast_forward=fast, max_seqs=8))
        return made[-1]

    E.simulate(reqs, make, initial_instances=n, router=checking_router)
    assert len(seen) == len(df) and all(i.load == 0 == i.recount_load() for i in made)


def test_kv_never_exceeds_capacity_under_pressure():
    rng = np.random.default_rng(0)
    df = _frame(np.sort(rng.uniform(0, 1, 200)), rng.integers(100, 2000, 200), rng.integers(50, 800, 200))
    reqs = E.requests_from_frame(df)
    inst = {}

    def make(i, s, r):
        inst[i] = E.Instance(COST, 12000, id=i, start_s=s, ready_s=r)
        return inst[i]

    res = E.simulate(reqs, make)
    assert inst[0].peak_blocks <= inst[0].total_blocks
    assert res.requests.preemptions.sum() > 0          # the test does exercise preemption


def test_single_request_timing_is_the_roofline():
    df = _frame([0.0], [1000], [5])
    _, res = _run(df)
    prefill = COST.time_s(1000, 1000 * 1001 / 2, 0)
    decodes = COST.decode_span_s(1, 1000.0, 4).sum()
    assert res.requests.ttft_s[0] == pytest.approx(prefill)
    assert res.requests.e2e_s[0] == pytest.approx(prefill + decodes)
    assert res.requests.tpot_s[0] == pytest.approx(decodes / 4)
    # Decode at batch 1 is memory-bound: weights over HBM, never faster than the datasheet's 3.35 TB/s
    # and (with core.gpu's calibrated bandwidth) not far from it.
    assert COST.weight_bytes / 3350e9 < decodes / 4 < COST.weight_bytes / (3350e9 * 0.6)
    # The iteration is the shared model's forward pass (GEMMs + elementwise + decode attention).
    fm = COST.forward
    assert decodes == pytest.approx(sum(fm.forward_s(1, 0.0, 1000.0 + i) for i in range(4)))


def test_chunked_prefill_splits_long_prompts():
    _, one = _run(_frame([0.0], [6000], [2]), max_batch_tokens=8192)
    _, chunked = _run(_frame([0.0], [6000], [2]), max_batch_tokens=1024)
    assert chunked.iterations == one.iterations + 5   # ceil(6000 / 1024) = 6 prefill iterations instead of 1


def test_kv_capacity_of_llama3_8b_on_h100():
    # (80 GB x 0.9 - 16.06 GB of bf16 weights) / 128 KiB per token
    assert COST.kv_capacity_tokens() == int((80e9 * 0.9 - model("llama3-8b").weight_bytes()) // (128 * 1024))
    with pytest.raises(InputError):
        E.IterationCost(model("llama2-70b"), gpu("H100-SXM")).kv_capacity_tokens()


def test_autoscaler_launch_counts_gpu_seconds_from_launch():
    df = _frame(np.linspace(0, 10, 50), [500] * 50, [50] * 50)
    reqs = E.requests_from_frame(df)
    launched = []

    def scaler(view: E.ClusterView) -> None:
        if view.now == 2.0 and not launched:
            launched.append(view.launch(3.0))

    res = E.simulate(reqs, lambda i, s, r: E.Instance(COST, 20000, id=i, start_s=s, ready_s=r), autoscaler=scaler)
    new = launched[0]
    assert res.instances == 2 and new.start_s == 2.0 and new.ready_s == 5.0
    served = res.requests[res.requests.instance == new.id]
    assert len(served) > 0 and (served.arrival_s >= 2.0).all()
    assert res.gpu_seconds == pytest.approx(res.makespan_s + (res.makespan_s - 2.0), rel=0.05)


def test_load_time_over_a_link():
    t = E.load_time_s(model("llama3-8b"), link("pcie5"))
    assert t == pytest.approx(model("llama3-8b").weight_bytes() / 63e9, rel=1e-3)


def test_bad_traces():
    with pytest.raises(InputError, match="output_tokens"):
        E.requests_from_frame(pd.DataFrame({"arrival_s": [0.0], "prompt_tokens": [1]}))
    with pytest.raises(InputError, match="fewer than 1"):
        E.requests_from_frame(_frame([0.0], [0], [3]))
    with pytest.raises(InputError, match="arrival"):
        E.requests_from_frame(_frame([math.nan], [5], [3]))
    reqs = E.requests_from_frame(_frame([1.0, 0.0], [5, 6], [3, 3]))
    assert [r.arrival_s for r in reqs] == [0.0, 1.0]                       # unsorted input is sorted
    with pytest.raises(InputError, match="KV cache"):
        _run(_frame([0.0], [30000], [10]), kv_tokens=20000)
    with pytest.raises(InputError, match="sorted"):
        E.simulate([E.Request(0, 1.0, 5, 5), E.Request(1, 0.0, 5, 5)],
                   lambda i, s, r: E.Instance(COST, 20000, id=i, start_s=s, ready_s=r))


def test_full_azure_hour_replays():
    store = need("azure_llm_2023")
    from syslab.core.workloads import load_azure_llm

    df = load_azure_llm(store.path("azure_llm_2023", "azure_conv_2023.csv"))
    reqs, res = _run(df, COST.kv_capacity_tokens())
    assert len(res.requests) == 19366 and res.requests.output_tokens.sum() == df.output_tokens.sum()
    assert res.requests.tpot_s.median() < 0.05 and res.makespan_s < 3700


def test_unsorted_arrivals_are_sorted_with_a_warning():
    with pytest.warns(UserWarning, match="sorted"):
        reqs = E.requests_from_frame(_frame([2.0, 1.0], [10, 10], [2, 2]))
    assert [r.arrival_s for r in reqs] == [1.0, 2.0]


def test_unsorted_azure_csv_is_sorted_with_a_warning(tmp_path):
    from syslab.core.workloads import load_azure_llm

    p = tmp_path / "t.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:05,10,2\n2023-11-16 18:00:01,20,3\n")
    with pytest.warns(UserWarning, match="sorted"):
        df = load_azure_llm(p)
    assert df.arrival_s.tolist() == [0.0, 4.0] and df.prompt_tokens.tolist() == [20, 10]


# -- several models per cluster ---------------------------------------------------------------------------

COST_BIG = E.IterationCost(model("qwen2.5-7b"), gpu("H100-SXM"))


def _builder(cost, kv=20000):
    return lambda i, s, r: E.Instance(cost, kv, id=i, start_s=s, ready_s=r)


@settings(max_examples=25, deadline=None)
@given(traces, st.lists(st.sampled_from("ab"), min_size=40, max_size=40), st.integers(1, 2), st.integers(1, 2))
def test_a_two_model_cluster_serves_each_model_as_its_own_cluster_would(trace, labels, na, nb):
    a, p, o = trace
    df = _frame(a, p, o).assign(model=labels[:len(a)])
    reqs = E.requests_from_frame(df)
    both = E.simulate(reqs, {"a": _builder(COST), "b": _builder(COST_BIG)}, {"a": na, "b": nb})
    alone = {}
    for m, cost, n in (("a", COST, na), ("b", COST_BIG, nb)):
        part = df[df.model == m]
        if len(part):
            alone[m] = E.simulate(E.requests_from_frame(part.drop(columns="model")), _builder(cost),
                                  initial_instances=n).requests
    got = both.requests.sort_values("arrival_s", kind="stable")
    for m, ref in alone.items():
        mine = got[got.model == m]
        np.testing.assert_allclose(mine.ttft_s.to_numpy(), ref.ttft_s.to_numpy(), rtol=1e-12)
        np.testing.assert_allclose(mine.e2e_s.to_numpy(), ref.e2e_s.to_numpy(), rtol=1e-12)
    # every request ran on an instance of its own model
    model_of = {}
    for m, n in (("a", na), ("b", nb)):
        model_of.update({i: m for i in range(len(model_of), len(model_of) + n)})
    assert all(model_of[i] == m for i, m in zip(both.requests.instance, both.requests.model, strict=True))


def test_an_autoscaler_narrowed_to_one_model_launches_that_model():
    df = _frame(np.linspace(0, 10, 60), [800] * 60, [40] * 60).assign(model=["a", "b", "b"] * 20)
    launched = []

    def scaler(view: E.ClusterView) -> None:
        b = view.of("b")
        assert all(i.model == "b" for i in b.instances) and b.models == ("b",)
        assert b.arrived_prompt_tokens <= view.arrived_prompt_tokens
        if view.now == 2.0:
            launched.append(b.launch(1.0))

    res = E.simulate(E.requests_from_frame(df), {"a": _builder(COST), "b": _builder(COST_BIG)}, {"a": 1, "b": 1},
                     autoscaler=scaler)
    new = launched[0]
    assert new.model == "b" and res.instances == 3
    served = res.requests[res.requests.instance == new.id]
    assert len(served) > 0 and (served.model == "b").all()
    with pytest.raises(InputError, match="no model 'c'"):
        E.ClusterView(0.0, [], 0, 0, lambda *a, **k: None, lambda i: None, models=("a", "b")).of("c")


def test_several_model_inputs_are_checked():
    df = _frame([0.0, 1.0], [100, 100], [10, 10]).assign(model=["a", "z"])
    with pytest.raises(InputError, match="no instance serves"):
        E.simulate(E.requests_from_frame(df), {"a": _builder(COST)}, {"a": 1})
    with pytest.raises(InputError, match="builders"):
        E.simulate(E.requests_from_frame(df), {"a": _builder(COST), "z": _builder(COST)}, {"a": 1})
    with pytest.raises(InputError, match="starts with 0"):
        E.simulate(E.requests_from_frame(df), {"a": _builder(COST), "z": _builder(COST)}, {"a": 1, "z": 0})


# -- host-DRAM model caches ---------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.floats(0, 100), st.lists(st.tuples(st.sampled_from("abcdef"), st.sampled_from([10.0, 25.0, 40.0, 120.0])),
                                   max_size=60))
def test_host_cache_is_lru_within_capacity(capacity, touches):
    sizes = {}
    cache, ref = E.HostCache(capacity), []          # ref: the cached models, least recently used first
    for m, size in touches:
        size = sizes.setdefault(m, size)            # a model's weights have one size
        hit = cache.touch(m, size)
        assert hit == (m in ref)
        if m in ref:
            ref.remove(m)
            ref.append(m)
        elif size <= capacity:
            while sum(sizes[x] for x in ref) + size > capacity:
                ref.pop(0)
            ref.append(m)
        assert cache.models == ref and cache.used_bytes <= capacity + 1e-9
        assert cache.used_bytes == pytest.approx(sum(sizes[x] for x in ref))
    assert cache.hits + cache.misses == len(touches)


@pytest.mark.parametrize("bad", [math.nan, -1.0])
def test_host_cache_rejects_an_impossible_capacity(bad):
    with pytest.raises(InputError, match="capacity"):
        E.HostCache(bad)


# -- partial (layer-split) instances -----------------------------------------------------------------------

def test_layer_split_factor_is_the_pipelined_pairs_bottleneck():
    s = E.LayerSplit(10.0, 20.0)
    assert [s.factor(t) for t in (5.0, 10.0, 12.5, 15.0, 17.5, 20.0)] == [1.0, 1.0, 0.75, 0.5, 0.75, 1.0]
    assert E.LayerSplit(3.0, 3.0).factor(3.0) == 1.0


@pytest.mark.parametrize("fast", [False, True])
def test_a_helped_instance_runs_each_iteration_at_the_split_factor(fast):
    p, o = 2000, 300
    split = E.LayerSplit(0.001, 2.0)
    inst = E.Instance(COST, 20000, fast_forward=fast)
    inst.help_by(split)
    r = E.Request(0, 0.0, p, o)
    inst.submit(r)
    inst.advance_to(math.inf)
    t = COST.time_s(p, p * (p + 1) / 2, 0, prefill_tokens=p) * split.factor(0.0)     # the prefill
    for kv in range(p, p + o - 1):                                                    # each decode reads kv
        t += COST.time_s(1, 0, kv) * split.factor(t)
    if fast:   # fast-forward reads the factor once per decode-only span: within a few percent
        assert r.finish_s == pytest.approx(t, rel=0.01) and r.finish_s < inst.cost.time_s(1, 0, p) * o
    else:
        assert r.finish_s == pytest.approx(t, rel=1e-12)
    alone = E.Instance(COST, 20000, fast_forward=fast)
    q = E.Request(1, 0.0, p, o)
    alone.submit(q)
    alone.advance_to(math.inf)
    assert r.finish_s < q.finish_s
