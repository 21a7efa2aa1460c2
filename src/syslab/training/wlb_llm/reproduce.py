"""The reproduction on the real document-length distribution: imbalance, speedup, delay, CP balance.

Negative control (``run.control``): WLB-LLM (variable-length packing with outlier queues, adaptive CP sharding)
is replaced by Plain-4D (dataloader-order packing, per-sequence CP sharding) on the same documents."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from syslab.core.claims import CHECK, Claim, Expect, Figure, Result, Table
from syslab.core.run import Run, pyplot
from syslab.core.stats import cdf
from syslab.training.wlb_llm.cost import CostModel, fig5_iteration_s
from syslab.training.wlb_llm.cp import cp_imbalance, per_document_shards, per_sequence_shards, sharding_picks
from syslab.training.wlb_llm.packing import (
    Doc,
    Packing,
    doc_lengths,
    fixed_greedy,
    fixed_ilp,
    load_lengths,
    mean_imbalance,
    original_batches,
    replay_wlb,
    split_documents,
    synthetic_lengths,
    training_throughput,
    tune_thresholds,
)

# ---------------------------------------------------------------------------------------------------------
# Reproduction
# ---------------------------------------------------------------------------------------------------------

CLAIMS = (
    Claim("imbalance-original", "imbalance degree of the original (dataloader-order) packing at 128K", paper=1.44,
          unit="", expect=Expect.between(1.3, 1.5), source="Table 2", kind=CHECK),  # the baseline's, a readout
    Claim("imbalance-fixed-greedy", "imbalance degree of fixed-length greedy repacking (1 global batch)",
          paper=1.41, unit="", expect=Expect(at_least=1.3), source="Table 2", kind=CHECK),  # a baseline's readout
    Claim("imbalance-wlb", "imbalance degree of WLB-LLM packing with 2 outlier queues", paper=1.05, unit="",
          expect=Expect(at_most=1.10), source="Table 2"),
    Claim("speedup-128k", "modelled step-time speedup of WLB-LLM over Plain-4D at 128K", paper=1.30, unit="x",
          expect=Expect(at_least=1.15), source="§7.2, Fig. 10"),
    Claim("speedup-vs-fixed", "modelled speedup of WLB-LLM over Fixed-4D at 128K", paper=1.19, unit="x",
          expect=Expect(at_least=1.05), source="§7.2 (1.19x is the average over models and contexts)"),
    Claim("fixed-4d-speedup", "modelled speedup of Fixed-4D (greedy repacking + best static CP) over Plain-4D at "
          "128K", paper=1.03, unit="x", expect=Expect(at_most=1.10), source="§7.2 (average)",
          kind=CHECK),  # one baseline against the other
    Claim("speedup-grows", "speedup at 128K / speedup at 64K (longer context, larger gain)", paper="1.30x / 1.15x",
          unit="", expect=Expect(at_least=1.05),
          source="§7.2 (band: about half the paper's 1.13; no gain at either context gives 1.0)"),
    Claim("delay", "mean per-token delay of WLB-LLM's outlier queues", paper=0.5, unit=" iterations",
          expect=Expect(at_most=1.0), source="§7.5", kind=CHECK),  # a bound on the cost: no queue (0) meets it
    Claim("packer-ms", "WLB-LLM packing time per global batch (Python here)", paper=20, unit=" ms",
          expect=Expect(at_most=50), source="Table 2", kind=CHECK),
    Claim("cp-per-document", "max/mean per-rank attention FLOPs with per-document CP sharding", paper="~1.0",
          unit="", expect=Expect(at_most=1.02), source="§5",
          kind=CHECK),  # mirrored 2 x CP chunks per document balance causal FLOPs by construction (up to tiles)
    Claim("cp-per-sequence", "max/mean per-rank attention FLOPs with per-sequence CP sharding", paper=None,
          unit="", expect=Expect(at_least=1.2), source="§3, Fig. 4", kind=CHECK),  # the baseline's, a readout
)


def _weighted_cp_imbalance(batches: Sequence[Packing], shards: Any, cp: int) -> float:
    """FLOP-weighted CP imbalance: sum over micro-batches of the busiest rank's attention work over the sum of
    the mean rank's work, i.e. how much longer attention takes than with perfect balance."""
    work = [shards(doc_lengths(mb), cp) for b in batches for mb in b if mb]
    return float(sum(w.max() for w in work) / sum(w.mean() for w in work))


