"""Document packing: the dataloader stream, fixed-length baselines (Eq. 1), WLB-LLM (Algorithm 1)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from syslab.core.errors import InputError
from syslab.core.workloads import load_lengths, validate_lengths  # noqa: F401  (re-exported)
from syslab.training.wlb_llm.cost import CostModel, imbalance_degree, iteration_s
from syslab.training.wlb_llm.cp import microbatch_time_s

# ---------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------


def check_context(lengths: np.ndarray, context: int, microbatches: int, split_long: bool = False,
                  source: str | Path = "<lengths>") -> np.ndarray:
    """Validate the packing configuration; split documents longer than the context only if asked."""
    if context <= 0:
        raise InputError(f"context must be positive, got {context}.", field="--context", fix="e.g. --context 131072.")
    if microbatches <= 0:
        raise InputError(f"need at least one micro-batch, got {microbatches}.", field="--microbatches",
                         fix="e.g. --microbatches 8.")
    too_long = lengths > context
    if too_long.any() and not split_long:
        i = int(np.argmax(too_long))
        raise InputError(f"document {i} has {lengths[i]} tokens, more than the context window {context}.",
                         file=source, field=f"lengths[{i}]",
                         fix="raise --context, or pass --split-long to cut long documents into context-sized pieces.")
    return split_documents(lengths, context) if too_long.any() else lengths


def synthetic_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    """Synthetic twin of ``wlb_doc_lengths``: a lognormal body with the real median (3,227) plus a 2% Pareto
    tail, capped at the real maximum (124,913). Used only when the dataset is missing; labelled SYNTHETIC."""
    body = rng.lognormal(np.log(3227), 0.6, n)
    tail = 8192 * (1 + rng.pareto(1.2, n))
    out = np.where(rng.random(n) < 0.02, tail, body)
    return np.clip(out, 1, 124913).astype(np.int64)


def split_documents(lengths: np.ndarray, context: int) -> np.ndarray:
    """Cut documents longer than the context into context-sized pieces (as dataloaders do)."""
    out = []
    for d in lengths.tolist():
        while d > context:
            out.append(context)
            d -= context
        out.append(d)
    return np.asarray(out, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------
# Documents and the dataloader stream
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Doc:
    length: int
    arrival: int      # the iteration the dataloader delivered it in


Packing = list[list[Doc]]   # one list of documents per micro-batch


def original_batches(lengths: np.ndarray, context: int, microbatches: int) -> Iterator[Packing]:
    """Plain-4D: documents in dataloader order, next-fit into N fixed-length sequences of <= S tokens. A
    document that does not fit the current sequence starts the next one; after N sequences the iteration
    is full and the document opens the next iteration."""
    batch: Packing = [[]]
    used = 0
    it = 0
    for d in lengths.tolist():
        if used + d > context:
            if len(batch) == microbatches:
                yield batch
                it += 1
                batch = [[]]
            else:
                batch.append([])
            used = 0
        batch[-1].append(Doc(d, it))
        used += d
    if any(batch):
        batch += [[] for _ in range(microbatches - len(batch))]
        yield batch


# ---------------------------------------------------------------------------------------------------------
# Baseline: fixed-length packing (Eq. 1), greedy and ILP
# ---------------------------------------------------------------------------------------------------------

def fixed_greedy(docs: Sequence[Doc], context: int, n_bins: int) -> tuple[Packing, list[Doc]]:
    """Fixed-4D repacking: longest document first into the fixed-length (<= S) micro-batch with the least
    attention workload sum(d^2) that still has room (a greedy for Eq. 1). Documents that fit nowhere are
    returned as leftovers for the next global batch."""
    bins: Packing = [[] for _ in range(n_bins)]
    used = np.zeros(n_bins, dtype=np.int64)
    attn = np.zeros(n_bins, dtype=np.float64)
    left = []
    for doc in sorted(docs, key=lambda x: -x.length):
        room = used + doc.length <= context
        if not room.any():
            left.append(doc)
            continue
        j = int(np.argmin(np.where(room, attn, np.inf)))
        bins[j].append(doc)
        used[j] += doc.length
        attn[j] += float(doc.length) ** 2
    return bins, left


def fixed_ilp(lengths: Sequence[int], context: int, n_bins: int, time_limit_s: float = 10.0
              ) -> tuple[list[list[int]], float] | None:
    """Eq. 1 exactly, with HiGHS: min z s.t. sum_i x_ij d_i^2 <= z, sum_j x_ij = 1, sum_i x_ij d_i <= S.
    Toy instances only (the paper: 25 s for 4 global batches). Returns (bins of lengths, objective) or None
    when no feasible packing was found in time."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    d = np.asarray(lengths, dtype=np.float64)
    n, m = len(d), n_bins
    scale = float((d ** 2).max()) or 1.0          # keep coefficients O(1) for the solver
    nv = n * m + 1                                # x_ij (row-major), then z
    c = np.zeros(nv)
    c[-1] = 1.0
    rows, lo, hi = [], [], []
    for i in range(n):                            # each document in exactly one micro-batch
        r = np.zeros(nv)
        r[i * m:(i + 1) * m] = 1
        rows.append(r)
        lo.append(1)
        hi.append(1)
    for j in range(m):
        r = np.zeros(nv)                          # sum_i x_ij d_i^2 - z <= 0
        r[j:n * m:m] = d ** 2 / scale
        r[-1] = -1
        rows.append(r)
        lo.append(-np.inf)
        hi.append(0)
        r = np.zeros(nv)                          # sum_i x_ij d_i <= S
        r[j:n * m:m] = d
        rows.append(r)
        lo.append(-np.inf)
        hi.append(context)
    integrality = np.ones(nv)
    integrality[-1] = 0
    res = milp(c, constraints=LinearConstraint(np.array(rows), lo, hi), integrality=integrality,
               bounds=Bounds(np.zeros(nv), np.r_[np.ones(n * m), np.inf]),
               options={"time_limit": time_limit_s, "disp": False})
    if res.x is None:
        return None
    x = res.x[:-1].reshape(n, m) > 0.5
    bins = [[int(d[i]) for i in range(n) if x[i, j]] for j in range(m)]
    return bins, max(sum(v * v for v in b) for b in bins)


