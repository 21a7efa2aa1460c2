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
    import torch
    import torch.distributed as dist

    from syslab.core.lifecycle import die_with_parent

    die_with_parent()   # a rank whose launcher is gone must not wait forever in a collective
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)
