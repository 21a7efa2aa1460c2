"""stackoverflow-60335387 (stackoverflow.com/questions/60335387, "PyTorch MNIST example not converge"): the
training loop never calls ``optimizer.zero_grad()``, so gradients accumulate over every step; with Adam at
lr 1e-4 the model gets worse, at 1e-5 it looks fine, and users tune the learning rate instead of the loop.

    python so60335387_no_zero_grad.py [--seed S] [--steps N] [--bug]

A small CNN with Adam on synthetic 1x8x8 "digits"; ``--bug`` drops ``zero_grad`` from the loop (from its first
iteration, as in the question's code).
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--bug", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    templates = torch.randn(10, 1, 8, 8, generator=torch.Generator().manual_seed(1234))
    gen = torch.Generator().manual_seed(a.seed)
    model.train()
    for i in range(a.steps):
        y = torch.randint(0, 10, (16,), generator=gen)
        x = templates[y] + 0.5 * torch.randn(16, 1, 8, 8, generator=gen)
        if not a.bug:
            optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"iteration {i} loss {loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
