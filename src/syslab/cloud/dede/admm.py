"""DeDe's decouple-and-decompose ADMM for separable allocation problems (Xu et al., OSDI'25), in numpy.

Problem (maximise):

    max  sum_ij c_ij x_ij
    s.t. sum_j a_ij x_ij <= b_i        for every resource i  (a row)
         sum_i e_ij x_ij <= d_j        for every demand j    (a column)
         0 <= x_ij <= u_ij

*Decouple*: the resource side owns a copy x of the allocation and the demand side a copy z; ADMM enforces
x = z with scaled dual lam. *Decompose*: with the other copy fixed, each side splits into one independent
subproblem per row (per column):

    x_i = argmin  -c_i x + rho/2 ||x - z_i + lam_i||^2   s.t.  a_i x <= b_i,  0 <= x <= u_i
    z_j = argmin         rho/2 ||z - x_j - lam_j||^2     s.t.  e_j z <= d_j,  0 <= z <= u_j
    lam += x - z

Each is a projection with one linear constraint, solved exactly: by the KKT conditions
x(theta) = clip(z - lam + c / rho - theta a, 0, u) with theta >= 0 the smallest value making a x(theta) <= b
(theta = 0 if that already holds); a x(theta) is non-increasing in theta (a >= 0), so bisection finds it, for
all rows at once (``project_rows``). The objective sits on the resource side.

Stopping and rho: relative primal and dual residuals against an absolute-plus-relative tolerance, checked
every ``check_every`` iterations; residual balancing (mu = 10, tau = 2) rescales rho and the scaled dual.
The output is made feasible by scaling each over-full column of x down (rows stay satisfied, as all
coefficients are non-negative): DeDe's fix pass for this form.

Cost per iteration: O(R D x bisection steps), vectorised; rows (columns) are independent, so they can be
split over worker processes (``workers``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix, vstack

from syslab.core.errors import InputError

BISECTION_STEPS = 60


@dataclass
class SeparableLP:
    c: np.ndarray                 # [R, D] utility per unit
    a: np.ndarray                 # [R, D] resource use per unit (row constraints)
    b: np.ndarray                 # [R] resource capacities
    e: np.ndarray                 # [R, D] demand use per unit (column constraints)
    d: np.ndarray                 # [D] demand limits
    u: np.ndarray | None = None   # [R, D] upper bounds (default: none)

    def __post_init__(self) -> None:
        self.c, self.a, self.e = (np.asarray(m, dtype=np.float64) for m in (self.c, self.a, self.e))
        self.b, self.d = np.asarray(self.b, dtype=np.float64), np.asarray(self.d, dtype=np.float64)
        R, D = self.c.shape
        if self.a.shape != (R, D) or self.e.shape != (R, D) or self.b.shape != (R,) or self.d.shape != (D,):
            raise InputError(f"shapes c {self.c.shape}, a {self.a.shape}, e {self.e.shape}, b {self.b.shape}, "
                             f"d {self.d.shape} do not agree.", field="problem",
                             fix="c, a, e are [resources, demands]; b is [resources]; d is [demands].")
        for name, m in (("a", self.a), ("e", self.e), ("b", self.b), ("d", self.d)):
            if (m < 0).any() or not np.isfinite(m).all():
                raise InputError(f"{name} has a negative or non-finite entry (e.g. a negative capacity).",
                                 field=name, fix="capacities, limits and usage coefficients are finite and >= 0.")
        self.u = np.full((R, D), np.inf) if self.u is None else np.asarray(self.u, dtype=np.float64)
        if self.u.shape != (R, D) or (self.u < 0).any():
            raise InputError("u must be [resources, demands] and >= 0.", field="u", fix="give upper bounds >= 0.")

    def objective(self, x: np.ndarray) -> float:
        return float((self.c * x).sum())

    def violation(self, x: np.ndarray) -> float:
        """Largest relative excess over any row or column limit (0 if feasible)."""
        rows = ((self.a * x).sum(axis=1) - self.b) / np.maximum(self.b, 1e-12)
        cols = ((self.e * x).sum(axis=0) - self.d) / np.maximum(self.d, 1e-12)
        return float(max(rows.max(initial=0.0), cols.max(initial=0.0), 0.0))


def project_groups(v: np.ndarray, step: np.ndarray, coef: np.ndarray, group: np.ndarray, limit: np.ndarray,
                   upper: np.ndarray | float = np.inf) -> np.ndarray:
    """For every group g of entries: x_k = clip(v_k - theta_g step_k, 0, upper_k) with the smallest theta_g >= 0
    making sum_{k in g} coef_k x_k <= limit_g. With step = coef / w this is the exact minimiser of
    sum_k w_k (x_k - v_k)^2 / 2 under the group's constraint and the bounds (KKT); the constrained sum is
    non-increasing in theta (coef, step >= 0), so one bisection per group finds it, all groups at once."""
    n = len(limit)
    x0 = np.clip(v, 0.0, upper)
    over = np.bincount(group, weights=coef * x0, minlength=n) > limit
    if not over.any():
        return x0
    lo, hi = np.zeros(n), np.zeros(n)
    moving = step > 0
    np.maximum.at(hi, group[moving], np.maximum(v[moving], 0.0) / step[moving])   # x(hi) = 0 where step > 0
    hi += 1.0
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        used = np.bincount(group, weights=coef * np.clip(v - mid[group] * step, 0.0, upper), minlength=n)
        big = used > limit
        lo, hi = np.where(big, mid, lo), np.where(big, hi, mid)
    theta = np.where(over, hi, 0.0)
    return np.clip(v - theta[group] * step, 0.0, upper)


def project_rows(v: np.ndarray, a: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
    """For every row r: argmin_x ||x - v_r||^2 s.t. a_r x <= b_r, 0 <= x <= u_r (a_r >= 0), exactly (to
    bisection precision on the multiplier)."""
    rows = np.repeat(np.arange(v.shape[0]), v.shape[1])
    return project_groups(v.ravel(), a.ravel(), a.ravel(), rows, b, u.ravel()).reshape(v.shape)


@dataclass
class Solution:
    """An allocation (after the fix pass for ADMM) and how it was found. ``history`` rows are (iteration,
    primal residual, dual residual, rho[, seconds, objective after the fix pass])."""

    x: np.ndarray
    objective: float
    time_s: float
    iterations: int = 0
    converged: bool = True
    history: list[tuple] = field(default_factory=list)


def balance(rho: float, primal: float, dual: float, duals: list[np.ndarray], mu: float = 10.0,
            tau: float = 2.0) -> float:
    """Residual balancing: rescale rho by tau when one residual is mu times the other, and the scaled duals
    (in place) by the inverse, so the unscaled duals stay put. Returns the new rho."""
    factor = tau if primal > mu * dual else 1 / tau if dual > mu * primal else 1.0
    for lam in duals:
        lam /= factor
    return rho * factor


def solve_admm(lp: SeparableLP, rho: float = 1.0, max_iter: int = 2000, eps: float = 1e-3, check_every: int = 10,
               balance_rho: bool = True) -> Solution:
    """DeDe's ADMM on ``lp`` (see the module docstring); returns a feasible allocation after the fix pass."""
    if rho <= 0:
        raise InputError(f"rho = {rho}.", field="rho", fix="use rho > 0, e.g. 1.0.")
    t0 = time.perf_counter()
    R, D = lp.c.shape
    z = np.zeros((R, D))
    lam = np.zeros((R, D))
    history = []
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        x = project_rows(z - lam + lp.c / rho, lp.a, lp.b, lp.u)
        z_old = z
        z = project_rows((x + lam).T, lp.e.T, lp.d, lp.u.T).T
        lam += x - z
        if it % check_every == 0:
            scale = max(np.linalg.norm(x), np.linalg.norm(z), 1e-12)
            primal = np.linalg.norm(x - z) / scale
            dual = rho * np.linalg.norm(z - z_old) / max(rho * np.linalg.norm(lam), 1e-12)
            history.append((it, float(primal), float(dual), rho))
            if primal < eps and dual < eps:
                converged = True
                break
            if balance_rho:
                rho = balance(rho, primal, dual, [lam])
    x = fix(lp, x)
    return Solution(x, lp.objective(x), time.perf_counter() - t0, it, converged, history)


