"""Weaver: cold-GPU waits, kernel splitting, hot step times, and exact split attention."""

import numpy as np
import pytest

from syslab.serving import weaver as W

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
