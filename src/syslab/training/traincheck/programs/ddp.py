"""Data-parallel training on two CPU processes (gloo), with two silent bugs that can be switched on at one
iteration. Without ``--bug`` it is the clean twin.

    python ddp.py [--seed S] [--batch-size B] [--lr LR] [--steps N] [--bug NAME] [--at T]

* ``raw-module``   the loop calls the wrapped model (``ddp.module``) instead of the DDP wrapper, so gradients
                   are no longer averaged and the ranks' weights drift apart;
* ``same-shard``   the data sharding ignores the rank, so both ranks train on identical batches.
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

BUGS = ("raw-module", "same-shard")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, a: argparse.Namespace, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(a.seed)                                  # identical initial weights on every rank
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=a.lr)
    rule = torch.randn(16, 4, generator=torch.Generator().manual_seed(1234))
    for i in range(a.steps):
        shard = 0 if a.bug == "same-shard" and i >= a.at else rank
        gen = torch.Generator().manual_seed(a.seed * 1000 + i * world + shard)
        x = torch.randn(a.batch_size, 16, generator=gen)
        y = (x @ rule).argmax(dim=1)
        optimizer.zero_grad()
        net = ddp.module if a.bug == "raw-module" and i >= a.at else ddp
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        if rank == 0:
            print(f"iteration {i} loss {loss.item():.4f}", flush=True)
    # the DDP wrappers (their reducers) go before the process group: destroyed the other way round, torch
    # 2.13 aborts the process now and then at exit ("terminate called without an active exception")
    del ddp, net, optimizer
    gc.collect()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--bug", choices=BUGS)
    ap.add_argument("--at", type=int, default=4)
    a = ap.parse_args()
    mp.spawn(worker, args=(2, a, free_port()), nprocs=2, join=True)


if __name__ == "__main__":
    main()
