"""Subproblems in worker processes: DeDe's "decompose" step, run for real on this machine's cores.

DeDe deals its per-resource and per-demand subproblems round-robin to ``num_cpus`` workers (Ray actors in the
reference implementation) and alternates: all resource subproblems, gather, all demand subproblems. Here the
workers are forked processes (``Workers``), or Ray actors when asked (``RayWorkers``), that share the ADMM
state with the parent through files in /dev/shm mapped by every process (``SharedState``), so nothing but a
method name and a few scalars crosses per step. Each worker keeps its own slice of the problem (its groups
and the index arrays that select their entries), built in the parent; the serial path calls the very same
methods in-process, so one worker and many, processes and actors, compute the same thing.

Keep BLAS out of the steps (no ``@`` on large vectors): a forked child re-creates OpenBLAS's thread pool,
whose spinning threads then steal the cores the other workers need (measured: 1.6x slower steps).

Every process started here is reaped on ``close`` (or when the ``with`` block ends), also on errors and on
SIGTERM (``core.lifecycle``); a worker whose parent dies exits on its own.
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from syslab.core.errors import InputError
from syslab.core.lifecycle import die_with_parent, reset_signals_in_child

BACKENDS = ("process", "ray")


class SharedState(dict):
    """Named float64 arrays of zeros, each a file in /dev/shm mapped shared: forked children inherit the
    mappings, and a pickled copy (a Ray actor's) maps the same files again, so every process sees every
    write. The creator removes the files on ``close`` (mappings already made stay valid)."""

    def __init__(self, sizes: dict[str, int]):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="syslab-dede-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.sizes, self.owner = dict(sizes), True
        for name, n in self.sizes.items():
            with open(os.path.join(self.dir, name), "wb") as f:
                f.truncate(max(8 * n, 8))
            self[name] = _map(os.path.join(self.dir, name), n)

    def __reduce__(self):
        return _attach, (self.dir, self.sizes)

    def close(self) -> None:
        if self.owner:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> SharedState:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _map(path: str, n: int) -> np.ndarray:
    with open(path, "r+b") as f:
        return np.frombuffer(mmap.mmap(f.fileno(), max(8 * n, 8)), dtype=np.float64, count=n)


def _attach(folder: str, sizes: dict[str, int]) -> SharedState:
    state = SharedState.__new__(SharedState)
    dict.__init__(state)
    state.dir, state.sizes, state.owner = folder, dict(sizes), False
    for name, n in sizes.items():
        state[name] = _map(os.path.join(folder, name), n)
    return state


def deal(n_groups: int, workers: int, rng: np.random.Generator) -> list[np.ndarray]:
    """DeDe's assignment: shuffle the groups, then group i goes to worker i mod workers."""
    order = rng.permutation(n_groups)
    return [np.sort(order[w::workers]) for w in range(workers)]


def _serve(conn, part, parent_pid: int, siblings: list) -> None:
    # A worker dies with the parent (even a SIGKILLed one) and holds no other worker's parent-side pipe end: an
    # inherited copy would keep that pipe open after the parent is gone, and its worker would wait forever.
    die_with_parent(parent_pid)
    reset_signals_in_child()
    for c in siblings:
        c.close()
    while True:
        try:
            msg = conn.recv()
        except EOFError:                          # the parent closed its end or died
            return
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
                proc = ctx.Process(target=_serve, args=(child, part, os.getpid(), self.conns), daemon=True)
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


class _Actor:
    def __init__(self, part):
        self.part = part

    def call(self, method: str, kwargs: dict):
        return getattr(self.part, method)(**kwargs)


class RayWorkers:
    """The same interface on Ray actors, one per part (DeDe's reference runs its subproblems this way). Starts
    a local Ray runtime unless one is running, and shuts down what it started on ``close``."""

    def __init__(self, parts: Sequence[Any]):
        try:
            import ray
        except ImportError:
            raise InputError("Ray is not installed.", field="backend",
                             fix="pip install 'syslab[ray]', or use the process backend.") from None
        self.ray, self.started = ray, not ray.is_initialized()
        if self.started:
            ray.init(num_cpus=max(len(parts), 1), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        actor = ray.remote(num_cpus=1)(_Actor)
        self.actors = [actor.remote(p) for p in parts]

    def call(self, method: str, **kwargs) -> list:
        return self.ray.get([a.call.remote(method, kwargs) for a in self.actors])

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
        if self.started:
            self.ray.shutdown()
            self.started = False

    def __enter__(self) -> RayWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_workers(parts: Sequence[Any], backend: str = "process") -> Workers | RayWorkers:
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}.", field="backend", fix=f"use one of {BACKENDS}.")
    return RayWorkers(parts) if backend == "ray" else Workers(parts)