# ---------------------------------------------------------------------------------------------------------
# WLB-LLM: variable-length packing with multi-level outlier queues (Algorithm 1)
# ---------------------------------------------------------------------------------------------------------

@dataclass
class WLBPacker:
    """Algorithm 1. State persists across iterations: the outlier queues and the deferred documents.

    thresholds: L_1 < L_2 < ... ; a document with L_i <= d < L_{i+1} waits in queue i (the last queue is
    unbounded above). A queue holding >= N documents releases N of them, one per micro-batch.
    """

    context: int
    microbatches: int
    thresholds: tuple[int, ...]
    cost: CostModel = field(default_factory=CostModel)
    max_length_factor: float = 1.25
    queues: list[deque[Doc]] = field(init=False)
    deferred: list[Doc] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if list(self.thresholds) != sorted(set(self.thresholds)):
            raise InputError(f"thresholds {self.thresholds} must be strictly increasing.", field="thresholds",
                             fix="give L_1 < L_2 < ...")
        self.queues = [deque() for _ in self.thresholds]

    @property
    def max_length(self) -> int:
        return int(self.max_length_factor * self.context)

    def _level(self, length: int) -> int:
        """Queue index of an outlier, or -1 for a regular document."""
        level = -1
        for i, lower in enumerate(self.thresholds):
            if length >= lower:
                level = i
        return level

    def pack(self, new_docs: Sequence[Doc]) -> Packing:
        n = self.microbatches
        regular = []
        for doc in new_docs:                                      # 1. route outliers to their queues
            level = self._level(doc.length)
            (self.queues[level].append(doc) if level >= 0 else regular.append(doc))
        released = []
        for q in self.queues:                                     #    and pop every full queue
            while len(q) >= n:
                released += [q.popleft() for _ in range(n)]
        regular.sort(key=lambda x: -x.length)                     # 2. new documents, longest first
        doc_set = released + self.deferred + regular              # 3. outliers, deferred, then new ones
        self.deferred = []
        bins: Packing = [[] for _ in range(n)]
        length = np.zeros(n, dtype=np.int64)
        work = np.zeros(n, dtype=np.float64)
        w = self.cost.workload(np.array([d.length for d in doc_set], dtype=np.float64)) if doc_set else []
        for doc, wd in zip(doc_set, w, strict=True):              # 4. place or defer
            j = int(np.argmin(work))                              #    least estimated workload ...
            if length[j] + doc.length >= self.max_length:
                j = int(np.argmin(length))                        #    ... else the shortest micro-batch ...
                if length[j] + doc.length >= self.max_length:
                    self.deferred.append(doc)                     #    ... else the next iteration
                    continue
            bins[j].append(doc)
            length[j] += doc.length
            work[j] += wd
        return bins

    def pending(self) -> int:
        return sum(len(q) for q in self.queues) + len(self.deferred)


# ---------------------------------------------------------------------------------------------------------
# Threshold tuning by replay, and the end-to-end comparison
# ---------------------------------------------------------------------------------------------------------

