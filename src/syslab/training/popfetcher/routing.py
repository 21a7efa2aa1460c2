"""Routing traces and PopFetcher's popularity predictor.

**Traces.** A routing trace holds, per iteration and MoE layer, how many tokens each expert received
(``counts`` [iterations, layers, experts]) and how tokens moved between experts of adjacent layers
(``transitions`` [iterations, layers - 1, experts, experts], by each token's top-1 expert). Two sources:

* REAL: a tiny top-2 MoE trained on this CPU with torch (``tiny_moe_trace``) on a synthetic language whose
  token frequencies are Zipfian, so routing is skewed, and whose tokens keep their identity through the
  residual stream, so experts of adjacent layers are correlated, as the paper observes in GPT-MoE;
* SYNTHETIC: Zipf(alpha = 1.2) expert popularity with a banded Markov transition between layers and a slow
  drift over iterations (our notes' suggested twin).

**Predictor** (the paper's idea; the exact formula is not in our notes, so this combination is ours): the
expected load of expert h at layer j + 1 is sum_i count_j(i) P(h | i), with the transition matrix P estimated
from the last ``window`` = 10 iterations, blended half and half with the window's mean load of layer j + 1.
The baseline predicts last iteration's loads. Cost: O(window x layers x experts^2) per prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RoutingTrace:
    counts: np.ndarray          # [iterations, layers, experts] tokens per expert (top-k assignments)
    transitions: np.ndarray     # [iterations, layers - 1, experts, experts] top-1 expert of layer j -> j + 1
    tokens: int                 # tokens per iteration
    top_k: int
    source: str
    # [iterations, layers, workers, experts]: the same counts per worker, each worker's own batch (None: not
    # recorded; each worker then sees the global distribution)
    worker_counts: np.ndarray | None = None

    def per_worker(self, workers: int) -> np.ndarray:
        """[iterations, layers, workers, experts] assignments per worker: the recorded ones when the trace
        has ``workers`` of them, else the global counts split evenly (every worker the same distribution)."""
        if self.worker_counts is not None and self.worker_counts.shape[2] == workers:
            return self.worker_counts
        return np.repeat(self.counts[:, :, None, :] / workers, workers, axis=2)

    @property
    def iterations(self) -> int:
        return self.counts.shape[0]

    @property
    def layers(self) -> int:
        return self.counts.shape[1]

    @property
    def experts(self) -> int:
        return self.counts.shape[2]


def synthetic_trace(iterations: int, layers: int, experts: int, tokens: int, rng: np.random.Generator,
                    alpha: float = 1.2, band: float = 0.6, topic_change: float = 0.5, top_k: int = 2,
                    workers: int = 1) -> RoutingTrace:
    """SYNTHETIC: each token's layer-0 expert is Zipf(alpha)-popular; at each next layer it stays in a band
    around its previous expert with probability ``band`` (else follows the popularity). Batches differ: with
    probability ``topic_change`` a batch has a new "topic", a new ranking of the experts (so last iteration's
    loads mislead, while the current layer's routing still predicts the next layer's). With ``workers`` > 1
    each worker's batch (``tokens`` // ``workers`` tokens) has its own topic, changing on its own, and the
    per-worker counts are recorded. Cost: O(iterations x layers x tokens)."""
    popularity = 1.0 / np.arange(1, experts + 1) ** alpha
    orders = [rng.permutation(experts) for _ in range(workers)]
    counts = np.zeros((iterations, layers, workers, experts))
    trans = np.zeros((iterations, layers - 1, experts, experts))
    shift = rng.integers(1, experts, size=layers - 1)            # each layer's band is offset differently
    share = tokens // workers
    for it in range(iterations):
        for w in range(workers):
            if rng.random() < topic_change:
                orders[w] = rng.permutation(experts)
            p = np.empty(experts)
            p[orders[w]] = popularity / popularity.sum()
            choices = rng.choice(experts, (top_k, share), p=p)   # every choice follows the same Markov chain
            for layer in range(layers):
                for k in range(top_k):
                    np.add.at(counts[it, layer, w], choices[k], 1)
                if layer < layers - 1:
                    stay = rng.random((top_k, share)) < band
                    moved = (choices + shift[layer] + rng.integers(-1, 2, (top_k, share))) % experts
                    nxt = np.where(stay, moved, rng.choice(experts, (top_k, share), p=p))
                    np.add.at(trans[it, layer], (choices[0], nxt[0]), 1)
                    choices = nxt
    return RoutingTrace(counts.sum(axis=2), trans, share * workers, top_k,
                        f"SYNTHETIC (Zipf {alpha:g}, banded Markov)", counts if workers > 1 else None)


def tiny_moe_trace(iterations: int = 40, layers: int = 4, experts: int = 16, vocab: int = 512, hidden: int = 64,
                   batch: int = 16, seq: int = 64, seed: int = 0, top_k: int = 2, workers: int = 8,
                   log_batch: int = 128) -> RoutingTrace:
    """REAL: train a tiny top-``top_k`` MoE language model on CPU (next-token prediction on a Zipfian bigram
    language; ``batch`` sequences per step) and log its gate decisions every iteration on a larger batch of
    ``log_batch`` sequences (a forward pass without gradients, with the weights of that iteration), split over
    ``workers`` as data parallelism would (``log_batch`` / ``workers`` sequences each): per-worker loads from
    1,024 real tokens, not a few sequences scaled up."""
    if log_batch % workers:
        raise ValueError(f"log batch {log_batch} does not split over {workers} workers")
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    zipf = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64) ** 1.1
    successors = torch.randint(0, vocab, (vocab, 4), generator=gen)

    def batch_tokens(batch: int = batch) -> torch.Tensor:
        first = torch.multinomial(zipf, batch, replacement=True, generator=gen)
        out = [first]
        for _ in range(seq):
            pick = torch.randint(0, 4, (batch,), generator=gen)
            jump = torch.rand(batch, generator=gen) < 0.3
            nxt = torch.where(jump, torch.multinomial(zipf, batch, replacement=True, generator=gen),
                              successors[out[-1], pick])
            out.append(nxt)
        return torch.stack(out, dim=1)

    class MoE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate = nn.Linear(hidden, experts, bias=False)
            self.w1 = nn.Parameter(torch.randn(experts, hidden, 2 * hidden) / hidden ** 0.5)
            self.w2 = nn.Parameter(torch.randn(experts, 2 * hidden, hidden) / (2 * hidden) ** 0.5)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            weight, idx = self.gate(x).softmax(-1).topk(top_k, dim=-1)
            out = torch.zeros_like(x)
            for e in range(experts):                             # each expert on the rows routed to it
                rows, slot = (idx == e).nonzero(as_tuple=True)
                if len(rows):
                    y = F.gelu(x[rows] @ self.w1[e]) @ self.w2[e]
                    out = out.index_add(0, rows, weight[rows, slot, None] * y)
            return out, idx

    embed = nn.Embedding(vocab, hidden)
    blocks = nn.ModuleList(MoE() for _ in range(layers))
    norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
    head = nn.Linear(hidden, vocab)
    params = [*embed.parameters(), *blocks.parameters(), *norms.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    n_tokens = log_batch * seq
    counts = np.zeros((iterations, layers, workers, experts))
    trans = np.zeros((iterations, layers - 1, experts, experts))
    worker_of_row = np.repeat(np.arange(workers), log_batch // workers * seq)   # rows are (sequence, position)

    def forward(toks: torch.Tensor, it: int | None) -> torch.Tensor:
        x = embed(toks[:, :-1]).reshape(-1, hidden)
        top1 = []
        for layer, (block, norm) in enumerate(zip(blocks, norms, strict=True)):
            y, idx = block(norm(x))
            x = x + y
            if it is not None:
                ids = idx.numpy()
                for k in range(top_k):
                    np.add.at(counts[it, layer], (worker_of_row, ids[:, k]), 1)
                top1.append(ids[:, 0])
        for layer in range(len(top1) - 1):
            np.add.at(trans[it, layer], (top1[layer], top1[layer + 1]), 1)
        return x

    for it in range(iterations):
        with torch.no_grad():                                    # the routing log: this iteration's weights
            forward(batch_tokens(log_batch), it)
        toks = batch_tokens()
        loss = F.cross_entropy(head(forward(toks, None)), toks[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return RoutingTrace(counts.sum(axis=2), trans, n_tokens, top_k, "REAL (tiny top-2 MoE trained on this CPU)",
                        counts)


# ---------------------------------------------------------------------------------------------------------
# The predictor
# ---------------------------------------------------------------------------------------------------------


def predict_next_layer(trace: RoutingTrace, it: int, layer: int, window: int = 10, blend: float = 0.5
                       ) -> np.ndarray:
    """PopFetcher's predicted load of each expert at ``layer + 1`` in iteration ``it``, made when layer
    ``layer``'s routing of that iteration is known (the current layer) and only earlier iterations' history."""
    lo = max(0, it - window)
    if it == 0:
        return trace.counts[it, layer].copy()                   # no history: the current layer's shape
    t = trace.transitions[lo:it, layer].sum(axis=0)             # [experts, experts]
    p = t / np.maximum(t.sum(axis=1, keepdims=True), 1)
    via_transition = trace.counts[it, layer] @ p
    history = trace.counts[lo:it, layer + 1].mean(axis=0)
    return blend * via_transition + (1 - blend) * history


def predict_worker_loads(trace: RoutingTrace, it: int, layer: int, workers: int, window: int = 10,
                         blend: float = 0.5) -> np.ndarray:
    """``predict_next_layer`` for each worker's own batch: [workers, experts], the worker's current-layer
    routing through the (shared) transition estimate, blended with the worker's own window mean."""
    counts = trace.per_worker(workers)
    lo = max(0, it - window)
    if it == 0:
        return counts[it, layer].copy()
    t = trace.transitions[lo:it, layer].sum(axis=0)
    p = t / np.maximum(t.sum(axis=1, keepdims=True), 1)
    return blend * (counts[it, layer] @ p) + (1 - blend) * counts[lo:it, layer + 1].mean(axis=0)