def _figures(run: Run, imb: dict[str, float], speed: dict[int, dict[str, float]], cp: dict[str, list[float]]
             ) -> list[Figure]:
    plt = pyplot()
    figs = []
    fig, ax = plt.subplots(figsize=(8, 3.6))
    names = list(imb)
    ax.bar(names, [imb[n] for n in names], color=["#999"] * (len(names) - 2) + ["#c66", "#c33"])
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_ylabel("imbalance degree")
    ax.set_title("Micro-batch imbalance at 128K (Table 2 analogue; 1.0 = balanced)")
    ax.set_xticks(range(len(names)), names, fontsize=8, rotation=20, ha="right")
    figs.append(run.save_figure(fig, "imbalance", "Imbalance degree of each packer on the same documents."))

    fig, ax = plt.subplots(figsize=(8, 3.6))
    methods = list(next(iter(speed.values())))
    x = np.arange(len(methods))
    for i, (ctx, row) in enumerate(sorted(speed.items())):
        ax.bar(x + 0.4 * i - 0.2, [row[m] for m in methods], width=0.4, label=f"{ctx // 1024}K")
    ax.set_xticks(x, methods, fontsize=8, rotation=20, ha="right")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_ylabel("speedup over Plain-4D (modelled)")
    ax.legend()
    figs.append(run.save_figure(fig, "speedup", "Modelled H100 step-time speedup over Plain-4D, with the breakdown "
                                "of WLB-LLM's parts."))

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, values in cp.items():
        ax.plot(*cdf(values), label=name)
    ax.set_xlabel("max / mean per-rank attention FLOPs (CP=2)")
    ax.set_ylabel("CDF over micro-batches")
    ax.legend()
    figs.append(run.save_figure(fig, "cp_balance", "Context-parallel balance of the original packed sequences at "
                                "128K."))
    return figs


