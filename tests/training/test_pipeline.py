import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syslab.core.errors import InputError
from syslab.training.pipeline import one_f_one_b, one_f_one_b_order, one_f_one_b_schedule
from syslab.training.wlb_llm import fig5_iteration_s, iteration_s


@pytest.mark.parametrize("pp,m", [(4, 8), (4, 2), (1, 3), (8, 8)])
def test_uniform_1f1b_makespan_is_p_minus_1_plus_m_times_f_plus_b(pp, m):
    f, b = 1.0, 2.0
    s = one_f_one_b_schedule(np.full((pp, m), f), np.full((pp, m), b))
    assert s.makespan == pytest.approx((pp - 1 + m) * (f + b))
    # The paper's closed form agrees for uniform micro-batches.
    assert iteration_s([f] * m, pp) == pytest.approx(fig5_iteration_s([f] * m, pp))


def test_order_has_warmup_then_alternation():
    assert one_f_one_b_order(0, 4, 6)[:4] == [("F", 0), ("F", 1), ("F", 2), ("F", 3)]
    assert one_f_one_b_order(3, 4, 6)[:4] == [("F", 0), ("B", 0), ("F", 1), ("B", 1)]
    for stage in range(4):
        order = one_f_one_b_order(stage, 4, 6)
        assert sorted(order) == sorted([("F", j) for j in range(6)] + [("B", j) for j in range(6)])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 9), st.integers(0, 1000))
def test_1f1b_respects_pipeline_dependencies(pp, m, seed):
    rng = np.random.default_rng(seed)
    fwd = rng.uniform(0.1, 1.0, (pp, m))
    s = one_f_one_b_schedule(fwd, 2 * fwd, p2p_s=0.01)
    for j in range(m):
        for st_ in range(1, pp):
            assert s.start[f"F{st_}.{j}"] >= s.end[f"F{st_ - 1}.{j}"] + 0.01 - 1e-9
        assert s.start[f"B{pp - 1}.{j}"] >= s.end[f"F{pp - 1}.{j}"] - 1e-9
    # Never faster than the busiest stage's total work.
    assert s.makespan >= (3 * fwd).sum(axis=1).max() - 1e-9


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError):
        one_f_one_b(np.ones((2, 3)), np.ones((3, 2)))
