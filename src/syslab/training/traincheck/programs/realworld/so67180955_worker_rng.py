"""stackoverflow-67180955 (and tanelp.github.io/posts/a-bug-that-plagues-thousands-of-open-source-ml-projects):
DataLoader workers are forked from the main process and inherit its NumPy random state, so a dataset that draws
its samples or augmentations from NumPy returns *identical* data from every worker. Torch >= 1.9 reseeds the
global NumPy generator in each worker (pytorch PR 56488), but a dataset that holds its own generator, created
in the main process, still hands every worker the same copy: the same root cause, in torch 2.x.

    python so67180955_worker_rng.py [--seed S] [--steps N] [--bug]

Two workers; each batch comes from one worker in turn. Clean: ``worker_init_fn`` gives each worker its own
generator (the documented fix). ``--bug``: no ``worker_init_fn``, so worker 1's first batch (iteration 1)
repeats worker 0's (iteration 0), and so on.
"""

import argparse

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, get_worker_info


class RandomCrops(Dataset):
    """Random 16-feature "crops" of a fixed signal, drawn from the dataset's own NumPy generator."""

    def __init__(self, seed: int, n: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.signal = np.random.default_rng(1234).standard_normal(64).astype(np.float32)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        start = int(self.rng.integers(0, 48))
        x = self.signal[start:start + 16] + 0.1 * self.rng.standard_normal(16).astype(np.float32)
        return torch.from_numpy(x), start % 4


def reseed(worker_id: int) -> None:
    info = get_worker_info()
    info.dataset.rng = np.random.default_rng(info.seed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--bug", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    data = DataLoader(RandomCrops(a.seed, 8 * a.steps), batch_size=8, num_workers=2,
                      worker_init_fn=None if a.bug else reseed, multiprocessing_context="fork")
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for i, (x, y) in enumerate(data):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        print(f"iteration {i} loss {loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
