"""mmpretrain-702 (github.com/open-mmlab/mmpretrain/issues/702): most backbones apply ``frozen_stages`` only in
their ``train()`` override (``_freeze_stages`` is called there, not in ``__init__``), so a training script that
never calls ``model.train()`` explicitly (a new module is already in training mode) trains the stages it
configured as frozen.

    python mmpretrain702_frozen_stages.py [--seed S] [--steps N] [--bug]

A two-stage backbone with ``frozen_stages=1`` and the mmpretrain pattern. Clean: the loop calls
``model.train()`` before training. ``--bug``: it does not (from the start), so stage 0 trains.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class Backbone(nn.Module):
    def __init__(self, frozen_stages: int) -> None:
        super().__init__()
        self.frozen_stages = frozen_stages
        self.stages = nn.ModuleList([nn.Sequential(nn.Linear(16, 32), nn.ReLU()),
                                     nn.Sequential(nn.Linear(32, 32), nn.ReLU())])
        self.head = nn.Linear(32, 4)

    def _freeze_stages(self) -> None:
        for stage in self.stages[:self.frozen_stages]:
            stage.eval()
            for p in stage.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()                 # only here, as in most mmpretrain backbones
        return self

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--bug", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = Backbone(frozen_stages=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    if not a.bug:
        model.train()
    rule = torch.randn(16, 4, generator=torch.Generator().manual_seed(1234))
    gen = torch.Generator().manual_seed(a.seed)
    for i in range(a.steps):
        x = torch.randn(16, 16, generator=gen)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), (x @ rule).argmax(dim=1))
        loss.backward()
        optimizer.step()
        print(f"iteration {i} loss {loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
