"""Subproblems in worker processes: DeDe's "decompose" step, run for real on this machine's cores.

DeDe deals its per-resource and per-demand subproblems round-robin to ``num_cpus`` workers (Ray actors in the
reference implementation) and alternates: all resource subproblems, gather, all demand subproblems. Here the
workers are forked processes that share the ADMM state with the parent through anonymous shared memory
(``shared_zeros``), so nothing but a method name and a few scalars crosses the pipe per step. Each worker keeps
its own slice of the problem (its groups and the index arrays that select their entries), built before the
fork; the serial path calls the very same methods in-process, so one worker and many compute the same thing.

Keep BLAS out of the steps (no ``@`` on large vectors): a forked child re-creates OpenBLAS's thread pool,
whose spinning threads then steal the cores the other workers need (measured: 1.6x slower steps).

Every process started here is reaped on ``close`` (or when the ``with`` block ends), also on errors.
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
from collections.abc import Sequence
from typing import Any

import numpy as np


def shared_zeros(n: int) -> np.ndarray:
    """A float64 array of n zeros in anonymous shared memory: forked children see the parent's writes."""
    buf = mmap.mmap(-1, max(8 * n, 8), flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    return np.frombuffer(buf, dtype=np.float64, count=n)


def deal(n_groups: int, workers: int, rng: np.random.Generator) -> list[np.ndarray]:
    """DeDe's assignment: shuffle the groups, then group i goes to worker i mod workers."""
    order = rng.permutation(n_groups)
    return [np.sort(order[w::workers]) for w in range(workers)]


def _serve(conn, part) -> None:
    while True:
        msg = conn.recv()
        if msg is None:
            return
        method, kwargs = msg
        try:
            conn.send(("ok", getattr(part, method)(**kwargs)))
        except Exception as exc:                 # report, keep serving; the parent raises
            conn.send(("error", repr(exc)))


class Workers:
    """Run ``part.method(**kwargs)`` on every part at once, one forked process per part (or in-process when
    there is one part). Parts must write their results into shared arrays; return values should be small."""

    def __init__(self, parts: Sequence[Any]):
        self.parts = list(parts)
        self.procs: list = []
        self.conns: list = []
        if len(self.parts) > 1:
            ctx = mp.get_context("fork")
            for part in self.parts:
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child, part), daemon=True)
                proc.start()
                child.close()
                self.procs.append(proc)
                self.conns.append(parent)

    def call(self, method: str, **kwargs) -> list:
        if not self.procs:
            return [getattr(p, method)(**kwargs) for p in self.parts]
        for c in self.conns:
            c.send((method, kwargs))
        replies = [c.recv() for c in self.conns]
        errors = [r for status, r in replies if status == "error"]
        if errors:
            raise RuntimeError(f"a worker failed in {method}: {errors[0]}")
        return [r for _, r in replies]

    def close(self) -> None:
        for c in self.conns:
            try:
                c.send(None)
            except (BrokenPipeError, OSError):
                pass
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        for c in self.conns:
            c.close()
        self.procs, self.conns = [], []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
