"""PageRank as a burst job, and the single-process numpy reference it must agree with.

Graph: seeded power law, ``edges`` edges over ``nodes`` nodes; destinations drawn with probability
proportional to 1 / rank^0.9 over a random node order (a few hubs, a long tail), sources likewise with
exponent 0.5. Partitioned by contiguous ranges of edges sorted by source, one per worker.

Iteration (damping d, dangling mass spread evenly):

    r' = (1 - d) / N + d * (sum over edges u->v of r_u / outdeg_u  +  sum of dangling r / N)

In the burst: worker 0 broadcasts [error, r]; each worker sums its partition's contributions; a tree reduce
brings the sums to worker 0, which updates r and the L2 change. Stops after ``iterations`` updates or when
the change falls under ``tol``; the reference does exactly the same arithmetic in one process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from syslab.cloud.burst.comm import Communicator
from syslab.core.errors import InputError

DAMPING = 0.85


def power_law_graph(nodes: int, edges: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if nodes < 2 or edges < 1:
        raise InputError(f"{nodes} nodes, {edges} edges.", field="graph", fix="at least 2 nodes and 1 edge.")
    ranks = np.arange(1, nodes + 1, dtype=np.float64)
    p_dst, p_src = ranks ** -0.9, ranks ** -0.5
    dst = rng.permutation(nodes)[rng.choice(nodes, edges, p=p_dst / p_dst.sum())]
    src = rng.permutation(nodes)[rng.choice(nodes, edges, p=p_src / p_src.sum())]
    order = np.argsort(src, kind="stable")
    return src[order].astype(np.int64), dst[order].astype(np.int64)


def load_edges(path: str | Path, max_nodes: int = 10_000_000) -> tuple[np.ndarray, np.ndarray, int]:
    """A whitespace-separated edge list, one ``source target`` pair of non-negative integer node ids per line
    (``#`` comments allowed); returns (src, dst) sorted by source and the node count (max id + 1). Ids index the
    rank vector, which every worker of the burst holds a copy of: ids below ``max_nodes`` (80 MB a copy)."""
    from syslab.core.inputs import read_edge_list

    src, dst, nodes = read_edge_list(path, max_nodes=max_nodes,
                                     fix="one 'source target' pair of integer node ids per line.")
    order = np.argsort(src, kind="stable")
    return src[order], dst[order], nodes


def partition(edges: int, workers: int) -> np.ndarray:
    """Edge offsets: worker w owns edges [off[w], off[w + 1])."""
    return np.linspace(0, edges, workers + 1).round().astype(np.int64)


def step(r: np.ndarray, contributions: np.ndarray, dangling: np.ndarray) -> np.ndarray:
    n = len(r)
    return (1 - DAMPING) / n + DAMPING * (contributions + r[dangling].sum() / n)


def contributions(r: np.ndarray, src: np.ndarray, dst: np.ndarray, inv_outdeg: np.ndarray) -> np.ndarray:
    return np.bincount(dst, weights=r[src] * inv_outdeg[src], minlength=len(r))


def reference(src: np.ndarray, dst: np.ndarray, nodes: int, iterations: int, tol: float = 0.0,
              workers: int = 1) -> np.ndarray:
    """The same computation in one process; with ``workers`` the partial sums are added in the burst's tree
    order (so the two agree to rounding of the same additions)."""
    outdeg = np.bincount(src, minlength=nodes)
    inv = np.where(outdeg > 0, 1.0 / np.maximum(outdeg, 1), 0.0)
    dangling = np.flatnonzero(outdeg == 0)
    off = partition(len(src), workers)
    r, err = np.full(nodes, 1.0 / nodes), np.inf
    for _ in range(iterations):
        if err < tol:
            break
        parts = [contributions(r, src[a:b], dst[a:b], inv) for a, b in zip(off, off[1:], strict=False)]
        step_ = 1
        while step_ < workers:
            for w in range(0, workers, 2 * step_):
                parts[w] = parts[w] + parts[w + step_]
            step_ *= 2
        r_new = step(r, parts[0], dangling)
        err, r = float(np.linalg.norm(r_new - r)), r_new
    return r


def worker(comm: Communicator, src: np.ndarray, dst: np.ndarray, inv_outdeg: np.ndarray, dangling: np.ndarray,
           nodes: int, iterations: int, tol: float) -> np.ndarray | None:
    """One burst worker's program; worker 0 returns the ranks."""
    r, err = (np.full(nodes, 1.0 / nodes), np.inf) if comm.rank == 0 else (None, None)
    for _ in range(iterations):
        msg = comm.broadcast(np.concatenate([[err], r]) if comm.rank == 0 else None)
        if msg[0] < tol:
            break
        r = msg[1:]
        total = comm.reduce(contributions(r, src, dst, inv_outdeg))
        if comm.rank == 0:
            r_new = step(r, total, dangling)
            err, r = float(np.linalg.norm(r_new - r)), r_new
    return r if comm.rank == 0 else None
