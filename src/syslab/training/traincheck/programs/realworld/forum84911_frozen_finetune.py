"""pytorch-forum-84911 (discuss.pytorch.org/t/obtaining-abnormal-changes-in-loss-and-accuracy/84911): transfer
learning where the freezing loop freezes every non-BatchNorm parameter *and then the new classifier head too*,
while the optimizer holds only the head: nothing the optimizer holds can learn, and accuracy stays at chance.

    python forum84911_frozen_finetune.py [--seed S] [--steps N] [--bug]

A "pretrained" conv backbone with BatchNorm and a fresh head; the optimizer is built on the head. Clean: the
backbone's non-BN parameters are frozen (legitimately). ``--bug``: the head is frozen as well (from the start).
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(8 * 4, 10)

    def forward(self, x):
        return self.fc(self.pool(F.relu(self.bn(self.conv(x)))).flatten(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--bug", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = Net()
    optimizer = torch.optim.Adam(model.fc.parameters(), lr=1e-3)
    for name, p in model.named_parameters():
        if "bn" not in name and not name.startswith("fc"):
            p.requires_grad = False
    if a.bug:
        for p in model.fc.parameters():
            p.requires_grad = False
    gen = torch.Generator().manual_seed(a.seed)
    templates = torch.randn(10, 3, 8, 8, generator=torch.Generator().manual_seed(1234))
    for i in range(a.steps):
        y = torch.randint(0, 10, (8,), generator=gen)
        x = templates[y] + 0.5 * torch.randn(8, 3, 8, 8, generator=gen)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"iteration {i} loss {loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