def replay_wlb(batches: Sequence[Packing], context: int, microbatches: int, thresholds: tuple[int, ...],
               cost: CostModel) -> tuple[list[Packing], float, float]:
    """Feed each iteration's new documents to a fresh WLB packer. Returns the packings, the mean imbalance
    degree and the token-weighted mean delay (iterations between arrival and training)."""
    packer = WLBPacker(context, microbatches, thresholds, cost)
    out, delays, tokens = [], 0.0, 0
    for it, batch in enumerate(batches):
        packing = packer.pack([doc for mb in batch for doc in mb])
        out.append(packing)
        for mb in packing:
            for doc in mb:
                delays += doc.length * (it - doc.arrival)
                tokens += doc.length
    imb = mean_imbalance(out, cost)
    return out, imb, delays / max(tokens, 1)


def mean_imbalance(packings: Sequence[Packing], cost: CostModel) -> float:
    """Imbalance degree (Table 2) of each iteration's micro-batches, averaged over iterations."""
    return float(np.mean([imbalance_degree([cost.microbatch_s(doc_lengths(mb)) for mb in p]) for p in packings]))


def doc_lengths(mb: Sequence[Doc]) -> np.ndarray:
    return np.array([d.length for d in mb], dtype=np.int64)


def tune_thresholds(sample: Sequence[Packing], context: int, microbatches: int, queues: int, cost: CostModel,
                    max_delay_iters: float = 1.0) -> tuple[int, ...]:
    """The paper tunes L_i by replaying a document sample: among thresholds on a grid of context fractions
    (1/32 ... 1/2 of S), keep the one with the lowest imbalance whose mean per-token delay stays within
    ``max_delay_iters``."""
    if queues == 0:
        return ()
    grid = [context // k for k in (32, 16, 8, 4, 2)]
    best, best_imb = None, math.inf
    for combo in _increasing(grid, queues):
        _, imb, delay = replay_wlb(sample, context, microbatches, combo, cost)
        if delay <= max_delay_iters and imb < best_imb:
            best, best_imb = combo, imb
    return best if best is not None else tuple(grid[-queues:])


def _increasing(grid: list[int], k: int) -> Iterator[tuple[int, ...]]:
    from itertools import combinations
    yield from combinations(sorted(grid), k)


def compare_packers(lengths: np.ndarray, context: int = 131072, microbatches: int = 8, queues: int = 2,
                    iterations: int | None = None, cost: CostModel | None = None, split_long: bool = False,
                    source: str = "<lengths>", tune_sample: np.ndarray | None = None) -> dict[str, Any]:
    """The tool's comparison: imbalance of original, fixed-greedy and WLB packing on the given documents,
    WLB's mean per-token delay, and each packer's wall time per global batch."""
    cost = cost or CostModel()
    lengths = check_context(np.asarray(lengths), context, microbatches, split_long, source)
    t0 = time.perf_counter()
    batches = list(original_batches(lengths, context, microbatches))
    original_ms = (time.perf_counter() - t0) * 1e3 / len(batches)
    if iterations:
        batches = batches[:iterations]
    if tune_sample is None:
        sample = batches[: min(len(batches), 40)]
    else:
        sample = list(original_batches(check_context(tune_sample, context, microbatches, True), context,
                                       microbatches))[:40]
    thresholds = tune_thresholds(sample, context, microbatches, queues, cost)

    original = mean_imbalance(batches, cost)
    t0 = time.perf_counter()
    greedy = [fixed_greedy([d for mb in b for d in mb], context, microbatches)[0] for b in batches]
    greedy_ms = (time.perf_counter() - t0) * 1e3 / len(batches)
    t0 = time.perf_counter()
    packed, wlb_imb, delay = replay_wlb(batches, context, microbatches, thresholds, cost)
    wlb_ms = (time.perf_counter() - t0) * 1e3 / len(batches)
    return {
        "documents": sum(len(mb) for b in batches for mb in b), "iterations": len(batches), "context": context,
        "microbatches": microbatches, "thresholds": list(thresholds),
        "original": {"imbalance": original, "ms_per_batch": original_ms},
        "fixed_greedy": {"imbalance": mean_imbalance(greedy, cost), "ms_per_batch": greedy_ms},
        "wlb": {"imbalance": wlb_imb, "mean_delay_iters": delay, "ms_per_batch": wlb_ms},
        "wlb_mean_delay_iters": delay,
    }


def training_throughput(packings: Sequence[Packing], cost: CostModel, sharding: str,
                        pipeline: Any = iteration_s) -> tuple[float, float]:
    """Modelled tokens per second over the iterations, and total seconds. ``pipeline`` maps micro-batch
    forward times to an iteration time: the simulated 1F1B schedule, or ``fig5_iteration_s``."""
    total_s, tokens = 0.0, 0
    for p in packings:
        total_s += pipeline([microbatch_time_s(doc_lengths(mb), cost, sharding) for mb in p], cost.pp)
        tokens += sum(d.length for mb in p for d in mb)
    return tokens / total_s, total_s