def fix(lp: SeparableLP, x: np.ndarray) -> np.ndarray:
    """Scale down each column (and then each row) that exceeds its limit: a feasible allocation."""
    x = np.clip(x, 0.0, lp.u)
    for m, lim, axis in ((lp.e, lp.d, 0), (lp.a, lp.b, 1)):
        used = (m * x).sum(axis=axis)
        s = np.where(used > lim, lim / np.maximum(used, 1e-300), 1.0)
        x = x * (s[None, :] if axis == 0 else s[:, None])
    return x


def solve_highs(lp: SeparableLP, time_limit_s: float | None = None) -> Solution:
    """The same problem as one LP on HiGHS (the monolithic baseline)."""
    t0 = time.perf_counter()
    R, D = lp.c.shape
    idx = np.arange(R * D).reshape(R, D)
    rows = coo_matrix((lp.a.ravel(), (np.repeat(np.arange(R), D), idx.ravel())), shape=(R, R * D))
    cols = coo_matrix((lp.e.T.ravel(), (np.repeat(np.arange(D), R), idx.T.ravel())), shape=(D, R * D))
    bounds = np.column_stack([np.zeros(R * D), np.where(np.isfinite(lp.u.ravel()), lp.u.ravel(), np.inf)])
    opts = {"time_limit": time_limit_s} if time_limit_s else {}
    res = linprog(-lp.c.ravel(), A_ub=vstack([rows, cols]).tocsr(), b_ub=np.concatenate([lp.b, lp.d]),
                  bounds=bounds, method="highs", options=opts)
    if res.x is None:
        raise InputError(f"HiGHS found no solution ({res.message}).", field="problem", fix="check the problem.")
    x = res.x.reshape(R, D)
    return Solution(x, lp.objective(x), time.perf_counter() - t0, int(getattr(res, "nit", 0)), res.status == 0)
