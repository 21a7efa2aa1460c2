"""serving.pd: disaggregated prefill/decode pools on the engine, against the engine and closed forms."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syslab.core.errors import InputError
from syslab.core.hardware import gpu
from syslab.core.models import model
from syslab.serving import pd as P
from syslab.serving.engine import Instance, IterationCost, Request, simulate

COST = IterationCost(model("llama3-8b"), gpu("H100-SXM"))
KV = COST.kv_capacity_tokens()


def mk(i: int) -> Instance:
    return Instance(COST, KV, id=i)


def engine_one(reqs):
    return simulate(reqs, lambda i, s, r: Instance(COST, KV, id=i, start_s=s, ready_s=r)).requests


def closed_form(p: int, o: int) -> tuple[float, float]:
    """A lone request on an idle instance: one prefill iteration (p <= max_batch_tokens), then o - 1 decodes that
    read p, p + 1, ... cached tokens."""
    ttft = COST.time_s(p, p * (p + 1) / 2, 0)
    return ttft, ttft + sum(COST.time_s(1, 0, p + i) for i in range(o - 1))


@settings(max_examples=15, deadline=None)
@given(p=st.integers(1, 8192), o=st.integers(1, 300))
def test_lone_request_matches_the_engine_and_the_closed_form(p, o):
    pd_ = P.simulate_pd([Request(0, 0.0, p, o)], make_prefill=mk, n_prefill=1, make_decode=mk, n_decode=1)
    ref = engine_one([Request(0, 0.0, p, o)])
    ttft, e2e = closed_form(p, o)
    assert pd_.requests.ttft_s[0] == pytest.approx(ref.ttft_s[0], rel=1e-12)
    assert pd_.requests.e2e_s[0] == pytest.approx(ref.e2e_s[0], rel=1e-9)
    assert pd_.requests.ttft_s[0] == pytest.approx(ttft, rel=1e-12)
    assert pd_.requests.e2e_s[0] == pytest.approx(e2e, rel=1e-9)
    assert pd_.transfers == (1 if o > 1 else 0)


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.5])
def test_a_link_delay_adds_exactly_to_end_to_end_not_to_ttft(delay):
    base = P.simulate_pd([Request(0, 0.0, 700, 40)], make_prefill=mk, n_prefill=1, make_decode=mk, n_decode=1)
    slow = P.simulate_pd([Request(0, 0.0, 700, 40)], make_prefill=mk, n_prefill=1, make_decode=mk, n_decode=1,
                         transfer_s=lambda b: delay)
    assert slow.requests.ttft_s[0] == base.requests.ttft_s[0]
    assert slow.requests.e2e_s[0] == pytest.approx(base.requests.e2e_s[0] + delay, rel=1e-12, abs=1e-12)
    assert slow.transfer_s == pytest.approx(delay)


def test_well_separated_requests_each_run_as_alone():
    specs = [(900, 30), (50, 200), (3000, 5), (1, 1)]
    reqs = [Request(i, 100.0 * i, p, o) for i, (p, o) in enumerate(specs)]
    res = P.simulate_pd(reqs, make_prefill=mk, n_prefill=1, make_decode=mk, n_decode=1)
    for i, (p, o) in enumerate(specs):
        ttft, e2e = closed_form(p, o)
        assert res.requests.ttft_s[i] == pytest.approx(ttft, rel=1e-12)
        assert res.requests.e2e_s[i] == pytest.approx(e2e, rel=1e-9)


def test_colocated_group_alone_is_the_engine():
    rng = np.random.default_rng(3)
    arr = np.sort(rng.uniform(0, 5, 40))
    spec = [(int(rng.integers(1, 2000)), int(rng.integers(1, 100))) for _ in arr]
    a = P.simulate_pd([Request(i, float(t), p, o) for i, (t, (p, o)) in enumerate(zip(arr, spec, strict=True))],
                      make_colocated=mk, n_colocated=1)
    b = engine_one([Request(i, float(t), p, o) for i, (t, (p, o)) in enumerate(zip(arr, spec, strict=True))])
    np.testing.assert_allclose(a.requests.e2e_s, b.e2e_s, rtol=1e-9)
    np.testing.assert_allclose(a.requests.ttft_s, b.ttft_s, rtol=1e-9)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n_p=st.integers(1, 2), n_d=st.integers(1, 2), n_c=st.integers(0, 2))
def test_under_load_every_request_finishes_in_its_group(seed, n_p, n_d, n_c):
    rng = np.random.default_rng(seed)
    n = 60
    arr = np.sort(rng.uniform(0, 3, n))
    reqs = [Request(i, float(arr[i]), int(rng.integers(1, 4000)), int(rng.integers(1, 300))) for i in range(n)]
    route = P.by_ratio(P.oracle_output, 4.0) if n_c else None
    res = P.simulate_pd(reqs, make_prefill=mk, n_prefill=n_p, make_decode=mk, n_decode=n_d,
                        make_colocated=mk if n_c else None, n_colocated=n_c, route=route,
                        transfer_s=P.nvlink_transfer("H100-SXM", nodes=2))
    df = res.requests
    assert len(df) == n and np.isfinite(df.e2e_s).all()
    assert (df.ttft_s > 0).all() and (df.ttft_s <= df.e2e_s + 1e-12).all()
    expect = ["pd" if not n_c or r.prompt / r.output >= 4.0 else "colocated" for r in reqs]
    assert list(df.group) == expect
    assert res.transfers == sum(1 for r, g in zip(reqs, expect, strict=True) if g == "pd" and r.output > 1)
    assert res.instances == {"prefill": n_p, "decode": n_d, "colocated": n_c}


def test_kv_bytes_and_links():
    c4 = IterationCost(model("llama-30b"), gpu("H100-SXM"), tp=4)
    assert P.kv_bytes(c4, 100) == 100 * c4.shape.kv_bytes_per_token("bf16") / 4
    same, across = P.nvlink_transfer("H100-SXM", 1), P.nvlink_transfer("H100-SXM", 2)
    assert same(0) == 0.0 and 0 < same(1e9) < across(1e9) and across(1e9) < across(2e9)
    with pytest.raises(InputError):
        P.nvlink_transfer("H100-SXM", 3)


def test_bucket_median_predictor():
    pred = P.BucketMedian.fit([10, 12, 15, 1000, 1500], [5, 7, 100, 20, 30])
    assert pred(Request(0, 0, 9, 1)) == 7.0                  # bucket 3: 10, 12, 15 -> median of 5, 7, 100
    assert pred(Request(0, 0, 1024, 1)) == 30.0              # bucket 10: 1000 is in 9, 1500 in 10 -> just 30
    assert pred(Request(0, 0, 1 << 20, 1)) == 20.0           # unseen bucket: the overall median
    assert P.oracle_output(Request(0, 0, 5, 42)) == 42.0
    with pytest.raises(InputError):
        P.BucketMedian.fit([], [])
    with pytest.raises(InputError):
        P.by_ratio(P.oracle_output, 0.0)


def test_malformed_configurations_are_input_errors():
    r = [Request(0, 0.0, 10, 10)]
    with pytest.raises(InputError, match="prefill"):
        P.simulate_pd(r, make_prefill=mk, n_prefill=1)
    with pytest.raises(InputError):
        P.simulate_pd(r)
    with pytest.raises(InputError, match="route"):
        P.simulate_pd(r, make_prefill=mk, n_prefill=1, make_decode=mk, n_decode=1, make_colocated=mk,
                      n_colocated=1)
    with pytest.raises(InputError, match="route"):
        P.simulate_pd(r, make_colocated=mk, n_colocated=1, route=lambda q: "pd")
    with pytest.raises(InputError, match="sorted"):
        P.simulate_pd([Request(0, 1.0, 5, 5), Request(1, 0.0, 5, 5)], make_colocated=mk, n_colocated=1)


def test_gpu_seconds_count_every_instance_for_the_makespan():
    res = P.simulate_pd([Request(0, 0.0, 500, 20)], make_prefill=mk, n_prefill=2, make_decode=mk, n_decode=1)
    assert res.gpu_seconds == pytest.approx(3 * res.requests.e2e_s[0])
    assert math.isclose(res.makespan_s, res.requests.e2e_s[0])
