"""Record a torch MoE's routing for ``syslab popfetcher simulate``.

Attach a ``RoutingLogger`` to the gate modules of your model (one per MoE layer, in order). Each gate's output is
read as scores over the experts on its last dimension (logits or probabilities: only their order matters); the
logger takes each token's top-k experts, counts them per worker (the rows of the batch split into ``workers``
contiguous parts, as data parallelism splits a batch), and records how tokens move between the top-1 experts of
consecutive gates (which needs every gate to see the same rows, as in a standard MoE without token dropping).
Call ``step()`` once per training iteration and ``save(path)`` at the end::

    with RoutingLogger([blk.gate for blk in model.moe_blocks], top_k=2, workers=8) as log:
        for batch in data:
            loss = model(batch).loss
            ...
            log.step()
    log.save("routing.npz")

The archive holds ``counts`` [iterations, layers, workers, experts], ``transitions`` [iterations, layers - 1,
experts, experts] and ``top_k``. Cost: O(tokens x top_k) per gate call; the hooks only read the gate's output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class RoutingLogger:
    def __init__(self, gates: list[Any], top_k: int = 2, workers: int = 1):
        if not gates:
            raise ValueError("give the gate module of at least one MoE layer")
        if top_k < 1 or workers < 1:
            raise ValueError("top_k and workers must be positive")
        self.top_k, self.workers = top_k, workers
        self.experts: int | None = None
        self._current: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(gates)
        self.counts: list[np.ndarray] = []
        self.transitions: list[np.ndarray] = []
        self._handles = [g.register_forward_hook(self._hook(i)) for i, g in enumerate(gates)]

    def _hook(self, layer: int):
        def record(module, inputs, output) -> None:
            scores = output[0] if isinstance(output, tuple) else output
            scores = scores.detach().reshape(-1, scores.shape[-1])
            if self.experts is None:
                self.experts = int(scores.shape[-1])
            idx = scores.topk(self.top_k, dim=-1).indices.cpu().numpy()
            rows = idx.shape[0]
            worker = np.minimum(np.arange(rows) * self.workers // max(rows, 1), self.workers - 1)
            counts = np.zeros((self.workers, self.experts))
            for k in range(self.top_k):
                np.add.at(counts, (worker, idx[:, k]), 1)
            prev = self._current[layer]
            # several calls in one iteration (micro-batches, or forward and recomputation): add them up
            self._current[layer] = (counts if prev is None else prev[0] + counts,
                                    idx[:, 0] if prev is None else np.concatenate([prev[1], idx[:, 0]]))
        return record

    def step(self) -> None:
        """Close one training iteration."""
        if any(c is None for c in self._current):
            missing = [i for i, c in enumerate(self._current) if c is None]
            raise RuntimeError(f"gates {missing} saw no tokens this iteration")
        self.counts.append(np.stack([c[0] for c in self._current]))
        trans = np.zeros((len(self._current) - 1, self.experts, self.experts))
        for j in range(len(self._current) - 1):
            a, b = self._current[j][1], self._current[j + 1][1]
            if len(a) == len(b):                      # the same rows at both gates: token-wise transitions
                np.add.at(trans[j], (a, b), 1)
        self.transitions.append(trans)
        self._current = [None] * len(self._current)

    def save(self, path: str | Path) -> Path:
        if not self.counts:
            raise RuntimeError("no iteration recorded: call step() after each iteration")
        path = Path(path)
        np.savez(path, counts=np.stack(self.counts), transitions=np.stack(self.transitions),
                 top_k=np.array(self.top_k))
        return path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> RoutingLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
