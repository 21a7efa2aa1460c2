import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from syslab.core.errors import InputError
from syslab.training.flexpipe import model as M
from syslab.training.flexpipe import plan as F
from syslab.training.flexpipe import reproduce as R


def test_iteration_time_has_the_closed_forms_of_1f1b_and_data_parallelism():
    job = M.Job(layers=8, gpus=4, batch=8)
    lengths = np.full(8, 1000)
    # 4 stages x 1 GPU, equal sequences: 1F1B's (B + S - 1) t; the hand-offs make t differ slightly per stage
    mp = ((2, 1),) * 4
    t = M.microbatch_times(job, mp, lengths)
    assert M.iteration_s(job, mp, lengths) == pytest.approx(t[:, 0].sum() + (8 - 1) * t[:, 0].max())
    # 1 stage x 4 replicas: (B / g) t plus the exposed all-reduce
    dp = ((8, 4),)
    t1 = M.microbatch_times(job, dp, lengths)[0, 0]
    ar = M.G.collective_s("allreduce", 2 * job.params_per_layer * 8, 4, M.DEVICE, fabric=M.FABRIC)
    assert M.iteration_s(job, dp, lengths) == pytest.approx(2 * t1 + max(0.0, ar - 2 / 3 * t1))


def test_memory_is_the_papers_model_every_micro_batch_in_flight_at_mu():
    job = M.Job()
    one_long = np.array([32768] + [1000] * 31)
    shallow, deep = ((32, 16),), ((8, 4),) * 4
    # M_act reads only mu: one long sequence among short ones costs what a batch of long ones costs
    assert M.memory_per_gpu(job, deep, one_long) == M.memory_per_gpu(job, deep, np.full(32, 32768))
    # 1F1B: stage i of S holds min(S - i, ceil(B / g)) micro-batches
    assert M.in_flight(job, deep) == [4, 3, 2, 1] and M.in_flight(job, shallow) == [1]
    assert M.in_flight(M.Job(batch=2), ((4, 1),) * 8)[:3] == [2, 2, 2]
    mem = M.memory_per_gpu(job, deep, one_long)
    act = [m - 16 * job.params_per_layer * 8 - M.BUFFER_GB * M.GB for m in mem]
    assert act == pytest.approx([k * 8 * 32768 * 34 * job.hidden for k in (4, 3, 2, 1)])
    assert max(M.memory_per_gpu(job, deep, one_long)) < max(M.memory_per_gpu(job, shallow, one_long))
    assert max(M.memory_per_gpu(job, shallow, one_long, recompute=True)) < max(M.memory_per_gpu(job, shallow, one_long))
    # at 32K no mapping of HBSA's space fits without recomputation; with it, all of them do
    space = list(F.hbsa_space(job))
    assert not any(M.fits(job, mp, 32768) for mp in space) and all(M.fits(job, mp, 32768, True) for mp in space)
    assert M.fits(job, deep, 8192) and not M.fits(job, shallow, 8192)


def test_fast_iteration_time_equals_the_per_sequence_matrix():
    job = M.Job()
    rng = np.random.default_rng(3)
    for mp in list(F.hbsa_space(job))[::7]:
        b = rng.integers(100, 30000, 32)
        for rc in (False, True):
            t = M.microbatch_times(job, mp, b, rc)
            g = np.array([g for _, g in mp], dtype=np.float64)
            longest = t[:, int(np.argmax(b))]
            pipeline = float(np.maximum(t.sum(axis=1) / g, longest).max() + longest.sum() - longest.max())
            assert M.iteration_s(job, mp, b, rc) >= pipeline - 1e-12
            if all(gg == 1 for _, gg in mp):                                   # no all-reduce to expose
                assert M.iteration_s(job, mp, b, rc) == pytest.approx(pipeline)


def test_bad_mappings_are_input_errors():
    with pytest.raises(InputError):
        M.check_mapping(M.Job(), ((16, 8),))
    with pytest.raises(InputError):
        M.check_mapping(M.Job(), ((32, 16), (0, 0)))


