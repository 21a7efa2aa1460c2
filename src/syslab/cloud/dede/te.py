"""Traffic engineering (maximise total flow) with DeDe's decoupling, on real WAN topologies.

Path formulation: each commodity (s, t) has up to k edge-disjoint shortest paths (found by removing each
path's edges and searching again) and a demand; a path's flow f_p uses every edge on it. Monolithic LP
(``solve_highs``): max sum_p f_p s.t. per edge sum_{p through e} f_p <= capacity, per commodity
sum_p f_p <= demand.

A path crosses several edges, so the edge constraints are not rows of a matrix the way ``admm.py`` needs.
We decouple at the (edge, path) entries: each edge side owns a copy x_k of the flow of every path through it
(entry k), the commodity side owns f_p, and ADMM enforces x_k = f_p(k). The edge step projects each edge's
copies onto its capacity, the commodity step each commodity's path flows onto its demand (with the
objective, and each path weighted by its length, the number of copies it has); both are exact, one
bisection per group, vectorised over all groups. (DeDe's own TE decomposition keeps one consensus value per
(edge, source node), fewer than our (edge, path) entries; same idea.) The fix pass scales the flows on every
over-full edge down to its capacity, each path by its worst edge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix, vstack

from syslab.cloud.dede.admm import project_groups
from syslab.core.errors import InputError, read_json


def load_topology(path: str | Path) -> nx.DiGraph:
    """A directed networkx node-link JSON graph with a positive ``capacity`` on every link."""
    path = Path(path)
    raw = read_json(path, fix="pass a node-link JSON topology (networkx.node_link_data).")
    links = raw.get("links", raw.get("edges")) if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or "nodes" not in raw or links is None:
        raise InputError("not a node-link graph (needs 'nodes' and 'links').", file=path, field="links",
                         fix="write it with networkx.node_link_data(graph).")
    g = nx.DiGraph()
    g.add_nodes_from(n["id"] for n in raw["nodes"])
    for i, lk in enumerate(links):
        cap = lk.get("capacity")
        if not isinstance(cap, int | float) or isinstance(cap, bool) or not np.isfinite(cap) or cap <= 0:
            raise InputError(f"link {i} ({lk.get('source')} -> {lk.get('target')}) has capacity {cap!r}.",
                             file=path, field=f"links[{i}].capacity", fix="give every link a positive capacity.")
        g.add_edge(lk["source"], lk["target"], capacity=float(cap))
    return g


def gravity_demands(g: nx.DiGraph, rng: np.random.Generator, pairs: int | None = None,
                    load: float = 1.0) -> dict[tuple, float]:
    """Gravity-model demands: d_st proportional to w_s w_t with random node weights; the largest ``pairs``
    (all if None); scaled so total demand is ``load`` x the total capacity over the mean hop count."""
    nodes = list(g.nodes)
    w = dict(zip(nodes, rng.exponential(1.0, len(nodes)), strict=True))
    reach = {s: nx.descendants(g, s) for s in nodes}
    d = {(s, t): w[s] * w[t] for s in nodes for t in reach[s] if s != t}
    if pairs is not None:
        d = dict(sorted(d.items(), key=lambda kv: -kv[1])[:pairs])
    hops = np.mean([nx.shortest_path_length(g, s, t) for s, t in list(d)[:200]])
    scale = load * sum(c for *_, c in g.edges(data="capacity")) / hops / sum(d.values())
    return {k: v * scale for k, v in d.items()}


def disjoint_paths(g: nx.DiGraph, s, t, k: int = 4) -> list[list]:
    """Up to k edge-disjoint shortest paths (by hops): find one, remove its edges, repeat."""
    h = g.copy()
    out = []
    for _ in range(k):
        try:
            p = nx.shortest_path(h, s, t)
        except nx.NetworkXNoPath:
            break
        out.append(p)
        h.remove_edges_from(zip(p, p[1:], strict=False))
    return out


@dataclass
class TEProblem:
    capacity: np.ndarray              # [edges]
    demand: np.ndarray                # [commodities]
    path_commodity: np.ndarray        # [paths] -> commodity
    entry_edge: np.ndarray            # [entries] -> edge
    entry_path: np.ndarray            # [entries] -> path
    edges: list = field(default_factory=list)
    commodities: list = field(default_factory=list)

    @property
    def path_length(self) -> np.ndarray:
        return np.bincount(self.entry_path, minlength=len(self.path_commodity)).astype(np.float64)

    def edge_load(self, f: np.ndarray) -> np.ndarray:
        return np.bincount(self.entry_edge, weights=f[self.entry_path], minlength=len(self.capacity))

    def violation(self, f: np.ndarray) -> float:
        e = (self.edge_load(f) - self.capacity) / self.capacity
        c = (np.bincount(self.path_commodity, weights=f, minlength=len(self.demand)) - self.demand) / self.demand
        return float(max(e.max(), c.max(), 0.0, (-f).max()))


def build(g: nx.DiGraph, demands: dict[tuple, float], k: int = 4) -> TEProblem:
    edges = list(g.edges)
    eid = {e: i for i, e in enumerate(edges)}
    pc, ee, ep = [], [], []
    comms = []
    for (s, t), _ in demands.items():
        paths = disjoint_paths(g, s, t, k)
        if not paths:
            continue
        c = len(comms)
        comms.append((s, t))
        for p in paths:
            pid = len(pc)
            pc.append(c)
            for e in zip(p, p[1:], strict=False):
                ee.append(eid[e])
                ep.append(pid)
    return TEProblem(np.array([g.edges[e]["capacity"] for e in edges]), np.array([demands[c] for c in comms]),
                     np.array(pc), np.array(ee), np.array(ep), edges, comms)


@dataclass
class TEResult:
    flow: np.ndarray
    objective: float
    time_s: float
    iterations: int = 0
    converged: bool = True
    history: list = field(default_factory=list)


def fix(p: TEProblem, f: np.ndarray) -> np.ndarray:
    """Scale each path down by its most over-full edge; then each commodity to its demand."""
    f = np.maximum(f, 0.0)
    load = p.edge_load(f)
    factor = np.where(load > p.capacity, p.capacity / np.maximum(load, 1e-300), 1.0)
    worst = np.ones(len(f))
    np.minimum.at(worst, p.entry_path, factor[p.entry_edge])
    f = f * worst
    tot = np.bincount(p.path_commodity, weights=f, minlength=len(p.demand))
    s = np.where(tot > p.demand, p.demand / np.maximum(tot, 1e-300), 1.0)
    return f * s[p.path_commodity]


def solve_admm(p: TEProblem, rho: float | None = None, max_iter: int = 3000, eps: float = 1e-3,
               check_every: int = 10) -> TEResult:
    """DeDe-style ADMM (see the module docstring). ``rho`` defaults to 1 / mean demand (flows are in the
    demand's units, so the penalty is scale-free)."""
    t0 = time.perf_counter()
    rho = float(rho if rho is not None else 1.0 / max(p.demand.mean(), 1e-12))
    length = p.path_length
    f = np.zeros(len(p.path_commodity))
    lam = np.zeros(len(p.entry_edge))
    ones = np.ones(len(p.entry_edge))
    history = []
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        x = project_groups(f[p.entry_path] - lam, ones, ones, p.entry_edge, p.capacity)
        f_old = f
        target = np.bincount(p.entry_path, weights=x + lam, minlength=len(f)) / length + 1.0 / (rho * length)
        f = project_groups(target, 1.0 / length, np.ones(len(f)), p.path_commodity, p.demand)
        lam += x - f[p.entry_path]
        if it % check_every == 0:
            scale = max(np.linalg.norm(x), 1e-12)
            primal = np.linalg.norm(x - f[p.entry_path]) / scale
            dual = np.linalg.norm(f - f_old) / max(np.linalg.norm(f), 1e-12)
            history.append((it, float(primal), float(dual), rho))
            if primal < eps and dual < eps:
                converged = True
                break
            if primal > 10 * dual:
                rho, lam = rho * 2.0, lam / 2.0
            elif dual > 10 * primal:
                rho, lam = rho / 2.0, lam * 2.0
    f = fix(p, f)
    return TEResult(f, float(f.sum()), time.perf_counter() - t0, it, converged, history)


def solve_highs(p: TEProblem) -> TEResult:
    t0 = time.perf_counter()
    n = len(p.path_commodity)
    A_e = coo_matrix((np.ones(len(p.entry_edge)), (p.entry_edge, p.entry_path)), shape=(len(p.capacity), n))
    A_c = coo_matrix((np.ones(n), (p.path_commodity, np.arange(n))), shape=(len(p.demand), n))
    res = linprog(-np.ones(n), A_ub=vstack([A_e, A_c]).tocsr(), b_ub=np.concatenate([p.capacity, p.demand]),
                  bounds=(0, None), method="highs")
    if res.x is None:
        raise InputError(f"HiGHS failed: {res.message}", field="problem", fix="check the topology and demands.")
    return TEResult(res.x, float(res.x.sum()), time.perf_counter() - t0)
