"""CrossPipe's optimal schedule (§4.1) as a mixed-integer program, solved by HiGHS (``scipy.optimize.milp``).

Variables: a start time t_o for every compute item and every message that occupies a link, the makespan C,
and a binary x_ab for every pair of ops that share a device (or a directed link) and whose order is not
already forced by the dependencies: x_ab = 1 iff a runs before b.

    t_c >= t_p + d_p (+ alpha if the message crosses a link)       dependencies (a message op q in between:
                                                                  t_q >= t_p + d_p, t_c >= t_q + d_q + alpha)
    t_a + d_a <= t_b + M (1 - x_ab),  t_b + d_b <= t_a + M x_ab     one op at a time per device and link
    t_{k,v,j} + d <= t_{k,v,j+1}                                   micro-batches keep their order per (kind, v)
    sum_{F p on d} a_p [p before q] + a_q
        - sum_{W r on d} a_r [r before q] <= limit                  memory, at the start of every forward q
    C >= t_o + d_o,  minimise C

"p before q" is x_pq or a constant when the order is forced (the paper's completed-before indicator u_pq,
derived from the ordering variables): on one device a W that precedes a forward has ended before it starts,
so the memory row counts exactly what is held. M is the length of running every op back to back plus every
latency, a bound on any schedule that matters, so the program is not told the greedy's answer.

Size: pairs per device grow as (3 m V/p)^2, so keep it to 4 stages x 4-8 micro-batches and always pass a
time limit; the result reports HiGHS's gap instead of claiming optimality it did not prove.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from syslab.core.errors import InputError
from syslab.core.timeline import Schedule
from syslab.training import pipeline as P


@dataclass
class MilpResult:
    makespan: float | None          # best schedule found (None: none within the time limit)
    lower_bound: float | None       # HiGHS's proven bound
    optimal: bool
    solve_s: float
    binaries: int
    schedule: Schedule | None       # the found orders replayed by the simulator

    @property
    def gap(self) -> float | None:
        if self.makespan is None or self.lower_bound is None:
            return None
        return max(0.0, self.makespan - self.lower_bound) / self.makespan


def solve(st: P.Stages, memory_limit: float, time_limit_s: float = 10.0) -> MilpResult:
    """The shortest iteration of ``st`` whose devices never hold more than ``memory_limit`` activations."""
    if st.weight_pieces != 1:
        raise InputError("the MILP schedules whole W blocks.", field="weight_pieces", fix="use weight_pieces=1.")
    V, m = st.virtual_stages, st.microbatches
    kinds = "FBW" if st.split_backward else "FB"
    items = [(k, v, j) for v in range(V) for j in range(m) for k in kinds]
    ops: list[tuple] = list(items)                              # compute items, then messages ("M", item)
    dur = [st.duration(i) for i in items]
    res = [f"stage{st.placement[i[1]]}" for i in items]
    edges: list[tuple[int, int, float]] = []                    # (pred, succ, extra lag)
    index = {it: n for n, it in enumerate(items)}
    latency_total = 0.0
    for it in items:
        k, v, j = it
        if k == "F":
            pred = ("F", v - 1, j) if v > 0 else None
        elif k == "B":
            pred = ("B", v + 1, j) if v < V - 1 else ("F", v, j)
        else:
            pred = ("B", v, j)
        if pred is None:
            continue
        a, b = st.placement[pred[1]], st.placement[v]
        if a == b:
            edges.append((index[pred], index[it], 0.0))
            continue
        link = st.link(a, b)
        serial = link.s_per_byte * st.message_bytes
        latency_total += link.latency_s
        if serial > 0:
            ops.append(("M", it))
            dur.append(serial)
            res.append(f"link{a}>{b}")
            q = len(ops) - 1
            edges += [(index[pred], q, 0.0), (q, index[it], link.latency_s)]
        else:
            edges.append((index[pred], index[it], link.latency_s))
    n = len(ops)
    for kind in kinds:                                          # micro-batch order per (kind, virtual stage)
        for v in range(V):
            for j in range(m - 1):
                edges.append((index[(kind, v, j)], index[(kind, v, j + 1)], 0.0))
    big_m = float(sum(dur) + latency_total)
    reach = _reachability(n, edges)

    by_res: dict[str, list[int]] = {}
    for o, r in enumerate(res):
        by_res.setdefault(r, []).append(o)
    pairs = [(a, b) for group in by_res.values() for x, a in enumerate(group) for b in group[x + 1:]
             if not reach[a, b] and not reach[b, a]]
    xid = {pair: n + 1 + k for k, pair in enumerate(pairs)}     # variables: t (n), C, x (pairs)
    nvar = n + 1 + len(pairs)
    C = n
    rows, cols, vals, lo, hi = [], [], [], [], []

    def add(coefs: dict[int, float], lower: float, upper: float) -> None:
        r = len(lo)
        for c, val in coefs.items():
            rows.append(r)
            cols.append(c)
            vals.append(val)
        lo.append(lower)
        hi.append(upper)

    for p, s, lag in edges:                                     # t_s - t_p >= d_p + lag
        add({s: 1.0, p: -1.0}, dur[p] + lag, np.inf)
    for (a, b), x in xid.items():
        add({a: 1.0, b: -1.0, x: big_m}, -np.inf, big_m - dur[a])          # a before b when x = 1
        add({b: 1.0, a: -1.0, x: -big_m}, -np.inf, -dur[b])                # b before a when x = 0
    for o in range(len(items)):
        add({o: 1.0, C: -1.0}, -np.inf, -dur[o])

    def before(a: int, b: int) -> tuple[float, dict[int, float]]:
        """[a runs before b] as constant + linear terms."""
        if reach[a, b]:
            return 1.0, {}
        if reach[b, a]:
            return 0.0, {}
        if (a, b) in xid:
            return 0.0, {xid[(a, b)]: 1.0}
        return 1.0, {xid[(b, a)]: -1.0}

    free_kind = "W" if st.split_backward else "B"
    for device in range(st.devices):
        on = [o for o in range(len(items)) if st.placement[items[o][1]] == device]
        forwards = [o for o in on if items[o][0] == "F"]
        frees = [o for o in on if items[o][0] == free_kind]
        for q in forwards:
            const, coefs = float(st.activation[items[q][1], items[q][2]]), {}
            for p_, sign in [(p_, 1.0) for p_ in forwards if p_ != q] + [(r, -1.0) for r in frees]:
                size = sign * float(st.activation[items[p_][1], items[p_][2]])
                c0, lin = before(p_, q)
                const += size * c0
                for var, coef in lin.items():
                    coefs[var] = coefs.get(var, 0.0) + size * coef
            if coefs:
                add(coefs, -np.inf, memory_limit - const)
            elif const > memory_limit + 1e-9:
                raise InputError(f"device {device} cannot fit its forced forwards in {memory_limit}.",
                                 field="memory_limit", fix="raise the memory limit.")
    A = coo_matrix((vals, (rows, cols)), shape=(len(lo), nvar)).tocsr()
    integrality = np.zeros(nvar)
    integrality[n + 1:] = 1
    lb = np.zeros(nvar)
    ub = np.concatenate([np.full(n + 1, big_m), np.ones(len(pairs))])
    cost = np.zeros(nvar)
    cost[C] = 1.0
    t0 = time.perf_counter()
    out = milp(cost, constraints=LinearConstraint(A, lo, hi), integrality=integrality, bounds=Bounds(lb, ub),
               options={"time_limit": time_limit_s, "disp": False})
    solve_s = time.perf_counter() - t0
    bound = getattr(out, "mip_dual_bound", None)
    if out.x is None:
        return MilpResult(None, bound, False, solve_s, len(pairs), None)
    t = out.x[:len(items)]
    orders: dict[int, list[P.Item]] = {}
    for o in sorted(range(len(items)), key=lambda o: (t[o], "FBW".index(items[o][0]))):
        orders.setdefault(st.placement[items[o][1]], []).append(items[o])
    replay = P.simulate(st, orders)
    return MilpResult(float(out.x[C]), None if bound is None else float(bound), out.status == 0, solve_s,
                      len(pairs), replay)


def _reachability(n: int, edges: list[tuple[int, int, float]]) -> np.ndarray:
    """reach[a, b]: b depends (transitively) on a."""
    succ: list[list[int]] = [[] for _ in range(n)]
    for p, s, _ in edges:
        succ[p].append(s)
    reach = np.zeros((n, n), dtype=bool)
    for start in range(n):
        stack = list(succ[start])
        while stack:
            x = stack.pop()
            if not reach[start, x]:
                reach[start, x] = True
                stack.extend(succ[x])
    return reach