def test_hbsa_space_is_valid_and_small():
    job = M.Job()
    space = list(F.hbsa_space(job))
    assert 10 < len(space) < 1000
    for mp in space:
        M.check_mapping(job, mp)
        n = len(mp)
        assert all(job.gpus // n <= g <= job.gpus // n + job.gpus % n for _, g in mp)
        assert all(job.layers // n <= la <= job.layers // n + job.layers % n for la, _ in mp)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hbsa_is_within_5_percent_of_brute_force_on_8_gpus(seed):
    job = M.Job(layers=12, gpus=8, batch=16)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(200, 3000, 16)
    lengths[0] = [2000, 12000, 24000][seed]
    _, hb = F.best(job, lengths, list(F.hbsa_space(job)))
    _, bf = F.brute_force(job, lengths)
    assert bf <= hb <= 1.05 * bf


def test_switches_pay_the_stall_and_decisions_see_the_next_batch():
    job = M.Job()
    short = [np.full(32, 800)] * 3
    long = [np.array([32768] + [800] * 31)]
    batches = short + long + short
    trace = F.flexpipe(job, batches, ((32, 16),), horizon=10, guard=False)
    prev = ((32, 16),)
    for step, b in zip(trace.steps, batches, strict=True):
        assert step.mu == b.max()
        base = M.iteration_s(job, step.mapping, b, step.recompute)
        assert step.time_s == pytest.approx(base + (F.T_SWITCH_S if step.mapping != prev else 0.0))
        assert M.fits(job, step.mapping, b, step.recompute)               # never runs out of memory
        prev = step.mapping
    # nothing holds the long batch without recomputation
    assert trace.steps[3].recompute and trace.switches >= 1


def test_recomputing_mappings_are_searched_even_when_one_fits_without():
    job = M.Job()
    b = np.array([20480] * 8 + [800] * 24)               # a quarter of the batch long
    space = list(F.hbsa_space(job))
    (deep, rc0), t0 = F.best(job, b, space, recompute=False)
    (mp, rc), t = F.best(job, b, space)
    assert not rc0 and rc and t < t0                       # a recomputing shallow mapping beats the best deep one
    trace = F.flexpipe(job, [b] * 4, deep, horizon=10, guard=False)
    assert trace.steps[0].mapping == mp and trace.steps[0].recompute


def test_without_the_guard_switching_can_lose_to_a_static_pipeline():
    """The issue's mix (a quarter of the sequences at 30K): FMOP's one-iteration judgement switches back and forth
    and pays more in stalls than it wins; the guard keeps FlexPipe at least as fast as every static pipeline."""
    job = M.Job()
    rng = np.random.default_rng(0)
    short = np.maximum(64, rng.lognormal(6.7, 0.9, 5000)).astype(np.int64) // 64 * 64
    batches = [np.where(rng.random(32) < 0.25, 30000, rng.choice(short, 32)).astype(np.int64) for _ in range(60)]
    static, _ = R.statics(job, batches)
    start = static[R.ABLATION][1]
    free = F.flexpipe(job, batches, start, horizon=10, guard=False)
    guarded = F.flexpipe(job, batches, start, horizon=10)
    fastest = min(tr.time_s for tr, _ in static.values() if tr.steps)
    assert free.switches > 0 and free.time_s > fastest
    assert guarded.time_s <= fastest * (1 + 1e-9)


LENGTHS = hs.integers(1, 128).map(lambda k: 256 * k)          # on a grid, so the layer-time cache is reused


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=hs.integers(0, 2**16), long_share=hs.floats(0.0, 1.0), long=LENGTHS,
       iterations=hs.integers(1, 12), horizon=hs.sampled_from([1.0, 3.0, 10.0]),
       nics=hs.sampled_from([2, 8]), batch=hs.sampled_from([16, 32]))
def test_flexpipe_is_never_slower_than_any_static_baseline(seed, long_share, long, iterations, horizon, nics, batch):
    """FlexPipe's search holds every static plan (any mapping of HBSA's space, recomputation off, on, or only where
    needed), and its guard bounds its total by staying put: on any mix it is at least as fast as each baseline."""
    job = M.Job(batch=batch, fabric=M.G.Fabric("nvlink3", 4, "ib-hdr", nics))
    rng = np.random.default_rng(seed)
    short = 256 * rng.integers(1, 17, 500)                                           # up to 4K
    batches = F.mixture_batches(short, np.array([long]), batch, iterations, long_share, rng)
    static, _ = R.statics(job, batches)
    start = static[R.ABLATION][1]
    assert start is not None                                  # with recomputation every length up to 32K fits
    flex = F.flexpipe(job, batches, start, horizon=horizon)
    for name, (trace, _) in static.items():
        if trace.steps:
            assert flex.time_s <= trace.time_s * (1 + 1e-9), name
    # the ablation (one mapping, recomputation only where needed) is the fastest static plan
    assert static[R.ABLATION][0].time_s <= min(tr.time_s for tr, _ in static.values() if tr.steps) * (1 + 1e-9)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=hs.integers(0, 2**16), long_share=hs.floats(0.0, 1.0), long=LENGTHS, iterations=hs.integers(1, 30),
       first=hs.integers(0, 10**6), horizon=hs.sampled_from([1.0, 10.0]))
