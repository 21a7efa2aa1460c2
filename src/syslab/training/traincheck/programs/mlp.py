"""A small classification training program with the usual parts (dropout, a validation pass in eval mode,
gradient clipping, an LR schedule) and eleven silent bugs that can be switched on at one iteration, each a
miniature of a real-world class of silent training error. Without ``--bug`` it is the clean twin.

    python mlp.py [--seed S] [--batch-size B] [--lr LR] [--steps N] [--freeze-first] [--bug NAME] [--at T]

Bugs (each starts at iteration T = ``--at``; the program still runs to the end without an error):

* ``no-zero-grad``      the loop stops clearing gradients, so they accumulate across iterations;
* ``stale-optimizer``   the head is re-initialised, but the optimizer still holds the old head's parameters;
* ``lr-zero``           the LR schedule's lambda returns 0 from T on (a warm-up/decay formula bug);
* ``frozen-layer``      a hidden layer's parameters get ``requires_grad = False`` by mistake;
* ``eval-left-on``      after the validation pass the loop forgets ``model.train()``;
* ``dtype-cast``        the model is cast to bfloat16 mid-training "to save memory";
* ``clip-before-backward``  gradient clipping moved above ``backward`` (it clips last iteration's grads);
* ``no-op-step``        a gradient-accumulation condition that is never true, so ``step`` never runs;
* ``same-batch``        the data iterator gets stuck and returns the same batch every iteration;
* ``detached-branch``   a hand-written forward detaches the hidden state after the first block (a stray
                        ``.detach()``), so the first layer silently stops receiving gradients;
* ``bypassed-layer``    a branch in a hand-written forward skips the middle layer, which then gets no gradient.
(``frozen-layer`` is the third form of "part of the model stops learning".)
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

BUGS = ("no-zero-grad", "stale-optimizer", "lr-zero", "frozen-layer", "eval-left-on", "dtype-cast",
        "clip-before-backward", "no-op-step", "same-batch", "detached-branch", "bypassed-layer")


def batches(seed: int, batch_size: int):
    """An endless synthetic task: 4 classes from a fixed random linear rule on 16 features."""
    gen = torch.Generator().manual_seed(seed)
    rule = torch.randn(16, 4, generator=torch.Generator().manual_seed(1234))
    while True:
        x = torch.randn(batch_size, 16, generator=gen)
        yield x, (x @ rule).argmax(dim=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--freeze-first", action="store_true", help="freeze the first layer (legitimately)")
    ap.add_argument("--bug", choices=BUGS)
    ap.add_argument("--at", type=int, default=4)
    a = ap.parse_args()
    bug = lambda name, i: a.bug == name and i >= a.at  # noqa: E731

    torch.manual_seed(a.seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 4))
    if a.freeze_first:
        for p in model[0].parameters():
            p.requires_grad = False
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=a.lr, momentum=0.9)
    schedule = lambda step: 0.0 if a.bug == "lr-zero" and step >= a.at else 0.9 ** (step // 4)  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    data = batches(a.seed, a.batch_size)
    stuck = None

    def forward(x, i):
        if bug("detached-branch", i):
            return model[3:](model[:3](x).detach())          # the stray detach: layer 0 stops learning
        if bug("bypassed-layer", i):
            return model[5](model[2](model[1](model[0](x))))   # the branch that skips layers 3 and 4
        return model(x)

    for i in range(a.steps):
        if bug("stale-optimizer", i) and i == a.at:
            model[5] = nn.Linear(32, 4)                      # re-initialised head; optimizer not rebuilt
        if bug("frozen-layer", i) and i == a.at:
            for p in model[3].parameters():
                p.requires_grad = False
        if bug("dtype-cast", i) and i == a.at:
            model.to(torch.bfloat16)
        x, y = next(data) if stuck is None else stuck
        if bug("same-batch", i):
            stuck = stuck or (x, y)
        if next(model.parameters()).dtype == torch.bfloat16:
            x = x.to(torch.bfloat16)
        if not bug("no-zero-grad", i):
            optimizer.zero_grad()
        if bug("clip-before-backward", i):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        loss = F.cross_entropy(forward(x, i).float(), y)
        loss.backward()
        if not bug("clip-before-backward", i):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if not (bug("no-op-step", i) and (i + 1) % 1000 != 0):
            optimizer.step()
            scheduler.step()
        if i % 4 == 3:                                        # validation
            model.eval()
            with torch.no_grad():
                xv, yv = next(data)
                F.cross_entropy(model(xv.to(next(model.parameters()).dtype)).float(), yv)
            if not (a.bug == "eval-left-on" and i + 1 >= a.at):
                model.train()
        print(f"iteration {i} loss {loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
