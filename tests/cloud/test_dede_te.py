import json

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from syslab.cloud.dede import te as T
from syslab.core.errors import InputError
from tests.conftest import need


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_group_projection_is_the_exact_weighted_projection(n, seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(1, 2, n)
    step = rng.uniform(0.2, 2, n)
    limit = np.array([rng.uniform(0.1, 3)])
    x = T.project_groups(v, step, np.ones(n), np.zeros(n, dtype=int), limit)
    assert x.sum() <= limit[0] + 1e-9 and (x >= 0).all()
    obj = lambda y: (((y - v) ** 2) / (2 * step)).sum()                    # noqa: E731
    ref = minimize(obj, np.zeros(n), method="SLSQP", bounds=[(0, None)] * n,
                   constraints=[{"type": "ineq", "fun": lambda y: limit[0] - y.sum()}], options={"ftol": 1e-12})
    assert obj(x) <= obj(ref.x) + 1e-7


def test_paths_are_edge_disjoint_and_real():
    g = nx.DiGraph()
    g.add_edges_from([(0, 1), (1, 3), (0, 2), (2, 3), (0, 3), (1, 2)], capacity=1.0)
    paths = T.disjoint_paths(g, 0, 3, k=4)
    used = [e for p in paths for e in zip(p, p[1:], strict=False)]
    assert len(used) == len(set(used)) and len(paths) == 3 and paths[0] == [0, 3]
    assert all(g.has_edge(*e) for e in used)


def test_admm_reaches_the_highs_optimum_on_b4():
    g = T.load_topology(need("dede_inputs").path("dede_inputs", "B4.json"))
    p = T.build(g, T.gravity_demands(g, np.random.default_rng(1)))
    opt = T.solve_highs(p)
    got = T.solve_admm(p, max_iter=5000, eps=1e-4)
    assert p.violation(got.x) <= 1e-9
    assert 0.99 * opt.objective <= got.objective <= opt.objective + 1e-6


def test_bad_topologies_are_input_errors(tmp_path):
    f = tmp_path / "t.json"
    f.write_text(json.dumps({"nodes": [{"id": 0}, {"id": 1}], "links": [{"source": 0, "target": 1, "capacity": -5}]}))
    with pytest.raises(InputError, match="capacity"):
        T.load_topology(f)
    f.write_text(json.dumps([1, 2, 3]))
    with pytest.raises(InputError, match="node-link"):
        T.load_topology(f)
    with pytest.raises(InputError, match="not found"):
        T.load_topology(tmp_path / "missing.json")
