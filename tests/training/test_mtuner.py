"""mTuner: the implementation space, the memory and communication arithmetic, the planners against brute
force and each other; the real demo runs in the quick reproduction."""

import itertools

import numpy as np
import pytest

from syslab.core.hardware import gpu, link
from syslab.core.models import Transformer, model
from syslab.training.mtuner import plan as P

SERVER = P.Server("PCIe", gpu("A100-80GB"), link("pcie4"))


def test_the_implementation_space_respects_its_constraints():
    assert len({(c.gather_to, c.discard_to, c.bwd_discard_to) for c in P.CHOICES}) == 20
    for c in P.CHOICES:
        assert c.discard_to <= c.gather_to and c.bwd_discard_to <= c.gather_to
        assert c.bwd_discard_to >= c.discard_to and c.tp * c.gather_to == 8


def test_gather_bytes_and_memory_of_the_named_policies():
    w = P.Workload(model("llama2-7b"), 2048)
    weight = w.layer_weight_bytes
    fsdp = P.layer_cost(w, SERVER, P.Choice(8, 1, 1, False))
    cache = P.layer_cost(w, SERVER, P.Choice(8, 8, 1, False))
    tp8 = P.layer_cost(w, SERVER, P.Choice(1, 1, 1, False))
    assert fsdp.gather_bytes == pytest.approx(weight * 14 / 8)          # gather for forward and for backward
    assert cache.gather_bytes == pytest.approx(weight * 7 / 8)          # cached from forward to backward
    assert tp8.gather_bytes == 0 and tp8.tp_s > 0 and fsdp.tp_s == 0
    assert cache.peak_bytes - fsdp.peak_bytes == pytest.approx(weight * 7 / 8)
    rc = P.layer_cost(w, SERVER, P.Choice(8, 1, 1, True))
    assert rc.peak_bytes < fsdp.peak_bytes and fsdp.compute_s < rc.compute_s < 2 * fsdp.compute_s   # + 1 forward


TINY = Transformer("tiny", 3, 1024, 8, 8, 2816, 1000)


def _brute(w, server, choices):
    limit = server.memory_bytes - w.reserve_gb * 1e9
    best = np.inf
    for combo in itertools.product(choices, repeat=w.shape.layers):
        costs = [P.layer_cost(w, server, c) for c in combo]
        if sum(k.peak_bytes for k in costs) <= limit and sum(k.valley_bytes for k in costs) <= limit:
            best = min(best, sum(k.time_s for k in costs))
    return best


@pytest.mark.parametrize("reserve", [79.5, 79.9, 79.95])
def test_counts_program_and_dp_agree_with_brute_force_under_tight_memory(reserve):
    w = P.Workload(TINY, 4096, micro_batch=4, reserve_gb=reserve)
    choices = tuple(c for c in P.CHOICES if c.gather_to == 8)[:8]
    exact = _brute(w, SERVER, choices)
    counts = P.solve_counts(w, SERVER, choices)
    assert counts.time_s == pytest.approx(exact) if np.isfinite(exact) else not counts.feasible
    dp = P.solve(w, SERVER, choices, units_per_gb=200)
    if np.isfinite(exact):                                            # memory rounded up: never better, close
        assert P.fits(w, SERVER, dp) and exact - 1e-12 <= dp.time_s <= exact * 1.05
    else:
        assert not dp.feasible


def test_mtuner_is_never_worse_than_the_baselines_and_fits():
    for name, seq in (("llama2-13b", 8192), ("llama2-70b", 2048)):
        w = P.Workload(model(name), seq)
        m = P.mtuner(w, SERVER)
        assert P.fits(w, SERVER, m) and len(m.choices) == w.shape.layers
        for base in (P.uniform(w, SERVER, *P.FSDP), P.uniform(w, SERVER, *P.MEGATRON_TP8), P.best_uniform(w, SERVER)):
            assert m.time_s <= base.time_s + 1e-12
        assert len({c.gather_to for c in m.choices}) == 1                # one tensor-parallel degree
