import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syslab.cloud.kamino import sim as S
from syslab.cloud.kamino import workload as W
from syslab.core.errors import InputError


def _stream(n=3000, skew=1.1, seed=0, sigs=200):
    rng = np.random.default_rng(seed)
    return W.mmpp_arrivals(n, rng), W.zipf_signatures(n, sigs, skew, rng)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 300), st.integers(1, 4), st.sampled_from(S.SCHEDULERS), st.integers(0, 10**6))
def test_every_request_is_served_once_fifo_without_overlap(n, k, scheduler, seed):
    rng = np.random.default_rng(seed)
    arr = np.sort(rng.exponential(0.01, n).cumsum())
    sigs = rng.integers(0, 20, n)
    o = S.simulate(arr, sigs, scheduler, S.Cluster(allocators=k, cache_entries=4), seed=seed)
    assert (o.latency_s >= o.service_s - 1e-12).all() and (o.service_s > 0).all()
    start = arr + o.latency_s - o.service_s
    for a in range(k):
        idx = np.flatnonzero(o.assigned == a)                      # arrival order = service order (FIFO)
        assert (start[idx] >= arr[idx] - 1e-12).all()
        assert (np.diff(start[idx]) >= 0).all()
        assert (start[idx][1:] >= (start + o.service_s)[idx][:-1] - 1e-12).all()   # one at a time
    assert o.per_allocator.sum() == n


def test_deterministic_and_hash_is_sticky_and_rr_balanced():
    arr, sigs = _stream()
    a = S.simulate(arr / 300, sigs, "Kamino", seed=3)
    b = S.simulate(arr / 300, sigs, "Kamino", seed=3)
    np.testing.assert_array_equal(a.latency_s, b.latency_s)
    h = S.simulate(arr / 300, sigs, "consistent-hash")
    assert all(len(set(h.assigned[sigs == s])) == 1 for s in np.unique(sigs))
    rr = S.simulate(arr / 300, sigs, "round-robin")
    assert rr.per_allocator.max() - rr.per_allocator.min() <= 1


def test_queued_signature_predicts_a_hit():
    cl = S.Cluster(allocators=2)
    a = S.Allocator(0, cl)
    a.in_service = (0.0, 0.020)
    a.queue.append((0, 7, 0.020))
    a.queued_sigs[7] = 1
    a.queued_pred_s = 0.020
    assert a.predicts_hit(7) and not a.predicts_hit(8)
    assert a.expected_time(7, now=0.005) == pytest.approx(cl.costs.c_hit_s + 0.020 + 0.015)
    assert a.expected_time(8, now=0.030) == pytest.approx(cl.costs.c_miss_s + 0.020)


def test_kamino_sends_a_signature_behind_its_own_miss():
    # allocator 0 is serving sig 1 (a miss, 20 ms); at 15 ms another sig-1 request comes: waiting 5 ms for a hit
    # beats a 20 ms miss on the idle allocator 1
    cl = S.Cluster(allocators=2, costs=S.Costs(noise_sigma=0))
    o = S.simulate(np.array([0.0, 0.015]), np.array([1, 1]), "Kamino", cl)
    assert list(o.assigned) == [0, 0] and o.hits.tolist() == [False, True]
    j = S.simulate(np.array([0.0, 0.015]), np.array([1, 1]), "JSQ", cl)
    assert list(j.assigned) == [0, 1] and j.hits.tolist() == [False, False]


def test_idle_entries_expire_and_lru_capacity_holds():
    cl = S.Cluster(allocators=1, cache_entries=2, idle_ttl_s=1.0, costs=S.Costs(noise_sigma=0))
    o = S.simulate(np.array([0.0, 0.1, 0.2, 0.3, 5.0]), np.array([1, 2, 3, 1, 3]), "JSQ", cl)
    assert o.hits.tolist() == [False, False, False, False, False]  # 1 evicted by 3 (LRU of 2); 3 expired by 5 s
    o = S.simulate(np.array([0.0, 0.5]), np.array([1, 1]), "JSQ", cl)
    assert o.hits.tolist() == [False, True]


def test_rate_for_load_gives_jsq_that_utilisation():
    arr, sigs = _stream(6000)
    cl = S.Cluster()
    rate = S.rate_for_load(arr, sigs, 0.5, cl)
    o = S.simulate(arr / rate, sigs, "JSQ", cl)
    span = arr[-1] / rate
    assert o.service_s.sum() / (cl.allocators * span) == pytest.approx(0.5, rel=0.15)


def test_zipf_and_mmpp_shapes():
    rng = np.random.default_rng(0)
    s = W.zipf_signatures(20000, 100, 1.2, rng)
    counts = np.sort(np.bincount(s, minlength=100))[::-1]
    assert counts[0] > 5 * counts[20] and s.min() >= 0 and s.max() < 100
    t = W.mmpp_arrivals(20000, rng)
    assert (np.diff(t) >= 0).all() and 0.8 < len(t) / t[-1] < 1.25


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="unknown scheduler"):
        S.simulate(np.array([0.0]), np.array([1]), "random")
    with pytest.raises(InputError, match="non-decreasing"):
        S.simulate(np.array([1.0, 0.0]), np.array([1, 1]), "JSQ")
    f = tmp_path / "r.csv"
    f.write_text("time,signature\n0.1,a\n")
    with pytest.raises(InputError, match="time_s"):
        W.load_requests(f)
    f.write_text("time_s,signature\n0.2,a\nsoon,b\n")
    with pytest.raises(InputError, match="line 3"):
        W.load_requests(f)
    f.write_text("time_s,signature\n0.2,b\n0.1,a\n0.3,b\n")
    t, s = W.load_requests(f)
    assert t.tolist() == [0.1, 0.2, 0.3] and s[1] == s[2] != s[0]
