"""pytorch-115607 (github.com/pytorch/pytorch/issues/115607): under ``torch._dynamo.optimize``, a training
loop in which one iteration has no gradients (``zero_grad`` set them to None and that iteration skipped
backward) recompiles the optimizer step for "no gradients", and the guards do not check whether the gradients
are None, so every later step reuses that empty graph: Adam's step counter stops and no parameter moves again.

Simulated, as in the artifact (the compiler bug is fixed in torch 2.x): ``CachedStep`` stands in for the
compiled step, a cache of specialisations keyed by guards. Clean: the guards include which gradients are None.
``--bug``: they do not (the root cause), so the specialisation made in the gradient-free iteration is reused.

    python pt115607_stale_compiled_step.py [--seed S] [--steps N] [--skip K] [--bug]

Both twins skip backward in iteration ``K`` (default 1, as in the artifact's ``simple_buggy.py``: the first
iteration after the optimizer state exists, so the step is specialised anew there); the bug shows from
``K + 1`` on.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class CachedStep(torch.optim.Optimizer):
    """SGD with momentum, executed as a cached specialisation: the first call under a guard key records which
    parameters have gradients (the "graph"); later calls with the same key replay it."""

    def __init__(self, params, lr: float, guard_on_grads: bool) -> None:
        super().__init__(params, {"lr": lr, "momentum": 0.9})
        self.guard_on_grads = guard_on_grads
        self.graphs: dict[tuple, list] = {}

    @torch.no_grad()
    def step(self, closure=None):
        params = [p for g in self.param_groups for p in g["params"]]
        key = (len(self.state) > 0,)                         # a guard dynamo has: optimizer state initialised
        if self.guard_on_grads:
            key += tuple(p.grad is None for p in params)     # the guard the bug lacks
        if key not in self.graphs:
            self.graphs[key] = [p for p in params if p.grad is not None]
        for g in self.param_groups:
            for p in g["params"]:
                if any(p is q for q in self.graphs[key]) and p.grad is not None:
                    buf = self.state[p].setdefault("momentum", torch.zeros_like(p))
                    buf.mul_(g["momentum"]).add_(p.grad)
                    p.add_(buf, alpha=-g["lr"])
                else:
                    self.state.setdefault(p, {})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--skip", type=int, default=1)
    ap.add_argument("--bug", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    optimizer = CachedStep(model.parameters(), lr=0.05, guard_on_grads=not a.bug)
    rule = torch.randn(16, 4, generator=torch.Generator().manual_seed(1234))
    gen = torch.Generator().manual_seed(a.seed)
    for i in range(a.steps):
        x = torch.randn(16, 16, generator=gen)
        optimizer.zero_grad()
        if i != a.skip:                                      # iteration K: nothing to learn from
            loss = F.cross_entropy(model(x), (x @ rule).argmax(dim=1))
            loss.backward()
            print(f"iteration {i} loss {loss.item():.4f}", flush=True)
        optimizer.step()


if __name__ == "__main__":
    main()
