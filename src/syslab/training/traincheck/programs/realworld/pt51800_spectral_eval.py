"""pytorch-51800 (github.com/pytorch/pytorch/issues/51800): ``nn.utils.spectral_norm`` runs its power
iteration only in a forward in *training* mode, so a model evaluated (``eval()``) before any training forward
is evaluated with uninitialised spectral-norm estimates: the numbers look fine and are wrong. The artifact's
buggy twin calls ``test()`` before ``train()`` in each epoch.

    python pt51800_spectral_eval.py [--seed S] [--epochs E] [--bug]

Clean: each epoch trains (4 steps), then evaluates. ``--bug``: each epoch evaluates first, so the very first
evaluation (iteration 0) comes before any training forward.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--bug", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    sn = nn.utils.spectral_norm
    model = nn.Sequential(sn(nn.Linear(16, 32)), nn.ReLU(), sn(nn.Linear(32, 4)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rule = torch.randn(16, 4, generator=torch.Generator().manual_seed(1234))
    gen = torch.Generator().manual_seed(a.seed)

    def batch():
        x = torch.randn(16, 16, generator=gen)
        return x, (x @ rule).argmax(dim=1)

    def test():
        model.eval()
        with torch.no_grad():
            x, y = batch()
            print(f"test loss {F.cross_entropy(model(x), y).item():.4f}", flush=True)

    def train():
        model.train()
        for _ in range(4):
            x, y = batch()
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

    for _ in range(a.epochs):
        if a.bug:
            test()
            train()
        else:
            train()
            test()


if __name__ == "__main__":
    main()
