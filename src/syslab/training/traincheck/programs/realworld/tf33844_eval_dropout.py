"""transformers-33844 (github.com/huggingface/transformers/pull/33844): ``M2M100FlashAttention2`` passes its
dropout rate to the attention kernel without checking ``self.training``, so attention dropout stays on after
``model.eval()``: evaluation is noisy and worse, and nothing fails.

    python tf33844_eval_dropout.py [--seed S] [--steps N] [--bug]

A one-head self-attention classifier whose attention calls ``F.dropout`` itself. Clean: ``training=
self.training``. ``--bug``: the flag is left out (``F.dropout`` defaults to ``training=True``). The model is
evaluated at the start of every 4th iteration (4, 8, ...), so the bug first acts in iteration 4.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, dim: int, dropout: float, respect_eval: bool) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.dropout, self.respect_eval = dropout, respect_eval

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        if self.respect_eval:
            weights = F.dropout(weights, p=self.dropout, training=self.training)
        else:
            weights = F.dropout(weights, p=self.dropout)            # the bug: dropout on in eval mode
        return weights @ v


class Classifier(nn.Module):
    def __init__(self, respect_eval: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 16)
        self.attn = Attention(16, 0.2, respect_eval)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.attn(self.embed(x)).mean(dim=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--bug", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    model = Classifier(respect_eval=not a.bug)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(a.seed)

    def batch():
        x = torch.randn(8, 6, 4, generator=gen)
        return x, (x.sum(dim=(1, 2)) > 0).long() + (x[:, 0, 0] > 1).long()

    for i in range(a.steps):
        if i > 0 and i % 4 == 0:                                   # evaluation
            model.eval()
            with torch.no_grad():
                xv, yv = batch()
                print(f"eval loss {F.cross_entropy(model(xv), yv).item():.4f}", flush=True)
            model.train()
        x, y = batch()
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
