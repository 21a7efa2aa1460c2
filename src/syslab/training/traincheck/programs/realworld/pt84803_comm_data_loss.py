"""pytorch-84803 (github.com/pytorch/pytorch/issues/84803; the same root cause as pytorch-96600 and
baichuan2-86): on some multi-GPU machines (RTX 4090s) broken peer-to-peer transfers silently lose data, so a
collective delivers zeros instead of the tensor sent. Data-parallel training runs on with corrupted gradients
(and, in Baichuan2-86, inference talks nonsense).

The fault is in hardware and drivers; the artifact reproduces it by fault injection (collectives zero the
tensor they transfer, at random), and so do we: a DDP communication hook all-reduces each gradient bucket and,
with ``--bug``, the transfer to rank 1 is lost once, at iteration ``--at`` (rank 1 receives zeros).

    python pt84803_comm_data_loss.py [--seed S] [--steps N] [--bug] [--at T]

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
    iteration = {"now": 0}

    def lossy_allreduce(state, bucket):
        """Average the bucket across ranks; a lost transfer leaves rank 1 with zeros."""
        fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()

        def done(f):
            out = f.value()[0].div_(world)
            if a.bug and iteration["now"] == a.at and rank == 1:
                out.zero_()                                   # the data lost in transit
            return out
        return fut.then(done)

    ddp.register_comm_hook(None, lossy_allreduce)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05)
    rule = torch.randn(16, 4, generator=torch.Generator().manual_seed(1234))
    for i in range(a.steps):
        iteration["now"] = i
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
