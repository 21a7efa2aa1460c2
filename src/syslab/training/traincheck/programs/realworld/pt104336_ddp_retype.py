"""pytorch-104336 (github.com/pytorch/pytorch/issues/104336): moving a DDP-wrapped model to the CPU and back
(``ddp_model.cpu(); ddp_model.cuda(rank)``) replaces the parameters' data, which drops the gradient
accumulators DDP hooked at construction; from then on gradients are no longer all-reduced and each rank
trains its own model. No error is raised (the issue: "bad user behavior, no fix").

On CPU only, the same loss happens when the parameters change *dtype* and back (autograd resets a parameter's
gradient accumulator when ``.data`` changes type or device): at iteration ``--at`` the loop "offloads" the
model to float64 and restores float32. Clean: the artifact's fix 1, re-wrapping the model in DDP after the move.
``--bug``: no re-wrap.

    python pt104336_ddp_retype.py [--seed S] [--steps N] [--bug] [--at T]

Two gloo processes on CPU.
"""

import argparse
import gc
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, a: argparse.Namespace, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(a.seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05)
    rule = torch.randn(16, 4, generator=torch.Generator().manual_seed(1234))
    for i in range(a.steps):
        if i == a.at:                                       # offload and restore (CPU and back, in the issue)
            ddp.to(torch.float64)
            ddp.to(torch.float32)
            if not a.bug:
                ddp = nn.parallel.DistributedDataParallel(model)      # the fix: wrap again
        gen = torch.Generator().manual_seed(a.seed * 1000 + i * world + rank)
        x = torch.randn(16, 16, generator=gen)
        optimizer.zero_grad()
        loss = F.cross_entropy(ddp(x), (x @ rule).argmax(dim=1))
        loss.backward()
        optimizer.step()
        if rank == 0:
            print(f"iteration {i} loss {loss.item():.4f}", flush=True)
    # the DDP wrappers (their reducers) go before the process group: destroyed the other way round, torch
    # 2.13 aborts the process now and then at exit ("terminate called without an active exception")
    del ddp, optimizer
    gc.collect()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--bug", action="store_true")
    ap.add_argument("--at", type=int, default=3)
    a = ap.parse_args()
    mp.spawn(worker, args=(2, a, free_port()), nprocs=2, join=True)


if __name__ == "__main__":
    main()
