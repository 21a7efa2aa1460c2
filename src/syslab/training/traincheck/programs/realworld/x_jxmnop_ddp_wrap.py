"""x-jxmnop-ddp-out-of-sync (x.com/jxmnop/status/1778520637193240892): with the Hugging Face trainer, the
model is sometimes a plain ``nn.Module`` and sometimes wrapped in ``DistributedDataParallel``; in the steps it
is not wrapped, gradients are not synchronised and the ranks' models drift apart. The artifact simulates it
with a trainer whose ``training_step`` wraps the model only on odd steps.

    python x_jxmnop_ddp_wrap.py [--seed S] [--steps N] [--bug] [--at T]

Clean: every step runs the DDP-wrapped model. ``--bug``: from iteration ``--at`` on, even steps run the bare
model and odd steps a freshly built DDP wrapper (as the artifact's ``get_model_ddp_or_not``). Two gloo
processes on CPU.
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
from torch.nn.parallel import DistributedDataParallel as DDP


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
    wrapped = DDP(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    rule = torch.randn(16, 4, generator=torch.Generator().manual_seed(1234))

    def get_model_ddp_or_not(step: int, wrapped: nn.Module) -> nn.Module:
        if not a.bug or step < a.at:
            return wrapped
        return model if step % 2 == 0 else DDP(model)

    for i in range(a.steps):
        gen = torch.Generator().manual_seed(a.seed * 1000 + i * world + rank)
        x = torch.randn(16, 16, generator=gen)
        net = get_model_ddp_or_not(i, wrapped)
        optimizer.zero_grad()
        loss = F.cross_entropy(net(x), (x @ rule).argmax(dim=1))
        loss.backward()
        optimizer.step()
        if rank == 0:
            print(f"iteration {i} loss {loss.item():.4f}", flush=True)
    # the DDP wrappers (their reducers) go before the process group: destroyed the other way round, torch
    # 2.13 aborts the process now and then at exit ("terminate called without an active exception")
    del wrapped, net, optimizer
    gc.collect()
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--bug", action="store_true")
    ap.add_argument("--at", type=int, default=4)
    a = ap.parse_args()
    mp.spawn(worker, args=(2, a, free_port()), nprocs=2, join=True)


if __name__ == "__main__":
    main()
