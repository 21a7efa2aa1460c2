"""The REAL demo: LoRA fine-tuning on two gloo processes with the frozen base weights sharded (each rank owns
half the rows of every frozen matrix) and replicated LoRA adapters, as in PEFT on a multi-GPU server.

Three Elastic-Tensor plans for the gathered weights: FSDP-style (gather in the forward, discard, re-gather in
the backward: ``discard_to`` = 1), mTuner's cache (keep the gathered weight from the forward to the backward:
``discard_to`` = ``gather_to``) in every layer, and a per-layer mix (``MIX``: which layers cache), as mTuner's
planner chooses them. The demo counts the bytes each rank receives in all-gathers per step and checks that
all give the same LoRA gradients as one process holding the whole model.

Run as ``python -m syslab.training.mtuner.demo OUT.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from syslab.core.gloo import free_port, init_local

HIDDEN, LAYERS, RANK_LORA, BATCH, SEQ = 64, 4, 4, 4, 16
MIX = (False, True, False, True)          # the per-layer plan: layers 1 and 3 keep their gathered weights
MODES = {"fsdp": (False,) * LAYERS, "cache": (True,) * LAYERS, "mix": MIX}


def expected_gathers(cache: tuple[bool, ...]) -> int:
    """All-gathers per step under a per-layer cache plan: one per layer in the forward, and one in the backward
    for each layer that does not cache, except the first (its input needs no gradient, so autograd never runs
    its backward)."""
    return len(cache) + sum(1 for i, c in enumerate(cache) if not c and i > 0)


def _model_weights(seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    base = [torch.randn(HIDDEN, HIDDEN, generator=g) / HIDDEN ** 0.5 for _ in range(LAYERS)]
    lora = [(torch.randn(RANK_LORA, HIDDEN, generator=g) * 0.1, torch.randn(HIDDEN, RANK_LORA, generator=g) * 0.1)
            for _ in range(LAYERS)]
    return base, lora


def _batch(rank: int):
    import torch

    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(BATCH, SEQ, HIDDEN, generator=g), torch.randn(BATCH, SEQ, HIDDEN, generator=g)


def _forward(x, weights, lora, linear):
    import torch

    h = x
    for i, (w, (a, b)) in enumerate(zip(weights, lora, strict=True)):
        h = torch.tanh(linear(h, w, i) + (h @ a.T) @ b.T)
    return h


def _reference() -> list:
    """One process, whole weights: the LoRA gradients of the mean of both ranks' losses."""

    base, lora = _model_weights()
    params = [(a.clone().requires_grad_(), b.clone().requires_grad_()) for a, b in lora]
    loss = 0.0
    for rank in (0, 1):
        x, y = _batch(rank)
        out = _forward(x, base, params, lambda h, w, i: h @ w.T)
        loss = loss + ((out - y) ** 2).mean() / 2
    loss.backward()
    return [t.grad for pair in params for t in pair]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    init_local(rank, world, port)
    base, lora = _model_weights()
    rows = HIDDEN // world
    shards = [w[rank * rows: (rank + 1) * rows].clone() for w in base]
    received = {"bytes": 0}

    def gather(shard):
        parts = [torch.empty_like(shard) for _ in range(world)]
        dist.all_gather(parts, shard.contiguous())
        received["bytes"] += shard.numel() * shard.element_size() * (world - 1)
        return torch.cat(parts)

    class GatheredLinear(torch.autograd.Function):
        """y = x W^T with W sharded by rows; ``cache`` keeps the gathered W for the backward."""

        @staticmethod
        def forward(ctx, x, shard, cache):
            full = gather(shard)
            ctx.cache = cache
            ctx.save_for_backward(full if cache else shard)      # FSDP keeps only its shard
            return x @ full.T

        @staticmethod
        def backward(ctx, grad):
            (saved,) = ctx.saved_tensors
            full = saved if ctx.cache else gather(saved)         # FSDP re-gathers
            return grad @ full, None, None

    results = {}
    for mode, plan in MODES.items():
        received["bytes"] = 0
        params = [(a.clone().requires_grad_(), b.clone().requires_grad_()) for a, b in lora]
        x, y = _batch(rank)
        pred = _forward(x, shards, params, lambda h, s, i, p=plan: GatheredLinear.apply(h, s, p[i]))
        ((pred - y) ** 2).mean().backward()
        grads = [t.grad for pair in params for t in pair]
        for g in grads:                                          # data parallel: average the LoRA gradients
            dist.all_reduce(g)
            g /= world
        results[mode] = {"bytes": received["bytes"], "grads": grads}
    dist.barrier()                                         # no collective in flight when the group goes away
    if rank == 0:
        ref = _reference()
        diff = lambda a, b: max(float((p - q).abs().max()) for p, q in zip(a, b, strict=True))  # noqa: E731
        weight_bytes = sum(w.numel() * w.element_size() for w in base)
        with open(out, "w") as f:
            json.dump({"fsdp_bytes": results["fsdp"]["bytes"], "cache_bytes": results["cache"]["bytes"],
                       "mix_bytes": results["mix"]["bytes"], "shard_bytes": weight_bytes // LAYERS // world,
                       "weight_bytes": weight_bytes, "world": world,
                       "grad_diff_modes": max(diff(results["fsdp"]["grads"], results[m]["grads"])
                                              for m in ("cache", "mix")),
                       "grad_diff_reference": max(diff(results[m]["grads"], ref) for m in results)}, f)
    dist.barrier()
    dist.destroy_process_group()


def run_demo(out: str, timeout_s: float = 120.0) -> dict:
    import subprocess

    Path(out).unlink(missing_ok=True)             # never read a previous run's output
    from syslab.core.lifecycle import child_of_me

    proc = subprocess.run([sys.executable, "-m", "syslab.training.mtuner.demo", out], timeout=timeout_s,
                          capture_output=True, text=True, preexec_fn=child_of_me())
    try:
        with open(out) as f:                       # rank 0 writes it once both ranks have finished
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        raise RuntimeError(f"the gloo demo failed (exit {proc.returncode}):\n{tail}") from None


def main() -> None:
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, free_port(), sys.argv[1]), nprocs=2, join=True)


if __name__ == "__main__":
    main()
