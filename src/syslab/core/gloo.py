"""Helpers for the REAL multi-process demos that run ``torch.distributed`` over gloo on this machine."""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    """A TCP port on localhost that is free right now (for MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_local(rank: int, world: int, port: int, threads: int = 1) -> None:
    """Join a gloo process group on localhost with ``threads`` intra-op threads per process."""
    import multiprocessing

    import torch
    import torch.distributed as dist

    from syslab.core.lifecycle import die_with_parent

    # A rank whose launcher is gone must not wait forever in a collective: die with it, and exit now if it died
    # while this rank was still importing torch.
    launcher = multiprocessing.parent_process()
    die_with_parent(launcher.pid if launcher is not None else None)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
