"""deepspeed-1801 (github.com/microsoft/DeepSpeed/pull/1801; seen in BLOOM-176B training): with tensor
parallelism, ``BF16_Optimizer.get_grads_for_norm`` dropped the *replicated* (non-tensor-parallel) parameters on
tensor-parallel ranks > 0 also when collecting the gradients to clip, so rank 0 clipped its LayerNorm gradients
and rank 1 did not: the replicated LayerNorm weights, which must stay identical on every rank, went out of sync.

    python deepspeed1801_tp_clip.py [--seed S] [--steps N] [--bug] [--at T]

Two gloo processes as a tensor-parallel pair: a column-parallel then row-parallel MLP (each rank holds a shard,
so these weights differ across ranks by design), then a replicated LayerNorm and head. Gradient clipping by
the global norm (shards summed across ranks, replicated parameters counted once). Clean: every rank scales
all its gradients. ``--bug``: from iteration ``--at`` on, rank 1 leaves out the replicated ones.
"""

import argparse
import os
import socket

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dnn
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorParallelMLP(nn.Module):
    def __init__(self, rank: int, world: int) -> None:
        super().__init__()
        torch.manual_seed(100 + rank)                        # each rank's own shard
        self.up = nn.Linear(16, 32 // world)                 # column-parallel
        self.down = nn.Linear(32 // world, 16, bias=False)   # row-parallel
        torch.manual_seed(7)                                 # replicated: identical on every rank
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 4)
        for p in (*self.up.parameters(), *self.down.parameters()):
            p.tensor_model_parallel = True

    def forward(self, x):
        partial = self.down(F.relu(self.up(x)))
        return self.head(self.norm(dnn.all_reduce(partial)))


def clip_by_global_norm(model: nn.Module, max_norm: float, rank: int, skip_replicated: bool) -> None:
    params = [p for p in model.parameters() if p.grad is not None]
    sharded = sum(p.grad.pow(2).sum() for p in params if getattr(p, "tensor_model_parallel", False))
    replicated = sum(p.grad.pow(2).sum() for p in params if not getattr(p, "tensor_model_parallel", False))
    total = sharded.clone()
    dist.all_reduce(total)
    norm = float((total + replicated).sqrt())
    scale = min(1.0, max_norm / (norm + 1e-6))
    for p in params:
        if skip_replicated and rank > 0 and not getattr(p, "tensor_model_parallel", False):
            continue                                          # the misplaced check
        p.grad.mul_(scale)


def worker(rank: int, world: int, a: argparse.Namespace, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = TensorParallelMLP(rank, world)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    rule = torch.randn(16, 4, generator=torch.Generator().manual_seed(1234))
    for i in range(a.steps):
        gen = torch.Generator().manual_seed(a.seed * 1000 + i)   # tensor parallel: the same batch on each rank
        x = torch.randn(16, 16, generator=gen)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), (x @ rule).argmax(dim=1))
        loss.backward()
        clip_by_global_norm(model, 0.1, rank, skip_replicated=a.bug and i >= a.at)
        optimizer.step()
        if rank == 0:
            print(f"iteration {i} loss {loss.item():.4f}", flush=True)
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
