import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syslab.core.errors import InputError
from syslab.training.optimus import model as M
from syslab.training.optimus import schedule as S


def brute_partition(costs, parts):
    best = np.inf
    for cuts in itertools.combinations(range(1, len(costs)), parts - 1):
        edges = (0, *cuts, len(costs))
        best = min(best, max(sum(costs[a:b]) for a, b in zip(edges, edges[1:], strict=False)))
    return best


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.1, 10.0), min_size=2, max_size=9), st.integers(1, 4))
def test_min_max_partition_is_optimal(costs, parts):
    parts = min(parts, len(costs))
    sizes = S.min_max_partition(costs, parts)
    assert sum(sizes) == len(costs) and min(sizes) >= 1 and len(sizes) == parts
    edges = np.concatenate([[0], np.cumsum(sizes)])
    got = max(sum(costs[a:b]) for a, b in zip(edges, edges[1:], strict=False))
    assert got == pytest.approx(brute_partition(costs, parts))


def test_partition_rejects_impossible_requests():
    with pytest.raises(InputError):
        S.min_max_partition([1.0, 2.0], 3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 50), st.floats(0.01, 5)), max_size=12),
       st.lists(st.tuples(st.floats(0, 60), st.floats(0.01, 3)), min_size=1, max_size=12))
def test_gaps_place_earliest_fit_without_overlap(busy, requests):
    intervals = []
    for s, d in sorted(busy):
        if not intervals or s >= intervals[-1][1]:
            intervals.append((s, s + d))
    g = S.Gaps(np.array(intervals).reshape(-1, 2), [(0.0, np.inf)])
    taken = list(intervals)
    for t, d in requests:
        s = g.place(t, d)
        assert s >= t
        assert all(s + d <= a + 1e-9 or s >= b - 1e-9 for a, b in taken)       # no overlap
        # earliest: no feasible start in [t, s) (checked on candidate starts: t and every busy end)
        for cand in [c for c in [t] + [b for _, b in taken] if t <= c < s - 1e-9]:
            assert any(not (cand + d <= a + 1e-9 or cand >= b - 1e-9) for a, b in taken)
        taken.append((s, s + d))


def test_packed_plans_meet_dependencies_and_never_overlap_llm_work():
    job = M.LLMJob(16)
    plan, packed, tried = S.optimus(job)
    assert tried >= 2
    assert S.check_dependencies(packed) == [] and S.check_no_overlap(job, packed) == []
    assert S.llm_only(job) <= packed.iteration_s
    assert S.memory_overhead(job, plan) <= S.MEMORY_BOUND


def test_checks_catch_a_broken_packing():
    job = M.LLMJob(16)
    packed = S.pack(job, S.EncoderPlan(8, (16,)), keep=True)
    packed.enc_forward_end[0] = max(packed.llm_forward_start) + 1.0          # an encoder forward arrives too late
    assert S.check_dependencies(packed)
    d, name, s, e, comm = next(p for p in packed.placed if not p[4])
    llm_busy = M.kernel_intervals(job, S._llm_timeline(job), packed.llm_start)[d]["compute"]
    a, b = llm_busy[len(llm_busy) // 2]
    packed.placed.append((d, "bogus", float(a), float(b), False))          # on top of an LLM kernel
    assert any("overlap" in p for p in S.check_no_overlap(job, packed))


def test_llm_kernels_add_up_to_the_layer_times():
    job = M.LLMJob(8)
    busy = M.kernel_intervals(job, S._llm_timeline(job), 0.0)
    per_dev = 2 * job.microbatches * job.layers_per_virtual_stage      # two chunks per device
    compute = (busy[0]["compute"][:, 1] - busy[0]["compute"][:, 0]).sum()
    assert compute == pytest.approx(per_dev * (job.compute_fwd_s + job.compute_bwd_s))
    link = (busy[0]["link"][:, 1] - busy[0]["link"][:, 0]).sum()
    assert link == pytest.approx(per_dev * 4 * job.allreduce_s)
    assert sum(k.duration_s for k in M.encoder_kernels(False)) == pytest.approx(M.ENC_FWD_MS * 1e-3)
    assert sum(k.duration_s for k in M.encoder_kernels(True)) == pytest.approx(M.ENC_BWD_MS * 1e-3)
