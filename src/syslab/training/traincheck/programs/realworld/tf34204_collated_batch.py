"""transformers-34204 (github.com/huggingface/transformers/issues/34204): ``PixtralProcessor`` given a batch of
50 (text, image) pairs aggregates the images into a single list, so it returns ``input_ids`` of shape
``[1, L]`` instead of ``[50, L]``: the model trains on one sample per batch and nothing fails.

    python tf34204_collated_batch.py [--seed S] [--steps N] [--bug]

A collate function turns a list of samples into a batch. Clean: it stacks them. ``--bug``: it folds the list
into one sample (the wrong aggregation), so each batch has one row (from the start).
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
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    rule = torch.randn(16, 4, generator=torch.Generator().manual_seed(1234))
    gen = torch.Generator().manual_seed(a.seed)

    def collate(samples):
        if a.bug:                                    # the whole batch aggregated into one entry
            return samples[0][0][None], samples[0][1][None]
        return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])

    for i in range(a.steps):
        xs = torch.randn(16, 16, generator=gen)
        x, y = collate([(x, (x @ rule).argmax()) for x in xs])
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"iteration {i} loss {loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
