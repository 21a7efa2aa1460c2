import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from syslab.core import stats


def test_percentile_and_cdf_agree_with_numpy():
    v = np.array([5.0, 1.0, 3.0, 2.0, 4.0])
    assert stats.percentile(v, 50) == np.percentile(v, 50) == 3.0
    x, y = stats.cdf(v)
    assert list(x) == [1, 2, 3, 4, 5] and y[-1] == 1.0 and y[0] == 0.2


def test_slo_attainment_counts_inclusive():
    assert stats.slo_attainment([0.1, 0.2, 0.3, 0.4], 0.2) == 0.5


@given(st.lists(st.floats(0.1, 100), min_size=1, max_size=50))
def test_imbalance_is_at_least_one(loads):
    assert stats.imbalance(loads) >= 1.0 - 1e-12


def test_bootstrap_ci_brackets_the_mean():
    rng = np.random.default_rng(1)
    v = rng.normal(10, 1, 400)
    lo, hi = stats.bootstrap_ci(v, rng=rng)
    assert lo < v.mean() < hi and hi - lo < 0.5


def test_geomean():
    assert abs(stats.geomean([1, 4, 16]) - 4.0) < 1e-12
