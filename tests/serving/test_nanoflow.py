"""NanoFlow: dense-batch accounting, schedules, the search space, and the cost model's shape."""

import numpy as np
import pytest

from syslab.core.errors import InputError
from syslab.serving import nanoflow as N

HW = N.LLAMA2_70B_A100


def test_dense_batch_splits_the_budget_by_token_shares():
    b = N.dense_batch(np.array([1000, 3000]), np.array([100, 300]))
    assert b.decode + b.prefill == 2048
    assert b.decode == round(2048 * 400 / 4400)
    # Context of a decode step, weighted by output tokens: prompt + half the output.
    assert b.decode_context == pytest.approx((100 * 1050 + 300 * 3150) / 400)
    with pytest.raises(InputError):
        N.dense_batch(np.array([]), np.array([]))


def test_optimal_bound_and_op_times_come_from_core_gpu():
    from syslab.core import gpu as G
    assert HW.optimal_tok_s_per_gpu == pytest.approx(312e12 / (2 * HW.shape.active_params))
    # a GEMM is the shared model's, and slows on a fraction of the SMs
    assert HW.gemm_s(2048, 8192, 1024, 1.0) == pytest.approx(G.gemm_s(2048, 8192, 1024, HW.device))
    assert HW.gemm_s(2048, 8192, 1024, 0.5) > 1.8 * HW.gemm_s(2048, 8192, 1024, 1.0)
    # decode attention saturates HBM at the curve's memory saturation point; collectives at theirs
    sat = G.DEFAULT_CURVE.memory_saturation
    assert HW.gemv_s(1e6, sat) == pytest.approx(HW.gemv_s(1e6, 1.0))
    assert HW.gemv_s(1e6, sat / 2) > 1.8 * HW.gemv_s(1e6, 1.0)
    net = G.DEFAULT_CURVE.collective_saturation
    assert HW.allreduce_s(2048, net) == pytest.approx(HW.allreduce_s(2048, 1.0))
    slow = N.Hardware(HW.shape, HW.device, HW.tp, curve=G.SMCurve(memory_saturation=0.8))
    assert slow.gemv_s(1e6, 0.4) > HW.gemv_s(1e6, 0.4)


def test_one_stream_is_the_sum_and_overlap_never_breaks_dependencies():
    b = N.dense_batch(np.array([1000] * 10), np.array([200] * 10))
    seq_t, seq = N.layer_time_s(HW, b, N.Config((2048,)), layers=1)
    assert seq_t == pytest.approx(sum(op.duration_s for op in seq.ops.values()))
    cfg = N.Config((1024, 1024), 0.7, 0.2, 0.1, overlap=True)
    _, sch = N.layer_time_s(HW, b, cfg, layers=2)
    for name, op in sch.ops.items():
        for d in op.deps:
            assert sch.start[name] >= sch.end[d] - 1e-15
    assert {op.resource for op in sch.ops.values()} == {"compute", "memory", "network"}


def test_search_explores_tile_aligned_splits_and_shares():
    b = N.dense_batch(np.array([1000] * 10), np.array([200] * 10))
    cfg, t = N.search(HW, b)
    assert sum(cfg.sizes) == 2048 and all(m % N.TILE == 0 for m in cfg.sizes[:-1]) and 2 <= len(cfg.sizes) <= 4
    assert cfg.gemm_share + cfg.gemv_share + cfg.net_share == pytest.approx(1.0)
    # The search's choice is no worse than any single point of its space.
    other = N.Config((1024, 1024), 0.7, 0.2, 0.1, overlap=True)
    assert t <= N.layer_time_s(HW, b, other, layers=2)[0] + 1e-12


def test_less_gemm_interference_means_more_overlap_gain():
    b = N.dense_batch(np.array([1020] * 10), np.array([129] * 10))
    gains = []
    for alpha in (1.0, 0.5, 0.0):
        hw = N.Hardware(HW.shape, HW.device, HW.tp, alpha)
        r = N.evaluate(hw, b)
        gains.append(r["nanoflow"]["tok_s_per_gpu"] / r["non-overlap"]["tok_s_per_gpu"])
    assert gains[0] <= gains[1] <= gains[2] and gains[2] > 1.0


@pytest.mark.parametrize("sizes", [(24,), (1, 23), (5, 7, 12), (8, 8, 8)])
def test_nano_batched_layer_equals_the_full_batch(sizes):
    assert N.nano_batching_is_exact(np.random.default_rng(0), sizes) < 1e-12


def test_tiny_layer_is_causal():
    rng = np.random.default_rng(1)
    d, f = 16, 32
    w = {"qkv": rng.normal(0, 0.2, (d, 3 * d)), "o": rng.normal(0, 0.2, (d, d)),
         "up": rng.normal(0, 0.2, (d, 2 * f)), "down": rng.normal(0, 0.2, (f, d))}
    x = rng.normal(size=(6, d))
    y = N.tiny_layer_forward([x], w)[0]
    x2 = x.copy()
    x2[-1] += 1.0                                   # changing the last token cannot change earlier outputs
    y2 = N.tiny_layer_forward([x2], w)[0]
    assert np.allclose(y[:-1], y2[:-1]) and not np.allclose(y[-1], y2[-1])
