"""transformers-17877 (github.com/huggingface/transformers/pull/17877): GPT-2's ``_init_weights`` re-initialises
the parameters of every submodule each time it is applied, and ``post_init`` applies it once per module on the
way down, so each parameter is drawn again and again (``normal_`` called many times per weight): initialisation
is slow, and nothing fails.

    python tf17877_repeated_init.py [--seed S] [--steps N] [--bug]

A stack of blocks initialised through ``model.apply``. Clean: the init function touches only the module it is
given. ``--bug``: it re-initialises every parameter under that module (``module.named_parameters()``, as the
GPT-2 scaled ``c_proj`` init did), so deeper weights are drawn once per ancestor. Checking it needs the tracer
to see ``Tensor.normal_`` (``--api torch.Tensor.normal_``).
"""

import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.proj = nn.Linear(16, 16)

    def forward(self, x):
        return x + self.proj(F.relu(self.fc(x)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--bug", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = nn.Sequential(nn.Linear(8, 16), Block(), Block(), nn.Linear(16, 3))

    @torch.no_grad()
    def init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, 0.02)
            module.bias.zero_()
        if a.bug:                                             # every parameter below, at every ancestor
            for name, p in module.named_parameters():
                if name.endswith("proj.weight"):
                    p.normal_(0.0, 0.02 / math.sqrt(4))

    model.apply(init_weights)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(a.seed)
    for i in range(a.steps):
        x = torch.randn(8, 8, generator=gen)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), (x[:, 0] > 0).long() + (x[:, 1] > 0).long())
        loss.backward()
        optimizer.step()
        print(f"iteration {i} loss {loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
