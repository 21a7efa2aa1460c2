import numpy as np
import pytest

from syslab.core.errors import InputError
from syslab.training.flexpipe import model as M
from syslab.training.flexpipe import plan as F


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


def test_memory_falls_with_depth_and_recomputation():
    job = M.Job()
    b = np.array([32768] + [1000] * 31)
    shallow, deep = ((32, 16),), ((8, 4),) * 4
    assert max(M.memory_per_gpu(job, deep, b)) < max(M.memory_per_gpu(job, shallow, b))
    assert max(M.memory_per_gpu(job, shallow, b, recompute=True)) < max(M.memory_per_gpu(job, shallow, b))
    assert not M.fits(job, shallow, b) and M.fits(job, deep, b)


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
    trace = F.flexpipe(job, batches, ((32, 16),), horizon=10)
    prev = ((32, 16),)
    for step, b in zip(trace.steps, batches, strict=True):
        assert step.mu == b.max()
        base = M.iteration_s(job, step.mapping, b, step.recompute)
        assert step.time_s == pytest.approx(base + (F.T_SWITCH_S if step.mapping != prev else 0.0))
        assert M.fits(job, step.mapping, b, step.recompute)               # never runs out of memory
        prev = step.mapping
    # pure data parallelism cannot hold the long batch: by then FlexPipe has grown or optimises memory
    assert trace.steps[3].mapping != ((32, 16),) or trace.steps[3].recompute
    assert trace.switches >= 1


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
    cols = ["b", "n", "s", "f", "gain", "fixed", "sw"]
    none = Table("t", cols, [[32, 2, 4, 4, 1.0, 1.0, 0], [128, 8, 3, 3, 1.05, 1.0, 3]])
    assert "no swept" in _flip(none) and "1.050x at 128" in _flip(none)
    some = Table("t", cols, [[32, 2, 4, 4, 1.0, 1.0, 0], [512, 8, 2, 2, 1.3, 1.0, 3]])
    assert "clears 1.2x at 512 sequences, 8 NICs" in _flip(some)
