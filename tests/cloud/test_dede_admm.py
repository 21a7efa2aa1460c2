import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from syslab.cloud.dede import admm as A
from syslab.core.errors import InputError


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_row_projection_is_the_exact_constrained_projection(n, seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 2, (1, n))
    a = rng.uniform(0, 2, (1, n))
    b = rng.uniform(0.1, 3, 1)
    u = rng.uniform(0.5, 3, (1, n))
    x = A.project_rows(v, a, b, u)[0]
    assert (a[0] @ x) <= b[0] + 1e-9 and (x >= -1e-12).all() and (x <= u[0] + 1e-12).all()
    ref = minimize(lambda y: ((y - v[0]) ** 2).sum(), np.zeros(n), method="SLSQP",
                   bounds=list(zip(np.zeros(n), u[0], strict=True)),
                   constraints=[{"type": "ineq", "fun": lambda y: b[0] - a[0] @ y}], options={"ftol": 1e-12})
    assert ((x - v[0]) ** 2).sum() <= ((ref.x - v[0]) ** 2).sum() + 1e-7


@pytest.mark.parametrize("seed, shape", [(0, (4, 6)), (1, (10, 30)), (2, (30, 60))])
def test_admm_matches_highs_within_one_percent_and_is_feasible(seed, shape):
    rng = np.random.default_rng(seed)
    R, D = shape
    lp = A.SeparableLP(rng.uniform(0.1, 1, shape), rng.uniform(0.5, 2, shape), rng.uniform(1, 5, R) * D / 10,
                       np.ones(shape), rng.uniform(0.5, 1.5, D))
    opt = A.solve_highs(lp)
    got = A.solve_admm(lp, rho=1.0, max_iter=3000, eps=1e-4)
    assert lp.violation(got.x) <= 1e-9
    assert got.objective <= opt.objective + 1e-6                         # feasible, so never above the optimum
    assert got.objective >= 0.99 * opt.objective


def test_bad_problems_are_input_errors():
    with pytest.raises(InputError, match="negative"):
        A.SeparableLP(np.ones((2, 2)), np.ones((2, 2)), np.array([1.0, -1.0]), np.ones((2, 2)), np.ones(2))
    with pytest.raises(InputError, match="shapes"):
        A.SeparableLP(np.ones((2, 2)), np.ones((2, 3)), np.ones(2), np.ones((2, 2)), np.ones(2))
    lp = A.SeparableLP(np.ones((1, 1)), np.ones((1, 1)), np.ones(1), np.ones((1, 1)), np.ones(1))
    with pytest.raises(InputError):
        A.solve_admm(lp, rho=0.0)