def reproduce(run: Run) -> Result:
    result = Result(system="wlb-llm")
    rng = run.rng()
    if run.data.has("wlb_doc_lengths"):
        lengths = load_lengths(run.data.path("wlb_doc_lengths", "doc_lengths.json"))
        source = "wlb_doc_lengths (real lengths; no upstream licence, test input only)"
    else:
        lengths = synthetic_lengths(100_000, rng)
        source = "SYNTHETIC twin of wlb_doc_lengths (dataset missing)"
        result.notes.append("dataset wlb_doc_lengths is missing: all numbers come from a synthetic twin.")
    perm = rng.permutation(len(lengths))
    half = len(lengths) * 6 // 10                       # tune on a held-out sample, evaluate on the rest
    stream, sample = lengths[perm[:half]], lengths[perm[half:]]
    iterations = 60 if run.quick else 250
    n = 8
    cost = CostModel()
    result.metrics.update(source=source, iterations=iterations, microbatches=n, cost_model=str(cost))

    speed: dict[int, dict[str, float]] = {}
    fig5: dict[int, float] = {}
    imb_128: dict[str, float] = {}
    for context in (65536, 131072):
        run.progress(f"packing at {context // 1024}K")
        docs = split_documents(stream, context)
        batches = list(original_batches(docs, context, n))[:iterations]
        sample_batches = list(original_batches(split_documents(sample, context), context, n))[:40]
        greedy = [fixed_greedy([d for mb in b for d in mb], context, n)[0] for b in batches]
        if run.control:                 # the negative control: Plain-4D's packing in WLB-LLM's slot
            thresholds = {q: () for q in (1, 2)}
            wlb2, imb2, delay2, wlb_ms = batches, mean_imbalance(batches, cost), 0.0, None
            imb1, delay1 = imb2, delay2
        else:
            thresholds = {q: tune_thresholds(sample_batches, context, n, q, cost) for q in (1, 2)}
            t0 = time.perf_counter()
            wlb2, imb2, delay2 = replay_wlb(batches, context, n, thresholds[2], cost)
            wlb_ms = (time.perf_counter() - t0) * 1e3 / len(batches)
            _, imb1, delay1 = replay_wlb(batches, context, n, thresholds[1], cost)
        wlb_cp = "per-sequence" if run.control else "adaptive"      # the control: Plain-4D's CP sharding

        base, _ = training_throughput(batches, cost, "per-sequence")
        fixed_static = max(training_throughput(greedy, cost, s)[0] for s in ("per-sequence", "per-document"))
        fig5[context] = (training_throughput(wlb2, cost, wlb_cp, fig5_iteration_s)[0]
                         / training_throughput(batches, cost, "per-sequence", fig5_iteration_s)[0])
        speed[context] = {
            "Fixed-4D": fixed_static / base,
            "per-doc CP": training_throughput(batches, cost, "per-document")[0] / base,
            "adaptive CP": training_throughput(batches, cost, "adaptive")[0] / base,
            "WLB packing": training_throughput(wlb2, cost, "per-sequence")[0] / base,
            "WLB-LLM": training_throughput(wlb2, cost, wlb_cp)[0] / base,
        }
        if context == 131072:
            imb_128 = {"original": mean_imbalance(batches, cost), "fixed greedy x1": mean_imbalance(greedy, cost)}
            for g in (2, 4):    # fixed greedy over g global batches at once
                multi = []
                for i in range(0, len(batches) - g + 1, g):
                    bins, _ = fixed_greedy([d for b in batches[i:i + g] for mb in b for d in mb], context, g * n)
                    multi += [bins[k * n:(k + 1) * n] for k in range(g)]
                imb_128[f"fixed greedy x{g}"] = mean_imbalance(multi, cost)
            imb_128["WLB 1 queue"] = imb1
            imb_128["WLB 2 queues"] = imb2
            # the imbalance by number of outlier queues (0: variable-length packing alone), each tuned alike
            by_queues = {}
            for q in (0, 1, 2, 3):
                tq = () if run.control else (thresholds[q] if q in thresholds
                                             else tune_thresholds(sample_batches, context, n, q, cost))
                _, imb_q, delay_q = (batches, mean_imbalance(batches, cost), 0.0) if run.control else \
                    replay_wlb(batches, context, n, tq, cost)
                by_queues[q] = {"thresholds": list(tq), "imbalance": imb_q, "delay": delay_q}
            # WLB-LLM's sharding estimator against the oracle that runs both shardings
            picks = sharding_picks(wlb2, cost)
            # Sensitivity, not calibration: where W_a(d) = W_l(d) decides how unbalanced dataloader order is.
            sensitivity = [[f"{x / 1000:.0f}K", label, round(mean_imbalance(batches, cost.with_crossover(x)), 3),
                            round(mean_imbalance(wlb2, cost.with_crossover(x)), 3)]
                           for x, label in ((6000, "the paper's Fig. 7 as read in our notes (unverified)"),
                                            (cost.crossover_tokens, "ours: the GPU cost model (core.gpu)"),
                                            (100_000, "attention 2.5x cheaper than ours"))]
            result.metrics.update(thresholds_128k=thresholds, delay_1q=delay1, delay_2q=delay2, wlb_ms=wlb_ms)
            cp_seq = [cp_imbalance(per_sequence_shards(doc_lengths(mb), cost.cp)) for b in batches for mb in b if mb]
            cp_doc = [cp_imbalance(per_document_shards(doc_lengths(mb), cost.cp)) for b in batches for mb in b if mb]
            cp_weighted = {"per-sequence": _weighted_cp_imbalance(batches, per_sequence_shards, cost.cp),
                           "per-document": _weighted_cp_imbalance(batches, per_document_shards, cost.cp)}

    # Toy ILP: Eq. 1 exactly on small instances, against the greedy (Table 2's ILP rows, scaled down).
    ilp_rows = []
    toy_rng = run.rng(7)
    for trial in range(3 if run.quick else 10):
        toy = np.clip(toy_rng.choice(stream, 12), 1, 4096)
        ctx = int(max(toy.max(), int(np.ceil(toy.sum() / 4 * 1.15))))
        t0 = time.perf_counter()
        ilp = fixed_ilp(toy.tolist(), ctx, 4, time_limit_s=5.0)
        ilp_s = time.perf_counter() - t0
        bins, left = fixed_greedy([Doc(int(x), 0) for x in toy], ctx, 4)
        greedy_obj = max(sum(float(d.length) ** 2 for d in b) for b in bins) if not left else math.inf
        ilp_rows.append([trial, ctx, round(ilp[1] / 1e6, 2) if ilp else None, round(greedy_obj / 1e6, 2),
                         round(ilp_s, 2)])

    claim = {c.id: c for c in CLAIMS}
    result.findings += [
        claim["imbalance-original"].measure(
            imb_128["original"], f"our FLOP-based cost puts W_a(d) = W_l(d) at d ~ {cost.crossover_tokens / 1e3:.0f}K "
            "tokens and iterations holding one 100K+ document dominate the mean; see the sensitivity table"),
        claim["imbalance-fixed-greedy"].measure(imb_128["fixed greedy x1"]),
        claim["imbalance-wlb"].measure(imb_128["WLB 2 queues"],
                                       f"thresholds {list(result.metrics['thresholds_128k'][2])}"),
        claim["speedup-128k"].measure(speed[131072]["WLB-LLM"], f"Fixed-4D {speed[131072]['Fixed-4D']:.3f}x"),
        claim["speedup-vs-fixed"].measure(speed[131072]["WLB-LLM"] / speed[131072]["Fixed-4D"]),
        claim["fixed-4d-speedup"].measure(
            speed[131072]["Fixed-4D"], "repacking helps far more here than in the paper because our cost model's "
            f"original packing is far more imbalanced ({imb_128['original']:.2f}; see imbalance-original)"),
        claim["speedup-grows"].measure(speed[131072]["WLB-LLM"] / speed[65536]["WLB-LLM"],
                          f"{speed[131072]['WLB-LLM']:.3f}x at 128K vs {speed[65536]['WLB-LLM']:.3f}x at 64K"),
        claim["delay"].measure(result.metrics["delay_2q"]),
        claim["packer-ms"].measure(result.metrics["wlb_ms"]),
        claim["cp-per-document"].measure(cp_weighted["per-document"], "FLOP-weighted over micro-batches at 128K"),
        claim["cp-per-sequence"].measure(cp_weighted["per-sequence"], f"median micro-batch {np.median(cp_seq):.3f}"),
    ]
    result.tables += [
        Table(f"Imbalance degree at 128K, N={n} micro-batches, {iterations} iterations ({source})",
              ["packing", "imbalance degree"], [[k, round(v, 3)] for k, v in imb_128.items()]),
        Table("Modelled speedup over Plain-4D (H100, Llama-2 7B shape, TP8 CP2 PP4; simulated 1F1B schedule, and "
              "WLB-LLM with the paper's Fig. 5 closed form as a cross-check)",
              ["context", *next(iter(speed.values())), "WLB-LLM (Fig. 5 formula)"],
              [[f"{c // 1024}K", *[round(v, 3) for v in row.values()], round(fig5[c], 3)]
               for c, row in sorted(speed.items())]),
        Table("Sensitivity of the imbalance degree at 128K to the document length where attention work equals "
              "linear work (same packings; only the cost model's attention efficiency changes)",
              ["W_a = W_l at", "source", "original packing", "WLB-LLM 2 queues"], sensitivity),
        Table("Fixed-length ILP (HiGHS) vs greedy on toy instances (12 docs, 4 micro-batches): max sum d^2 (x1e6)",
              ["trial", "context", "ILP objective", "greedy objective", "ILP seconds"], ilp_rows),
        Table(f"Imbalance degree at 128K by outlier queues (WLB-LLM packing, thresholds tuned on a sample; "
              f"{source}); the paper: 1.24 with one queue, 1.05 with two",
              ["outlier queues", "thresholds (tokens)", "imbalance degree", "mean delay (iterations)"],
              [[q, ", ".join(map(str, v["thresholds"])) or "-", round(v["imbalance"], 3), round(v["delay"], 3)]
               for q, v in by_queues.items()]),
        Table("Adaptive CP sharding at 128K: WLB-LLM's estimator (attention profiled on 24 shapes, interpolated) "
              "against the oracle that runs both shardings",
              ["micro-batches", "estimator picks the faster sharding", "time lost against the oracle"],
              [[picks["microbatches"], f"{picks['right']:.1%}", f"{picks['loss_vs_oracle']:.3%}"]]),
    ]
    result.metrics["imbalance_by_queues"] = by_queues
    result.metrics["sharding_picks"] = picks
    result.metrics["speedup"] = {str(k): v for k, v in speed.items()}
    result.metrics["imbalance_128k"] = imb_128
    result.figures += _figures(run, imb_128, speed, {"per-sequence": cp_seq, "per-document": cp_doc})
    return result