def test_the_guard_bounds_flexpipe_by_staying_on_its_first_mapping(seed, long_share, long, iterations, first,
                                                                   horizon):
    """From any first mapping (a poor one lets the guard's switches pay off), FlexPipe never ends slower than
    staying there with recomputation only where needed, stalls included."""
    job = M.Job()
    space = list(F.hbsa_space(job))
    initial = space[first % len(space)]
    rng = np.random.default_rng(seed)
    batches = F.mixture_batches(256 * rng.integers(1, 17, 500), np.array([long]), job.batch, iterations,
                                long_share, rng)
    stay = sum(M.iteration_s(job, initial, b, not M.fits(job, initial, b)) for b in batches)
    flex = F.flexpipe(job, batches, initial, horizon=horizon)
    assert flex.time_s <= stay * (1 + 1e-9)
    for step, b in zip(flex.steps, batches, strict=True):
        assert M.fits(job, step.mapping, b, step.recompute)


def test_mixture_hits_the_long_batch_share():
    rng = np.random.default_rng(0)
    bs = F.mixture_batches(np.full(100, 500), np.full(100, 20000), 32, 20000, 0.03, rng)
    share = np.mean([b.max() > 8192 for b in bs])
    assert share == pytest.approx(0.03, abs=0.005)


def test_live_reconfiguration_matches_uninterrupted_training():
    pytest.importorskip("torch")
    from syslab.training.flexpipe import live
    out = live.run(iterations=24, plan=((0, 2), (6, 4), (12, 1), (18, 2)))
    assert out["max_param_diff"] <= 1e-9 and out["replica_diff"] == 0.0 and out["bytes_moved"] > 0
    assert out["loss_last"] < out["loss_first"]


def test_losing_optimizer_state_in_a_switch_is_detected(monkeypatch):
    torch = pytest.importorskip("torch")
    from syslab.training.flexpipe import live
    original = live.Cluster.reconfigure

    def forgetful(self, mapping):                                         # a TwinLayer that drops Adam state
        for twin in self.host.values():
            for st in twin["adam"].values():
                for t in st.values():
                    t.zero_()
        original(self, mapping)

    monkeypatch.setattr(live.Cluster, "reconfigure", forgetful)
    out = live.run(iterations=20, plan=((0, 4), (10, 1)), dtype=torch.float64)     # a shrink copies layers in
    assert out["max_param_diff"] > 1e-6


def test_more_inter_node_bandwidth_never_slows_a_mapping():
    lengths = np.array([4000] + [800] * 31)
    for nics in (1, 2, 4, 8):
        slow = M.Job(fabric=M.G.Fabric("nvlink3", 4, "ib-hdr", nics))
        fast = M.Job(fabric=M.G.Fabric("nvlink3", 4, "ib-hdr", 2 * nics))
        for mp in (((32, 16),), ((16, 8),) * 2, ((8, 4),) * 4):
            assert M.iteration_s(fast, mp, lengths) <= M.iteration_s(slow, mp, lengths) + 1e-12


def test_the_sensitivity_note_is_read_from_the_table():
    from syslab.core.claims import Table
    from syslab.training.flexpipe.reproduce import _flip
    cols = ["b", "n", "s", "f", "gain", "free", "sw"]
    none = Table("t", cols, [[32, 2, 4, 4, 1.0, 1.0, "0 / 0"], [128, 8, 3, 3, 1.05, 0.9, "0 / 3"]])
    assert "no swept" in _flip(none) and "1.050x at 128" in _flip(none) and "never does better" in _flip(none)
    some = Table("t", cols, [[32, 2, 4, 4, 1.0, 1.0, "0 / 0"], [512, 8, 2, 2, 1.3, 1.4, "1 / 3"]])
    assert "clears 1.2x at 512 sequences, 8 NICs" in _flip(some) and "at most 1.400x" in _flip(some)
    assert _flip(Table("t", cols, [[32, 2, "none fits", "-", "-", "-", "-"]])) == "no swept configuration fits"
