import json
import multiprocessing as mp

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from syslab.cloud.dede import cluster as C
from syslab.cloud.dede import te as T
from syslab.cloud.dede.parallel import Workers, deal
from syslab.core.errors import InputError
from tests.conftest import need


def _slsqp(obj, n, cons):
    best = None
    for x0 in (np.zeros(n), np.full(n, 0.5 / n)):
        r = minimize(obj, x0, method="SLSQP", bounds=[(0, None)] * n, constraints=cons,
                     options={"ftol": 1e-12, "maxiter": 500})
        best = r.x if best is None or obj(r.x) < obj(best) else best
    return best


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_capped_simplex_projection_is_exact(w, seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(0.3, 1, (1, w))
    allowed = rng.random((1, w)) < 0.8
    y = C.project_capped_simplex(v, allowed)
    assert (y >= 0).all() and y.sum() <= 1 + 1e-12 and (y[~allowed] == 0).all()
    idx = np.flatnonzero(allowed[0])
    if len(idx):
        obj = lambda z: ((z - v[0, idx]) ** 2).sum()                         # noqa: E731
        ref = _slsqp(obj, len(idx), [{"type": "ineq", "fun": lambda z: 1 - z.sum()}])
        assert obj(y[0, idx]) <= obj(ref) + 1e-7


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_job_step_solves_its_qp(w, seed):
    rng = np.random.default_rng(seed)
    v, t = rng.normal(0.2, 0.5, (1, w)), rng.uniform(0.1, 2, (1, w))
    beta = np.array([rng.uniform(-0.5, 2)])
    y, a = C.job_step(v, beta, t, np.ones((1, w), bool))
    assert (y >= -1e-12).all() and y.sum() <= 1 + 1e-9 and a[0] <= (t * y).sum() + 1e-9
    obj = lambda z: ((z[:w] - v[0]) ** 2).sum() + (z[w] - beta[0]) ** 2       # noqa: E731
    cons = [{"type": "ineq", "fun": lambda z: 1 - z[:w].sum()},
            {"type": "ineq", "fun": lambda z: t[0] @ z[:w] - z[w]}]
    r = minimize(obj, np.append(np.zeros(w), 0.0), method="SLSQP", constraints=cons,
                 bounds=[(0, None)] * w + [(None, None)], options={"ftol": 1e-12, "maxiter": 500})
    assert obj(np.append(y[0], a)) <= obj(r.x) + 1e-6


def _small_cluster(jobs=40, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 5, (4, 30, 3)) * (rng.random((4, 30, 3)) < 0.7)
    return C.make_jobs(t, np.array([8.0, 4.0, 16.0, 8.0]), jobs, rng)


def test_cluster_admm_is_feasible_and_near_highs():
    p = _small_cluster()
    opt = C.solve_highs(p)
    assert p.violation(opt.x) <= 1e-7
    got = C.solve_admm(p, eps=1e-5, max_iter=6000)
    assert p.violation(got.x) <= 1e-9
    assert 0.98 * opt.objective <= got.objective <= opt.objective + 1e-7


def test_two_workers_compute_what_one_does_and_are_reaped():
    p = _small_cluster(60, seed=3)
    one = C.solve_admm(p, max_iter=50, eps=0.0, workers=1)
    two = C.solve_admm(p, max_iter=50, eps=0.0, workers=2)
    np.testing.assert_allclose(two.x, one.x, atol=1e-10)
    assert not mp.active_children()


def test_worker_errors_surface_and_workers_are_reaped():
    class Bad:
        def boom(self):
            raise ValueError("nope")
    with pytest.raises(RuntimeError, match="nope"), Workers([Bad(), Bad()]) as w:
        w.call("boom")
    assert not mp.active_children()


def test_deal_covers_every_group_once():
    parts = deal(11, 3, np.random.default_rng(0))
    assert sorted(np.concatenate(parts).tolist()) == list(range(11)) and max(map(len, parts)) == 4


def test_te_with_two_workers_matches_one():
    g = T.load_topology(need("dede_inputs").path("dede_inputs", "B4.json"))
    p = T.build(g, T.gravity_demands(g, np.random.default_rng(2)))
    one, two = T.solve_admm(p, max_iter=30, eps=0.0), T.solve_admm(p, max_iter=30, eps=0.0, workers=2)
    np.testing.assert_allclose(two.x, one.x, rtol=1e-9, atol=1e-9)


def test_pop_is_feasible_and_no_better_than_the_optimum():
    g = T.load_topology(need("dede_inputs").path("dede_inputs", "B4.json"))
    p = T.build(g, T.gravity_demands(g, np.random.default_rng(2)))
    opt, pop = T.solve_highs(p), T.solve_pop(p, 4)
    assert p.violation(pop.x) <= 1e-9 and pop.objective <= opt.objective + 1e-6
    assert T.solve_pop(p, 1).objective == pytest.approx(opt.objective, rel=1e-9)


def test_real_throughputs_load_and_bad_files_are_input_errors(tmp_path):
    ds = need("dede_inputs")
    t = C.load_throughputs(ds.path("dede_inputs", "cluster_throughputs.npy"))
    assert t.shape == (10, 2588, 6)
    assert C.load_spec(ds.path("dede_inputs", "cluster_spec.json"), 10).sum() == 352
    bad = tmp_path / "t.npy"
    np.save(bad, -np.ones((2, 3, 2)))
    with pytest.raises(InputError, match="negative"):
        C.load_throughputs(bad)
    np.save(bad, np.ones((2, 3)))
    with pytest.raises(InputError, match="3-D"):
        C.load_throughputs(bad)
    (tmp_path / "x.npy").write_text("not numpy")
    with pytest.raises(InputError, match="npy"):
        C.load_throughputs(tmp_path / "x.npy")
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"worker_0": 8}))
    with pytest.raises(InputError, match="needs 2 worker types"):
        C.load_spec(spec, 2)
    spec.write_text(json.dumps({"worker_0": 8, "worker_1": -1}))
    with pytest.raises(InputError, match="GPUs"):
        C.load_spec(spec, 2)


def test_state_files_are_removed_and_bad_backends_rejected():
    from pathlib import Path

    p = _small_cluster(20, seed=5)
    C.solve_admm(p, max_iter=10, eps=0.0, workers=2)
    assert not list(Path("/dev/shm").glob("syslab-dede-*"))
    with pytest.raises(InputError, match="unknown backend"):
        C.solve_admm(p, max_iter=1, backend="mpi")


def test_ray_actors_compute_what_processes_do():
    pytest.importorskip("ray")
    g = T.load_topology(need("dede_inputs").path("dede_inputs", "B4.json"))
    p = T.build(g, T.gravity_demands(g, np.random.default_rng(2)))
    procs = T.solve_admm(p, max_iter=30, eps=0.0, workers=2)
    actors = T.solve_admm(p, max_iter=30, eps=0.0, workers=2, backend="ray")
    np.testing.assert_allclose(actors.x, procs.x, rtol=1e-9, atol=1e-9)
    import ray
    assert not ray.is_initialized()
