"""Cluster scheduling with max-min fairness (Gavel's policy) by DeDe's decoupling, on the real throughput matrix.

Workload. ``cluster_throughputs.npy`` from DeDe's cluster example holds T[worker type, job type, k]: steps per
second of a job type run with 2**k GPUs on one worker type (0 = cannot run there); ``cluster_spec.json`` gives
the GPUs of each worker type (the axis meaning is checked against the example's loader, which reads the
array as ``(worker_type, job_type, 2**k scale factor)``). A job is a (job type, scale factor s_j, priority
p_j) drawn as in Gavel: priority uniform in [1, 10] (DeDe's job generator), and s_j in {1, 2, 4, 8} with
probabilities 0.7/0.1/0.15/0.05 (Gavel's multi-GPU job mix; unverified here), kept where it can run.

Problem (Gavel's max-min fairness with performance, as DeDe formulates it). x[j, w] is the share of time job
j runs on worker type w:

    max alpha  s.t.  sum_w T'_jw x_jw >= alpha          for every job       (fairness level)
                     sum_w x_jw <= 1                     for every job       (time)
                     sum_j s_j x_jw <= G_w               for every type      (GPUs)
                     x >= 0, x_jw = 0 where T_jw = 0

with T'_jw = T_jw / (equal-share throughput of j x p_j / s_j), the throughput normalised by what j would get
from an equal share of the cluster (so alpha = 1 means everyone gets their fair share).

Decoupling. The resource side owns x and the fairness level alpha; the demand side owns a copy y and one
local level a_j per job; ADMM enforces x = y and a_j = alpha (scaled duals lam, mu). Steps:

    x_w   = projection of (y_w - lam_w) onto sum_j s_j x_jw <= G_w, x >= 0      (per type, exact bisection)
    alpha = mean_j(a_j - mu_j) + 1 / (rho J)                                  (closed form: maximise alpha)
    (y_j, a_j) = argmin |y - (x_j + lam_j)|^2 + (a - (alpha + mu_j))^2         (per job)
                 s.t. T'_j y >= a, sum y <= 1, y >= 0
    lam += x - y;  mu += alpha - a

The job step eliminates a = min(beta, T'_j y) and, by its KKT conditions, is y(gamma) = projection of
(v + gamma T'_j) onto {y >= 0, sum y <= 1} with gamma = max(0, beta - T'_j y(gamma)); T'_j y(gamma) rises with
gamma, so bisection on gamma finds it, and the inner projection is exact by sorting (W = 10 types). All jobs
are vectorised; jobs (and types) are dealt to worker processes. Fix pass: scale over-full types and
over-time jobs down; the objective reported is min_j T'_j x_j of that feasible allocation.

Cost per iteration: O(J W log W x outer bisection steps) for the job step, O(J W x bisection) for types.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix, csr_matrix, hstack, vstack

from syslab.cloud.dede.admm import Solution, balance, project_groups
from syslab.cloud.dede.parallel import SharedState, deal, make_workers
from syslab.core.errors import InputError
from syslab.core.inputs import read_json

SCALE_CHOICES = (1, 2, 4, 8)
SCALE_PROBS = (0.7, 0.1, 0.15, 0.05)     # Gavel's multi-GPU job mix (unverified)
GAMMA_STEPS = 50


def load_throughputs(path: str | Path) -> np.ndarray:
    """T[worker type, job type, k] (steps/s with 2**k GPUs), finite and >= 0."""
    from syslab.core.inputs import read_npy

    path = Path(path)
    t = read_npy(path, fix="save the throughput matrix with numpy.save.", finite=False)
    if t.ndim != 3:
        raise InputError(f"shape {t.shape}, dtype {t.dtype}; expected a numeric 3-D array.", file=path,
                         field="shape", fix="axes are (worker type, job type, log2 GPUs per job).")
    if 0 in t.shape:
        raise InputError(f"shape {t.shape}: an axis is empty.", file=path, field="shape",
                         fix="give at least one worker type, one job type and one GPU count (2**0).")
    if not np.isfinite(t).all() or (t < 0).any() or t.max() > 1e12:      # steps/s: 1e12 is no training job
        raise InputError("has a negative, non-finite or absurd (> 1e12 steps/s) throughput.", file=path,
                         field="values", fix="throughputs are >= 0 (0 = the job cannot run on that worker type).")
    if not (t > 0).any():
        raise InputError("has no positive throughput: no job can run anywhere.", file=path, field="values",
                         fix="give the measured steps/s of each job type on each worker type.")
    return t.astype(np.float64)


def load_spec(path: str | Path, worker_types: int) -> np.ndarray:
    """GPUs per worker type from ``{"worker_0": 8, ...}``, one entry per row of the throughput matrix."""
    from syslab.core.inputs import number

    path = Path(path)
    fix = 'pass {"worker_0": <GPUs>, ...} with one entry per worker type.'
    raw = read_json(path, fix=fix)
    if not isinstance(raw, dict) or len(raw) != worker_types:
        raise InputError(f"needs {worker_types} worker types (the throughput matrix's first axis), has "
                         f"{len(raw) if isinstance(raw, dict) else 'none'}.", file=path, field="worker types",
                         fix="give one GPU count per worker type.")
    gpus = []
    for name, n in raw.items():
        if not isinstance(n, int | float) or isinstance(n, bool) or n <= 0:
            raise InputError(f"{name} has {n!r} GPUs.", file=path, field=name, fix="GPU counts are positive.")
        # a million GPUs of one type is beyond any cluster; also refuses 1e999 (read as infinity)
        gpus.append(number(n, field=name, file=path, max=1e6, fix="GPU counts are positive, at most 1e6."))
    return np.array(gpus)


@dataclass
class ClusterProblem:
    throughput: np.ndarray     # [J, W] normalised T'
    scale: np.ndarray          # [J] GPUs per job
    gpus: np.ndarray           # [W]

    @property
    def allowed(self) -> np.ndarray:
        return self.throughput > 0

    def fairness(self, x: np.ndarray) -> float:
        return float((self.throughput * x).sum(axis=1).min())

    def violation(self, x: np.ndarray) -> float:
        gpu = ((self.scale[:, None] * x).sum(axis=0) - self.gpus) / self.gpus
        return float(max(gpu.max(), x.sum(axis=1).max() - 1, (-x).max(), (x * ~self.allowed).max(), 0.0))


def make_jobs(t: np.ndarray, gpus: np.ndarray, jobs: int, rng: np.random.Generator) -> ClusterProblem:
    """``jobs`` Gavel-style jobs on the measured throughputs, normalised by their equal-share throughput."""
    if jobs < 1:
        raise InputError(f"jobs = {jobs}.", field="jobs", fix="ask for at least one job.")
    W, J_types, K = t.shape
    choices = [s for s in SCALE_CHOICES if int(np.log2(s)) < K]
    probs = np.array(SCALE_PROBS[:len(choices)]) / sum(SCALE_PROBS[:len(choices)])
    rows, scales, prios = [], [], []
    while len(rows) < jobs:
        jt, s = int(rng.integers(J_types)), int(rng.choice(choices, p=probs))
        thr = t[:, jt, int(np.log2(s))] * (s <= gpus)
        if thr.max() <= 0:
            continue
        rows.append(thr)
        scales.append(s)
        prios.append(rng.uniform(1.0, 10.0))
    thr, scale, prio = np.array(rows), np.array(scales, float), np.array(prios)
    equal_share = thr @ (gpus / gpus.sum())
    return ClusterProblem(thr / (equal_share * prio / scale)[:, None], scale, gpus)


def project_capped_simplex(v: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Row-wise exact projection onto {y >= 0, sum y <= 1, y = 0 where not allowed} (sorting, vectorised)."""
    v = np.where(allowed, v, -np.inf)
    y = np.maximum(v, 0.0)
    over = y.sum(axis=1) > 1
    if over.any():
        u = -np.sort(-v[over], axis=1)
        css = np.cumsum(np.where(np.isfinite(u), u, 0.0), axis=1) - 1
        k = np.arange(1, u.shape[1] + 1)
        ok = u - css / k > 0
        r = ok.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)            # last index where it holds
        theta = css[np.arange(len(r)), r] / (r + 1)
        y[over] = np.maximum(v[over] - theta[:, None], 0.0)
    return y