def predict_last_iteration(trace: RoutingTrace, it: int, layer: int) -> np.ndarray:
    """The baseline: the next layer's loads in the previous iteration."""
    return trace.counts[max(0, it - 1), layer + 1].copy()


def worker_hit_rate(trace: RoutingTrace, predictor, workers: int, k: int = 4, start: int = 10) -> float:
    """The per-worker form of ``top_k_hit_rate``, for per-worker plans: ``predictor(trace, it, layer)`` gives
    [workers, experts]; mean over workers, iterations >= ``start`` and layer pairs of |predicted top-k of the
    worker's own batch ∩ actual top-k| / k."""
    counts = trace.per_worker(workers)
    hits = []
    for it in range(start, trace.iterations):
        for layer in range(trace.layers - 1):
            pred = np.argsort(-predictor(trace, it, layer), axis=1, kind="stable")[:, :k]
            actual = np.argsort(-counts[it, layer + 1], axis=1, kind="stable")[:, :k]
            hits += [len(set(p.tolist()) & set(a.tolist())) / k for p, a in zip(pred, actual, strict=True)]
    return float(np.mean(hits))


def last_iteration_per_worker(trace: RoutingTrace, it: int, layer: int, workers: int) -> np.ndarray:
    """The baseline per worker: each worker's next-layer loads in the previous iteration."""
    return trace.per_worker(workers)[max(0, it - 1), layer + 1].copy()


def top_k_hit_rate(trace: RoutingTrace, predictor, k: int = 4, start: int = 10) -> float:
    """Mean |predicted top-k experts ∩ actual top-k| / k over iterations >= ``start`` and layer pairs."""
    hits = []
    for it in range(start, trace.iterations):
        for layer in range(trace.layers - 1):
            pred = np.argsort(-predictor(trace, it, layer), kind="stable")[:k]
            actual = np.argsort(-trace.counts[it, layer + 1], kind="stable")[:k]
            hits.append(len(set(pred.tolist()) & set(actual.tolist())) / k)
    return float(np.mean(hits))
