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

from syslab.cloud.dede.admm import Solution, balance, project_groups
from syslab.cloud.dede.parallel import SharedState, deal, make_workers
from syslab.core.errors import InputError
from syslab.core.inputs import read_json


def load_topology(path: str | Path) -> nx.DiGraph:
    """A directed networkx node-link JSON graph with a positive ``capacity`` on every link."""
    # WAN topologies: Kdl, the paper's largest, has 754 nodes. Capacities are finite and far above any link's
    # Gbit/s, so the LPs stay well scaled.
    max_nodes, max_links, max_capacity = 10_000, 1_000_000, 1e12
    path = Path(path)
    raw = read_json(path, fix="pass a node-link JSON topology (networkx.node_link_data).")
    links = raw.get("links", raw.get("edges")) if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), list) or not isinstance(links, list):
        raise InputError("not a node-link graph (needs 'nodes' and 'links').", file=path, field="links",
                         fix="write it with networkx.node_link_data(graph).")
    if len(raw["nodes"]) > max_nodes or len(links) > max_links:
        raise InputError(f"{len(raw['nodes']):,} nodes and {len(links):,} links, over the limit of {max_nodes:,} "
                         f"nodes and {max_links:,} links.", file=path, field="nodes", fix="pass a smaller topology.")

    def node_id(x) -> bool:
        return isinstance(x, str | int | float) and not isinstance(x, bool)

    g = nx.DiGraph()
    for i, n in enumerate(raw["nodes"]):
        if not isinstance(n, dict) or not node_id(n.get("id")):
            raise InputError(f"node {i} is {str(n)[:60]}.", file=path, field=f"nodes[{i}].id",
                             fix='give every node an id: {"id": 0} or {"id": "name"}.')
        g.add_node(n["id"])
    for i, lk in enumerate(links):
        if not isinstance(lk, dict) or not (node_id(lk.get("source")) and node_id(lk.get("target"))):
            raise InputError(f"link {i} is {str(lk)[:60]}.", file=path, field=f"links[{i}]",
                             fix="give every link a source and a target node id and a capacity.")
        cap = lk.get("capacity")
        if not isinstance(cap, int | float) or isinstance(cap, bool) or not 0 < cap <= max_capacity:
            raise InputError(f"link {i} ({lk.get('source')} -> {lk.get('target')}) has capacity {cap!r}.",
                             file=path, field=f"links[{i}].capacity",
                             fix=f"give every link a positive capacity (at most {max_capacity:g}).")
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


def load_demands(path: str | Path, g: nx.DiGraph) -> dict[tuple, float]:
    """Demands from JSON: a list of {"source", "target", "demand"} (or {"demands": [...]}), on nodes of ``g``."""
    # each pair's k disjoint paths cost a graph copy and k searches (~2 ms on Kdl): at most 100,000 pairs;
    # demands are finite and far above any link's capacity in Gbit/s
    max_pairs, max_demand = 100_000, 1e12
    path = Path(path)
    raw = read_json(path, fix='pass [{"source": s, "target": t, "demand": d}, ...].')
    rows = raw.get("demands") if isinstance(raw, dict) else raw
    if not isinstance(rows, list) or not rows:
        raise InputError("no demands (expected a non-empty list).", file=path, field="demands",
                         fix='pass [{"source": s, "target": t, "demand": d}, ...].')
    if len(rows) > max_pairs:
        raise InputError(f"{len(rows):,} demands, over the limit of {max_pairs:,}.", file=path, field="demands",
                         fix="pass the largest demands only.")
    by_name = {str(n): n for n in g.nodes}
    out: dict[tuple, float] = {}
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not {"source", "target", "demand"} <= r.keys():
            raise InputError(f"entry {i} is {str(r)[:60]}.", file=path, field=f"demands[{i}]",
                             fix="each entry needs source, target and demand.")
        s, t = (r[k] if isinstance(r[k], str | int | float) and not isinstance(r[k], bool) and r[k] in g
                else by_name.get(str(r[k])) for k in ("source", "target"))
        if s is None or t is None or s == t:
            raise InputError(f"entry {i}: {str(r['source'])[:30]} -> {str(r['target'])[:30]} is not a pair of "
                             "distinct nodes of the topology.", file=path, field=f"demands[{i}].source/target",
                             fix="use node ids from the topology file.")
        d = r["demand"]
        if not isinstance(d, int | float) or isinstance(d, bool) or not 0 <= d <= max_demand:
            raise InputError(f"entry {i} has demand {d!r}.", file=path, field=f"demands[{i}].demand",
                             fix=f"demands are finite, >= 0 and at most {max_demand:g}.")
        out[(s, t)] = out.get((s, t), 0.0) + float(d)
    return out


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
    for (s, t), d in demands.items():
        paths = disjoint_paths(g, s, t, k) if d > 0 else []
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


