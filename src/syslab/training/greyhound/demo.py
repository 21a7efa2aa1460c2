"""The REAL demo: four ``torch.distributed`` (gloo) processes train a tiny model with DDP while rank 2 is slowed
mid-run; rank 0 logs every collective call it makes (a DDP communication hook for the gradient buckets, plus
the loss all-reduce a training loop does for logging), the way GreyHound's NCCL probe logs calls. GreyHound's
Step 1 recovers the iteration times from that log alone, and Step 2 finds the slowdown.

Run as ``python -m syslab.training.greyhound.demo OUT.json [--iterations N] [--slow-at K] [--sleep-ms S]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from syslab.core.gloo import free_port, init_local


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn as nn

    init_local(rank, world, port)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.01)     # several buckets per step
    log: list[tuple[int, float]] = []

    def logged_allreduce(state, bucket):
        log.append((bucket.index(), time.perf_counter()))
        fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
        return fut.then(lambda f: f.value()[0] / world)

    ddp.register_comm_hook(None, logged_allreduce)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(rank)
    for i in range(args.iterations):
        x, y = torch.randn(16, 32, generator=gen), torch.randint(0, 4, (16,), generator=gen)
        if rank == args.slow_rank and i >= args.slow_at:
            time.sleep(args.sleep_ms / 1000)                # the fail-slow: a slower GPU, say
        opt.zero_grad()
        loss = nn.functional.cross_entropy(ddp(x), y)
        loss.backward()
        opt.step()
        log.append((1000, time.perf_counter()))            # the loss all-reduce of the logging code
        dist.all_reduce(loss.detach(), op=dist.ReduceOp.SUM)
    dist.barrier()                                         # no collective in flight when the group goes away
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"calls": log, "slow_at": args.slow_at, "iterations": args.iterations}, f)
    dist.barrier()
    dist.destroy_process_group()


def run_demo(out: str, iterations: int = 200, slow_at: int = 100, sleep_ms: float = 30.0, world: int = 4,
             slow_rank: int = 2, timeout_s: float = 180.0) -> dict:
    """Run the four-process job in a subprocess and return rank 0's call log."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "syslab.training.greyhound.demo", out, "--iterations", str(iterations),
           "--slow-at", str(slow_at), "--sleep-ms", str(sleep_ms), "--world", str(world), "--slow-rank",
           str(slow_rank)]
    Path(out).unlink(missing_ok=True)             # never read a previous run's output
    from syslab.core.lifecycle import child_of_me

    proc = subprocess.run(cmd, timeout=timeout_s, capture_output=True, text=True, preexec_fn=child_of_me())
    try:
        with open(out) as f:                       # rank 0 writes it once every rank has finished training
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        raise RuntimeError(f"the gloo demo failed (exit {proc.returncode}):\n{tail}") from None


def main() -> None:
    import torch.multiprocessing as mp

    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--slow-at", type=int, default=100)
    ap.add_argument("--sleep-ms", type=float, default=30.0)
    ap.add_argument("--world", type=int, default=4)
    ap.add_argument("--slow-rank", type=int, default=2)
    a = ap.parse_args()
    mp.spawn(_worker, args=(a.world, free_port(), a, a.out), nprocs=a.world, join=True)


if __name__ == "__main__":
    main()
