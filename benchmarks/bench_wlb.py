"""Packing time per global batch (paper, Table 2: fixed greedy 4-5 ms, WLB-LLM 8-20 ms, fixed ILP 0.47-25 s)."""

from __future__ import annotations

import time

import numpy as np

from syslab.core.data import DataStore
from syslab.training import wlb_llm as W


def main() -> None:
    store = DataStore()
    if store.has("wlb_doc_lengths"):
        lengths = W.load_lengths(store.path("wlb_doc_lengths", "doc_lengths.json"))
    else:
        print("wlb_doc_lengths not found: using the synthetic twin")
        lengths = W.synthetic_lengths(100_000, np.random.default_rng(0))
    cost = W.CostModel()
    print(f"{'context':>8} {'N':>3} {'docs/batch':>10} {'next-fit ms':>12} {'greedy ms':>10} {'WLB 2q ms':>10}")
    for context, n in ((65536, 8), (131072, 8), (131072, 16), (131072, 32)):
        docs = W.split_documents(lengths, context)
        t0 = time.perf_counter()
        batches = list(W.original_batches(docs, context, n))[:100]
        t_orig = (time.perf_counter() - t0) * 1e3 / len(batches)
        t0 = time.perf_counter()
        for b in batches:
            W.fixed_greedy([d for mb in b for d in mb], context, n)
        t_greedy = (time.perf_counter() - t0) * 1e3 / len(batches)
        t0 = time.perf_counter()
        W.replay_wlb(batches, context, n, (context // 4, context // 2), cost)
        t_wlb = (time.perf_counter() - t0) * 1e3 / len(batches)
        per_batch = np.mean([sum(len(mb) for mb in b) for b in batches])
        print(f"{context:>8} {n:>3} {per_batch:>10.0f} {t_orig:>12.2f} {t_greedy:>10.2f} {t_wlb:>10.2f}")
    print("cost grows linearly with documents per batch and with N (argmin over micro-batches per document)")

    print("\nfixed-length ILP (HiGHS) on toy instances, 4 micro-batches:")
    rng = np.random.default_rng(0)
    for n_docs in (8, 12, 16, 20):
        toy = np.clip(rng.choice(lengths, n_docs), 1, 4096)
        ctx = int(max(toy.max(), np.ceil(toy.sum() / 4 * 1.15)))
        t0 = time.perf_counter()
        res = W.fixed_ilp(toy.tolist(), ctx, 4, time_limit_s=30)
        print(f"  {n_docs:3} docs: {time.perf_counter() - t0:6.2f} s ({'solved' if res else 'no solution in time'})")


if __name__ == "__main__":
    main()