def _sq(v: np.ndarray) -> float:
    return float(np.square(v).sum())


class _Part:
    """One worker's share: some edges (their entries' copies x) and some commodities (their paths' flows f and
    the duals of those paths' entries). All arrays it writes are shared; the index arrays are its own."""

    def __init__(self, p: TEProblem, edges: np.ndarray, comms: np.ndarray, state: dict[str, np.ndarray]):
        self.s = state
        in_edges = np.zeros(len(p.capacity), bool)
        in_edges[edges] = True
        self.k = np.flatnonzero(in_edges[p.entry_edge])                       # my edges' entries
        self.k_group = np.searchsorted(edges, p.entry_edge[self.k])
        self.k_path = p.entry_path[self.k]
        self.capacity = p.capacity[edges]
        self.ones_k = np.ones(len(self.k))
        in_comms = np.zeros(len(p.demand), bool)
        in_comms[comms] = True
        self.paths = np.flatnonzero(in_comms[p.path_commodity])                # my commodities' paths
        self.path_group = np.searchsorted(comms, p.path_commodity[self.paths])
        self.demand = p.demand[comms]
        on_my_path = np.zeros(len(p.path_commodity), bool)
        on_my_path[self.paths] = True
        self.j = np.flatnonzero(on_my_path[p.entry_path])                       # my paths' entries
        self.j_path = np.searchsorted(self.paths, p.entry_path[self.j])
        self.length = p.path_length[self.paths]
        self.ones_p = np.ones(len(self.paths))

    def edge_step(self) -> None:
        """x_k = argmin ||x - (f_p(k) - lam_k)||^2 over each edge's capacity (exact, one bisection per edge)."""
        s = self.s
        s["x"][self.k] = project_groups(s["f"][self.k_path] - s["lam"][self.k], self.ones_k, self.ones_k,
                                        self.k_group, self.capacity)

    def commodity_step(self, rho: float) -> tuple[float, float, float, float]:
        """f_p = argmax sum f - rho/2 sum_k (f_p - x_k - lam_k)^2 within each demand, then lam += x - f.
        Returns the squared norms the residuals need: |x - f|^2, |x|^2, |f - f_old|^2, |f|^2."""
        s = self.s
        x, lam = s["x"][self.j], s["lam"][self.j]
        target = (np.bincount(self.j_path, weights=x + lam, minlength=len(self.paths)) + 1.0 / rho) / self.length
        f_old = s["f"][self.paths]
        f = project_groups(target, 1.0 / self.length, self.ones_p, self.path_group, self.demand)
        s["f"][self.paths] = f
        gap = x - f[self.j_path]
        s["lam"][self.j] = lam + gap
        # plain sums, not BLAS dots: OpenBLAS threads would spin on the cores the other workers need
        return _sq(gap), _sq(x), _sq(f - f_old), _sq(f)