def job_step(v: np.ndarray, beta: np.ndarray, t: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per job: argmin |y - v|^2 + (a - beta)^2 s.t. t y >= a, sum y <= 1, y >= 0 (see the module docstring)."""
    lo, hi = np.zeros(len(beta)), np.maximum(beta, 0.0)
    for _ in range(GAMMA_STEPS):
        mid = (lo + hi) / 2
        y = project_capped_simplex(v + mid[:, None] * t, allowed)
        short = mid < beta - (t * y).sum(axis=1)                          # h(mid) < 0: gamma is larger
        lo, hi = np.where(short, mid, lo), np.where(short, hi, mid)
    y = project_capped_simplex(v + hi[:, None] * t, allowed)
    return y, np.minimum(beta, (t * y).sum(axis=1))


def _sq(v: np.ndarray) -> float:
    return float(np.square(v).sum())


class _Part:
    """One worker's share: some worker types (x) and some jobs (y, a and the duals of their entries)."""

    def __init__(self, p: ClusterProblem, types: np.ndarray, jobs: np.ndarray, state: dict[str, np.ndarray]):
        J, W = p.throughput.shape
        self.s, self.J, self.W = state, J, W
        self.types, self.jobs = types, jobs
        self.coef = np.repeat(p.scale, len(types))                           # entries [J, my types], job-major
        self.group = np.tile(np.arange(len(types)), J)
        self.gpus = p.gpus[types]
        self.upper = np.where(p.allowed[:, types].ravel(), np.inf, 0.0)
        self.t, self.allowed = p.throughput[jobs], p.allowed[jobs]

    def view(self, name: str) -> np.ndarray:
        return self.s[name].reshape(self.J, self.W)

    def type_step(self) -> None:
        y, lam, x = self.view("y"), self.view("lam"), self.view("x")
        v = (y[:, self.types] - lam[:, self.types]).ravel()
        x[:, self.types] = project_groups(v, self.coef, self.coef, self.group, self.gpus, self.upper).reshape(
            self.J, len(self.types))

    def job_step(self, alpha: float) -> tuple[float, ...]:
        x, lam, y = self.view("x")[self.jobs], self.view("lam")[self.jobs], self.view("y")
        a_all, mu_all = self.s["a"], self.s["mu"]
        y_old, mu = y[self.jobs], mu_all[self.jobs]
        y_new, a = job_step(x + lam, alpha + mu, self.t, self.allowed)
        y[self.jobs] = y_new
        a_all[self.jobs] = a
        mu_all[self.jobs] = mu + alpha - a
        gap = x - y_new
        self.view("lam")[self.jobs] = lam + gap
        return (_sq(gap) + _sq(alpha - a), _sq(x) + len(a) * alpha ** 2, _sq(y_new - y_old), _sq(y_new),
                float((a - mu_all[self.jobs]).sum()))


def fix(p: ClusterProblem, x: np.ndarray) -> np.ndarray:
    """Scale every over-full worker type and every over-time job down: a feasible allocation."""
    x = np.where(p.allowed, np.maximum(x, 0.0), 0.0)
    used = (p.scale[:, None] * x).sum(axis=0)
    x = x * np.where(used > p.gpus, p.gpus / np.maximum(used, 1e-300), 1.0)[None, :]
    busy = x.sum(axis=1)
    return x * np.where(busy > 1, 1 / np.maximum(busy, 1e-300), 1.0)[:, None]


def solve_admm(p: ClusterProblem, rho: float = 1.0, max_iter: int = 2000, eps: float = 1e-3,
               check_every: int = 10, workers: int = 1, seed: int = 0, backend: str = "process") -> Solution:
    """DeDe's ADMM for max-min fairness (module docstring) on ``workers`` processes (or Ray actors);
    ``history`` rows are (iteration, primal, dual, rho, seconds, fairness after the fix pass)."""
    if workers < 1 or rho <= 0:
        raise InputError(f"workers = {workers}, rho = {rho}.", field="workers/rho", fix="workers >= 1, rho > 0.")
    t0 = time.perf_counter()
    J, W = p.throughput.shape
    state = SharedState({"x": J * W, "y": J * W, "lam": J * W, "a": J, "mu": J})
    rng = np.random.default_rng(seed)
    parts = [_Part(p, ty, jb, state) for ty, jb in zip(deal(W, workers, rng), deal(J, workers, rng), strict=True)]
    alpha, history, converged, it = 0.0, [], False, 0
    with state, make_workers(parts, backend) as pool:
        for it in range(1, max_iter + 1):
            pool.call("type_step")
            sums = np.sum(pool.call("job_step", alpha=alpha), axis=0)
            alpha = max(sums[4] / J + 1.0 / (rho * J), 0.0)
            if it % check_every == 0:
                primal = np.sqrt(sums[0] / max(sums[1], 1e-24))
                dual = np.sqrt(sums[2] / max(sums[3], 1e-24))
                x = fix(p, np.array(state["x"]).reshape(J, W))
                history.append((it, float(primal), float(dual), rho, time.perf_counter() - t0, p.fairness(x)))
                if primal < eps and dual < eps:
                    converged = True
                    break
                rho = balance(rho, primal, dual, [state["lam"], state["mu"]])
        x = fix(p, np.array(state["x"]).reshape(J, W))
    return Solution(x, p.fairness(x), time.perf_counter() - t0, it, converged, history)


def solve_highs(p: ClusterProblem) -> Solution:
    """The monolithic LP on HiGHS: variables x (job-major) and alpha."""
    t0 = time.perf_counter()
    J, W = p.throughput.shape
    n = J * W
    jobs, types = np.repeat(np.arange(J), W), np.tile(np.arange(W), J)
    fair = hstack([coo_matrix((-p.throughput.ravel(), (jobs, np.arange(n))), shape=(J, n)),
                   csr_matrix(np.ones((J, 1)))])                             # alpha - T'_j x_j <= 0
    busy = coo_matrix((np.ones(n), (jobs, np.arange(n))), shape=(J, n + 1))
    gpu = coo_matrix((p.scale[jobs], (types, np.arange(n))), shape=(W, n + 1))
    c = np.zeros(n + 1)
    c[-1] = -1.0
    upper = np.append(np.where(p.allowed.ravel(), np.inf, 0.0), np.inf)
    res = linprog(c, A_ub=vstack([fair, busy, gpu]).tocsr(), b_ub=np.concatenate([np.zeros(J), np.ones(J), p.gpus]),
                  bounds=np.column_stack([np.zeros(n + 1), upper]), method="highs")
    if res.x is None:
        raise InputError(f"HiGHS failed: {res.message}", field="problem", fix="check the throughputs.")
    x = res.x[:n].reshape(J, W)
    return Solution(x, p.fairness(x), time.perf_counter() - t0)


def spec_beside(throughputs: Path) -> Path:
    """Where ``syslab dede cluster`` looks for the spec when none is given: cluster_spec.json beside the matrix."""
    return Path(throughputs).with_name("cluster_spec.json")