def solve_admm(p: TEProblem, rho: float | None = None, max_iter: int = 3000, eps: float = 1e-3,
               check_every: int = 10, workers: int = 1, seed: int = 0, backend: str = "process") -> Solution:
    """DeDe-style ADMM (see the module docstring) with the edge and commodity subproblems dealt to
    ``workers`` processes (``backend="ray"``: Ray actors). ``rho`` defaults to 1 / mean demand (flows are in
    the demand's units, so the penalty is scale-free). ``history`` rows: (iteration, primal, dual, rho,
    seconds, objective after fix).

    Cost: O(entries x bisection steps) per iteration, split over the workers; iterations grow slowly with
    size (110 on UsCarrier with 5,000 pairs, 190 on Kdl with 20,000 at eps = 1e-3)."""
    if workers < 1:
        raise InputError(f"workers = {workers}.", field="workers", fix="use 1 or more worker processes.")
    t0 = time.perf_counter()
    rho = float(rho if rho is not None else 1.0 / max(p.demand.mean(), 1e-12))
    state = SharedState({"f": len(p.path_commodity), "x": len(p.entry_edge), "lam": len(p.entry_edge)})
    rng = np.random.default_rng(seed)
    parts = [_Part(p, e, c, state) for e, c in zip(deal(len(p.capacity), workers, rng),
                                                     deal(len(p.demand), workers, rng), strict=True)]
    history = []
    converged = False
    it = 0
    with state, make_workers(parts, backend) as pool:
        for it in range(1, max_iter + 1):
            pool.call("edge_step")
            sums = np.sum(pool.call("commodity_step", rho=rho), axis=0)
            if it % check_every == 0:
                primal = np.sqrt(sums[0] / max(sums[1], 1e-24))
                dual = np.sqrt(sums[2] / max(sums[3], 1e-24))
                f = np.array(state["f"])
                history.append((it, float(primal), float(dual), rho, time.perf_counter() - t0,
                                float(fix(p, f).sum())))
                if primal < eps and dual < eps:
                    converged = True
                    break
                rho = balance(rho, primal, dual, [state["lam"]])
        f = fix(p, np.array(state["f"]))
    return Solution(f, float(f.sum()), time.perf_counter() - t0, it, converged, history)


def solve_highs(p: TEProblem) -> Solution:
    t0 = time.perf_counter()
    n = len(p.path_commodity)
    A_e = coo_matrix((np.ones(len(p.entry_edge)), (p.entry_edge, p.entry_path)), shape=(len(p.capacity), n))
    A_c = coo_matrix((np.ones(n), (p.path_commodity, np.arange(n))), shape=(len(p.demand), n))
    res = linprog(-np.ones(n), A_ub=vstack([A_e, A_c]).tocsr(), b_ub=np.concatenate([p.capacity, p.demand]),
                  bounds=(0, None), method="highs")
    if res.x is None:
        raise InputError(f"HiGHS failed: {res.message}", field="problem", fix="check the topology and demands.")
    return Solution(res.x, float(res.x.sum()), time.perf_counter() - t0)


def restrict(p: TEProblem, comms: np.ndarray, capacity_share: float = 1.0) -> TEProblem:
    """The sub-problem of some commodities, with ``capacity_share`` of every edge's capacity."""
    keep = np.zeros(len(p.demand), bool)
    keep[comms] = True
    paths = np.flatnonzero(keep[p.path_commodity])
    new_path = np.full(len(p.path_commodity), -1)
    new_path[paths] = np.arange(len(paths))
    new_comm = np.full(len(p.demand), -1)
    new_comm[np.flatnonzero(keep)] = np.arange(keep.sum())
    entries = np.flatnonzero(keep[p.path_commodity[p.entry_path]])
    return TEProblem(p.capacity * capacity_share, p.demand[keep], new_comm[p.path_commodity[paths]],
                     p.entry_edge[entries], new_path[p.entry_path[entries]], p.edges,
                     [c for c, k in zip(p.commodities, keep, strict=False) if k])


def solve_pop(p: TEProblem, k: int, seed: int = 0) -> Solution:
    """POP (Narayanan et al., SOSP'21), the partitioning baseline: commodities split at random into k
    sub-problems, each given 1/k of every edge's capacity and solved by HiGHS."""
    t0 = time.perf_counter()
    groups = np.array_split(np.random.default_rng(seed).permutation(len(p.demand)), k)
    flow = np.zeros(len(p.path_commodity))
    for g in groups:
        sub = restrict(p, np.sort(g), 1.0 / k)
        keep = np.zeros(len(p.demand), bool)
        keep[g] = True
        flow[np.flatnonzero(keep[p.path_commodity])] = solve_highs(sub).x
    return Solution(flow, float(flow.sum()), time.perf_counter() - t0)
