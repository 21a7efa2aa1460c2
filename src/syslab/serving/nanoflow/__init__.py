"""NanoFlow: Towards Optimal Large Language Model Serving Throughput (OSDI 2025).

Zhu, Gao, et al. (UW, Tsinghua, UC Berkeley, UMich); artifact efeslab/Nanoflow. Written from the paper and our
notes on its public configs; no artifact code is reused.

**What it does.** Serving a large batch is compute-bound, yet an iteration also runs memory-bound decode
attention and network-bound tensor-parallel collectives one after another. NanoFlow splits the dense batch
into *nano-batches*, duplicates each operation per nano-batch (a different number of nano-operations per op),
and runs them on separate streams with capped SM shares, so that attention and collectives of one nano-batch
hide under the GEMMs of another; a two-stage search picks the nano-batch counts and sizes, the issue order
(Stage I) and the per-op SM shares (Stage II).

**What runs for real here (HYBRID).** The per-layer nano-operation graph of every configuration, its schedule
under SM shares (``pipeline.simulate``: in-order streams, capped kernels holding their share, GEMMs taking the
SMs left over), and the search over the paper's space (``pipeline.search``; see ``pipeline``'s docstring: per-block
nano-batch counts 1-4 on the 128-row tile grid, per-op shares of attention and both all-reduces, the issue
order). The search judges candidates on two layers; the chosen pipeline is then scheduled over all of the
model's layers back to back (one iteration, pipeline fill included). The space contains the sequential
configuration, and the search always evaluates it (and ``evaluate`` keeps it if it wins on the full model), so
NanoFlow is never slower than non-overlap by construction. The dense batch (decode requests vs prefill tokens,
and decode context) is derived from the workload's real lengths by steady-state accounting (``dense_batch``).

**What is modelled, with assumptions set before running** (NanoFlow's main setting: Llama-2-70B, TP=8 on
8 x A100-80GB SXM; peaks from ``core.hardware``):

- Every op time comes from the shared GPU cost model ``core.gpu`` at the op's SM share: GEMMs (``G.gemm_s`` per
  projection, tensor-parallel shapes of ``core.gpu.transformer.gemm_shapes``; waves recomputed on the SMs the
  GEMM holds), prefill attention (``G.attention_pairs_s``), decode attention (``G.decode_attention_s``), the two
  ring all-reduces of m x hidden activations per layer (``G.collective_s``, NVLink 3 inside a DGX A100) and the
  norms/activations (``G.memory_s``, the passes ``ForwardModel`` counts).
- How speed depends on the share R: compute scales with the SMs an op holds (the neutral assumption; the paper
  profiles the real interference, its Table 3, which needs GPUs; the report's first sensitivity table runs a
  compute op on R**alpha of the SMs, alpha < 1, not used for any claim); memory-bound and collective kernels
  reach full bandwidth at ``G.SMCurve``'s saturation points (0.4 and 0.15: documented assumptions of
  ``core.gpu``), swept in a second table, which also holds the point the paper's Table 3 implies (GEMM keeping
  R = 0.8 leaves decode attention P ~ 0.85 of its speed, i.e. saturation ~0.2 / 0.85 = 0.235; read from a
  public summary of the paper, unverified against the PDF).
- Baselines: non-overlap (one stream, the whole batch, every op on all SMs: the artifact's ``non-overlap``
  pipeline), nano-batch-only (the artifact's Llama-2-70B nano-batches, ``pipeline/config_all/llama2-70B``: KQV
  and attention 256/384/768/640, O/up-gate/down 640/1408, on one stream), and a vLLM-like engine (non-overlap
  plus a synchronous CPU scheduling gap of 10% per iteration, a modelled stand-in, labelled as such). The
  non-overlap baseline is checked against the paper's measured TensorRT-LLM throughput
  (``pipeline/eval/baseline_data.py``: 831 tok/s/GPU on Splitwise, 817 on constant 1024 -> 512, 560 on LMSYS).
- The optimal throughput is the paper's Eq. 5 with its §6.2 convention: measured peak GEMM throughput (here
  ``core.gpu``'s best large bf16 GEMM) / (2 x active parameters) per GPU; the paper's artifact uses 1,857 for
  Llama-2-70B on A100. The datasheet bound (312 TFLOP/s) is printed beside it.

**The paper's numbers used** (only in ``Claim.paper`` and the bands' stated sources): overlap gains over its own
non-overlap pipeline of 1.07x (prefill-only) and 1.17x (decode-heavy) and a 13.2% loss from nano-batching alone
(§6.4, Fig. 9), and the Table 3 point above, read from a public summary of the paper
(bzhng-development/summary-of-some-paper-in-cuda; unverified against the PDF); 1.91x over TensorRT-LLM and 68.5%
of optimal (abstract, README); the TensorRT-LLM table (artifact).

**Negative control** (``run.control``): NanoFlow's searched configuration is replaced by the non-overlap
baseline's (one nano-batch, every share 1.0) in the NanoFlow row.
"""

from __future__ import annotations

import numpy as np

from syslab.core import gpu as G
from syslab.core.claims import CHECK, Claim, Expect, Fidelity, Result, System, Table
from syslab.core.hardware import gpu
from syslab.core.models import model
from syslab.core.run import Run, pyplot
from syslab.core.workloads import load_azure_llm, load_lmsys
from syslab.serving.nanoflow.pipeline import (
    ATTN_SHARES,
    CAPPED,
    KINDS,
    NET_SHARES,
    SKEWS,
    TILE,
    Config,
    Costs,
    DenseBatch,
    Hardware,
    SearchResult,
    artifact_splits,
    block_options,
    dense_batch,
    graph,
    layer_time_s,
    search,
    sequential_layer_s,
    simulate,
    tile_splits,
)

__all__ = ["ATTN_SHARES", "CAPPED", "CLAIMS", "FULL_SEARCH", "KINDS", "LLAMA2_70B_A100", "NET_SHARES", "SKEWS",
           "SYSTEM", "TILE", "TRTLLM_TOK_S_PER_GPU", "Config", "Costs", "DenseBatch", "Hardware", "SearchResult",
           "artifact_splits", "block_options", "dense_batch", "evaluate", "graph", "layer_time_s",
           "linear_share_bound", "nano_batching_is_exact", "reproduce", "search", "sequential_layer_s", "simulate",
           "tile_splits", "tiny_layer_forward"]

CPU_GAP = 0.10   # vLLM-like synchronous scheduling overhead per iteration (modelled stand-in)
LLAMA2_70B_A100 = Hardware(model("llama2-70b"), gpu("A100-80GB"), 8)
# The paper's measured TensorRT-LLM 0.8.0 throughput, Llama-2-70B on 8 x A100, tok/s/GPU (the artifact's
# pipeline/eval/baseline_data.py; the paper's Fig. 7)
TRTLLM_TOK_S_PER_GPU = {"Splitwise": 831, "constant 1024 -> 512": 817, "LMSYS": 560, "ShareGPT": 639}
# the full-scale search: a finer issue-order and share grid and more Stage I structures into Stage II (~4x the
# quick search's 2,500 configurations)
FULL_SEARCH = {"top": 12, "skews": (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 100.0),
               "attn_shares": (0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 1.0),
               "net_shares": (0.05, 0.1, 0.13, 0.15, 0.2, 0.3, 1.0)}


def linear_share_bound(costs: Costs) -> float:
    """Most NanoFlow can gain over non-overlap on the unsplit batch when SM-time is conserved: every GEMM's full
    time plus each capped op's cheapest SM-time (share x time over the share grids), against the sequential sum.
    A readout of the cost model (nano-batching's GEMM losses and wave effects are not in it), not a proof."""
    b = costs.batch.tokens
    seq = sequential_layer_s(costs, Config.sequential(b).splits)
    gemm = sum(costs.full_s(k, b) for k in KINDS if k not in CAPPED)
    capped = sum(min(r * costs.capped_s(k, b, r) for r in (ATTN_SHARES if k == "attn" else NET_SHARES))
                 for k in CAPPED)
    return seq / (gemm + capped)


def evaluate(hw: Hardware, batch: DenseBatch, control: bool = False, **search_kw) -> dict[str, dict]:
    """Throughput of every configuration on one dense batch (``control``: NanoFlow's row runs non-overlap)."""
    costs = Costs(hw, batch)
    seq = Config.sequential(batch.tokens)
    seq_t = sequential_layer_s(costs, seq.splits)
    nano = artifact_splits(batch.tokens)
    nano_t = sequential_layer_s(costs, nano)
    found = None if control else search(hw, batch, costs=costs, **search_kw)
    cfg = seq if found is None else found.config
    # the iteration: all of the model's layers scheduled back to back (the search judges on 2); the sequential
    # pipeline's is exactly its sum, taken without rounding
    flow_t = seq_t if cfg == seq else layer_time_s(costs, cfg, hw.shape.layers)
    if flow_t > seq_t:          # the sequential point is in the space, so keep it if it wins on the full model
        cfg, flow_t = seq, seq_t
    opt = hw.optimal_tok_s_per_gpu
    rows = {
        "non-overlap": {"per_layer_s": seq_t, "config": "1 nano-batch, one stream"},
        "nanobatch-only": {"per_layer_s": nano_t, "config": Config(nano, overlap=False).describe()
                           + " (the artifact's Llama-2-70B nano-batches)"},
        "nanoflow": {"per_layer_s": flow_t, "config": cfg.describe() + (" (control: non-overlap)" if control else "")},
        "vllm-like (modelled)": {"per_layer_s": seq_t * (1 + CPU_GAP), "config": "non-overlap + 10% CPU gap"},
    }
    for r in rows.values():
        r["tok_s_per_gpu"] = batch.tokens / (r["per_layer_s"] * hw.shape.layers) / hw.tp
        r["fraction_of_optimal"] = r["tok_s_per_gpu"] / opt
    rows["nanoflow"].update(cfg=cfg, nano_batches=cfg.max_nano_batches,
                            evaluated=found.evaluated if found else 1)
    rows["bound"] = linear_share_bound(costs)
    return rows


# ---------------------------------------------------------------------------------------------------------
# A real check: nano-batching changes the schedule, not the numbers
# ---------------------------------------------------------------------------------------------------------

def tiny_layer_forward(x: list[np.ndarray], w: dict[str, np.ndarray], sizes: tuple[int, ...] | None = None
                       ) -> list[np.ndarray]:
    """One pre-norm decoder layer (causal attention + SwiGLU MLP) over a batch of sequences, in float64 numpy.
    With ``sizes``, every dense op (the GEMMs) runs on row slices of the flattened batch, as NanoFlow's
    nano-batches do; attention runs per sequence either way."""
    lens = [len(s) for s in x]
    flat = np.concatenate(x)
    slices = [slice(0, len(flat))] if sizes is None else [slice(a, a + m) for a, m in
                                                          zip(np.r_[0, np.cumsum(sizes)[:-1]], sizes, strict=True)]

    def dense(a: np.ndarray, mat: np.ndarray) -> np.ndarray:
        return np.concatenate([a[s] @ mat for s in slices])

    def norm(a: np.ndarray) -> np.ndarray:
        return a / np.sqrt((a * a).mean(axis=1, keepdims=True) + 1e-6)

    qkv = dense(norm(flat), w["qkv"])
    d = flat.shape[1]
    out, start = [], 0
    for n in lens:                                          # causal attention, one sequence at a time
        q, k, v = (qkv[start:start + n, i * d:(i + 1) * d] for i in range(3))
        scores = q @ k.T / np.sqrt(d) + np.triu(np.full((n, n), -np.inf), 1)
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        out.append((p / p.sum(axis=1, keepdims=True)) @ v)
        start += n
    h = flat + dense(np.concatenate(out), w["o"])
    gate_up = dense(norm(h), w["up"])
    g, u = gate_up[:, : w["down"].shape[0]], gate_up[:, w["down"].shape[0]:]
    h = h + dense(g / (1 + np.exp(-g)) * u, w["down"])
    return np.split(h, np.cumsum(lens)[:-1])


def nano_batching_is_exact(rng: np.random.Generator, sizes: tuple[int, ...] = (5, 7, 12)) -> float:
    """Max |difference| between nano-batched and full-batch execution of a tiny layer (should be ~1e-15)."""
    d, f = 16, 32
    w = {"qkv": rng.normal(0, 0.2, (d, 3 * d)), "o": rng.normal(0, 0.2, (d, d)),
         "up": rng.normal(0, 0.2, (d, 2 * f)), "down": rng.normal(0, 0.2, (f, d))}
    x = [rng.normal(size=(n, d)) for n in (9, 4, 11)]
    full = tiny_layer_forward(x, w)
    nano = tiny_layer_forward(x, w, sizes)
    return float(max(np.abs(a - b).max() for a, b in zip(full, nano, strict=True)))


# ---------------------------------------------------------------------------------------------------------
# Reproduction
# ---------------------------------------------------------------------------------------------------------

CLAIMS = (
    # The band (>= 1.3, our notes' acceptance) was set before the first run and is kept; the paper's own
    # overlap ablation against its non-overlap pipeline is 1.07x (prefill-only) to 1.17x (decode-heavy).
    Claim("speedup-vs-nonoverlap", "NanoFlow throughput over the non-overlap baseline (Azure conv workload)",
          paper="1.17x over non-overlap (§6.4 ablation; 1.91x is over TRT-LLM)", unit="x",
          expect=Expect(at_least=1.3), source="§6.4 ablation (Fig. 9); our notes' acceptance band"),
    Claim("fraction-of-optimal", "NanoFlow throughput as a fraction of the optimal bound (Eq. 5, measured GEMM "
          "peak)", paper=0.685, unit="", expect=Expect.between(0.55, 0.75),
          source="README (59-72%; 68.5% for Llama-2-70B), §6.2", kind=CHECK),  # a readout against an analytic bound
    Claim("nonoverlap-fraction", "non-overlap throughput as a fraction of the optimal bound",
          paper="~0.59 (implied: 68.5% / 1.17x)", unit="",
          expect=Expect(at_most=0.5), source="our notes' acceptance", kind=CHECK),  # the baseline alone
    Claim("nonoverlap-vs-trtllm", "modelled non-overlap throughput over the paper's measured TensorRT-LLM "
          "(Splitwise, 831 tok/s/GPU)", paper="~1.6 (implied: 1.91x over TRT-LLM / 1.17x over non-overlap)",
          unit="x", expect=Expect.between(1.0, 1.91), source="pipeline/eval/baseline_data.py; §6.4",
          kind=CHECK),  # below 1: the model is slower than a measured engine; above 1.91: faster than NanoFlow was
    Claim("nanobatch-overhead", "throughput lost by nano-batching alone (the artifact's nano-batches, one stream)",
          paper=0.132, unit="", expect=Expect.between(0.066, 0.264), source="§6.4 (within 2x of 13.2%)",
          kind=CHECK),
    Claim("search-nontrivial", "most nano-batches per op in the searched pipeline (1 is in the space)",
          paper="2-4", unit="", expect=Expect.between(2, 4), source="§4.1", kind=CHECK),
    Claim("nano-exact", "max |nano-batched - full-batch| output of a tiny decoder layer (REAL, float64 numpy)",
          paper=0.0, unit="", expect=Expect(at_most=1e-12), source="nano-batching only reorders work",
          kind=CHECK),
)


def _workloads(run: Run, result: Result) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """name -> (the paper's table row, prompt lengths, output lengths)."""
    out = {}
    if run.data.has("azure_llm_2023"):
        df = load_azure_llm(run.data.path("azure_llm_2023", "azure_conv_2023.csv"))
        out["Azure conv (Splitwise)"] = ("Splitwise", df.prompt_tokens.to_numpy(), df.output_tokens.to_numpy())
    else:
        rng = run.rng()
        out["Azure conv (SYNTHETIC twin)"] = ("Splitwise",
                                              np.maximum(1, rng.lognormal(np.log(1020), 0.8, 5000)).astype(int),
                                              np.maximum(1, rng.lognormal(np.log(129), 0.9, 5000)).astype(int))
        result.notes.append("azure_llm_2023 missing: a lognormal twin with its median lengths was used.")
    if run.data.has("lmsys_lengths") and not run.quick:
        df = load_lmsys(run.data.path("lmsys_lengths", "lmsys.csv"))
        out["LMSYS"] = ("LMSYS", df.prompt_tokens.to_numpy(), df.output_tokens.to_numpy())
    out["constant 1024 -> 512"] = ("constant 1024 -> 512", np.full(100, 1024), np.full(100, 512))
    return out


def _speedup(rows: dict) -> float:
    return rows["nanoflow"]["tok_s_per_gpu"] / rows["non-overlap"]["tok_s_per_gpu"]


def reproduce(run: Run) -> Result:
    result = Result(system="nanoflow")
    hw = LLAMA2_70B_A100
    kw = {} if run.quick else FULL_SEARCH
    table, trt, first = [], [], None
    for name, (row, p, o) in _workloads(run, result).items():
        run.progress(f"searching nano-batch pipelines: {name}")
        batch = dense_batch(p, o)
        rows = evaluate(hw, batch, run.control, **kw)
        first = first or (name, row, batch, rows)
        for k in ("non-overlap", "nanobatch-only", "nanoflow", "vllm-like (modelled)"):
            r = rows[k]
            table.append([name, k, round(r["tok_s_per_gpu"]), round(r["fraction_of_optimal"], 3), r["config"]])
        trt.append([name, TRTLLM_TOK_S_PER_GPU[row], round(rows["non-overlap"]["tok_s_per_gpu"]),
                    round(rows["non-overlap"]["tok_s_per_gpu"] / TRTLLM_TOK_S_PER_GPU[row], 2),
                    round(rows["nanoflow"]["tok_s_per_gpu"]), round(rows["bound"], 3)])
    name, row, batch, rows = first
    speedup = _speedup(rows)
    result.findings += [
        CLAIMS[0].measure(speedup, f"{name}; {rows['nanoflow']['evaluated']} configurations searched; linear "
                                   f"SM-share bound {rows['bound']:.2f}x"),
        CLAIMS[1].measure(rows["nanoflow"]["fraction_of_optimal"],
                          f"optimal {hw.optimal_tok_s_per_gpu:.0f} tok/s/GPU (core.gpu's peak GEMM; datasheet "
                          f"{hw.datasheet_optimal_tok_s_per_gpu:.0f}; the artifact's 1857)"),
        CLAIMS[2].measure(rows["non-overlap"]["fraction_of_optimal"]),
        CLAIMS[3].measure(rows["non-overlap"]["tok_s_per_gpu"] / TRTLLM_TOK_S_PER_GPU[row],
                          f"{rows['non-overlap']['tok_s_per_gpu']:.0f} modelled vs {TRTLLM_TOK_S_PER_GPU[row]} "
                          "measured"),
        CLAIMS[4].measure(1 - rows["nanobatch-only"]["tok_s_per_gpu"] / rows["non-overlap"]["tok_s_per_gpu"]),
        CLAIMS[5].measure(rows["nanoflow"]["nano_batches"], rows["nanoflow"]["config"]),
        CLAIMS[6].measure(nano_batching_is_exact(run.rng(5)), "3 sequences (24 tokens) in nano-batches 5/7/12"),
    ]
    result.tables.append(Table(f"Modelled throughput, Llama-2-70B TP=8 on A100-80GB (dense batch {batch.tokens} "
                               f"tokens: {batch.decode} decode requests, {batch.prefill} prefill tokens for the first "
                               "workload)", ["workload", "engine", "tok/s/GPU", "of optimal", "configuration"],
                               table))
    result.tables.append(Table("The non-overlap baseline against the paper's measured TensorRT-LLM 0.8.0 (its "
                               "baseline table, tok/s/GPU); the linear SM-share bound is the most overlap can gain",
                               ["workload", "TRT-LLM (paper)", "non-overlap (model)", "ratio", "NanoFlow (model)",
                                "linear-share bound (x)"], trt))
    if not run.control:       # the sweeps only feed the sensitivity of the claim; the control skips them
        _sensitivity(run, result, hw, name, batch, rows, kw)
    result.notes.append(
        f"Reading the result: NanoFlow's search space here is the paper's (nano-batch counts per op block, per-op "
        f"SM shares for attention and each all-reduce, GEMMs on the SMs left over, the issue order) and holds the "
        f"sequential pipeline, so NanoFlow is never below non-overlap. With GEMM speed linear in its SMs, "
        f"overlap can hide a capped kernel only at the SM-time it still costs, so the most it can gain is the "
        f"linear-share bound ({rows['bound']:.2f}x); the search reaches {speedup:.2f}x, short of the >= 1.3 band "
        f"(set before the first run from our notes), above the paper's own ablation gain over non-overlap "
        f"(1.07-1.17x). The sensitivity tables show what would flip it: GEMMs that keep more than their SM share "
        f"of speed when co-running (alpha < 1).")
    sch = simulate(Costs(hw, batch), rows["nanoflow"]["cfg"], layers=1)
    trace_path, rel = run.figure_path("nanoflow_layer_trace")
    sch.write_chrome_trace(trace_path.with_suffix(".json"))
    result.notes.append(f"Chrome trace of one NanoFlow layer: {rel[:-4]}.json (open in ui.perfetto.dev).")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 2.8))
    lanes = {"compute": 0, "memory": 1, "network": 2}   # a one-stream schedule ("gpu") -> lane 0
    colors = {"attn": "#dd8452", "ar1": "#55a868", "ar2": "#55a868"}
    for op_name, op in sch.ops.items():
        ax.barh(lanes.get(op.resource, 0), (sch.end[op_name] - sch.start[op_name]) * 1e3,
                left=sch.start[op_name] * 1e3, color=colors.get(op.category, "#4c72b0"), edgecolor="k", lw=0.3)
    ax.set_yticks(list(lanes.values()), list(lanes))
    ax.set_xlabel("ms (one decoder layer)")
    result.figures.append(run.save_figure(fig, "layer", "One layer of NanoFlow's searched pipeline: GEMMs (blue), "
                                          "attention (orange) and all-reduces (green) overlap across nano-batches."))
    return result


def _sensitivity(run: Run, result: Result, hw: Hardware, name: str, batch: DenseBatch, rows: dict,
                 kw: dict) -> None:
    sens = [[1.0, round(_speedup(rows), 3), round(rows["nanoflow"]["fraction_of_optimal"], 3),
             rows["nanoflow"]["config"]]]
    for alpha in (0.75, 0.5, 0.25, 0.0):
        run.progress(f"GEMM interference sweep: alpha {alpha}")
        r = evaluate(Hardware(hw.shape, hw.device, hw.tp, alpha), batch, **kw)
        sens.append([alpha, round(_speedup(r), 3), round(r["nanoflow"]["fraction_of_optimal"], 3),
                     r["nanoflow"]["config"]])
    result.tables.append(Table(f"Sensitivity to GEMM interference ({name}): a compute op with SM share R runs as on "
                               "R**alpha of the SMs (alpha = 1 is the linear model used for the claim; the claim's "
                               "band is >= 1.3)", ["alpha", "NanoFlow / non-overlap", "NanoFlow of optimal",
                                                   "searched configuration"], sens))
    curve = []
    for mem_sat, net_sat in ((0.2, 0.15), (0.235, 0.15), (0.4, 0.15), (0.6, 0.15), (0.4, 0.05), (0.4, 0.3)):
        if (mem_sat, net_sat) == (hw.curve.memory_saturation, hw.curve.collective_saturation):
            r = rows
        else:
            run.progress(f"SM-curve sweep: memory {mem_sat}, collective {net_sat}")
            r = evaluate(Hardware(hw.shape, hw.device, hw.tp, hw.alpha, G.SMCurve(mem_sat, net_sat)), batch, **kw)
        curve.append([mem_sat, net_sat, round(_speedup(r), 3), round(r["bound"], 3),
                      round(r["nanoflow"]["fraction_of_optimal"], 3), r["nanoflow"]["config"]])
    result.tables.append(Table(f"Sensitivity to the SM-share curve ({name}): SM fraction at which decode attention "
                               "(memory) and all-reduce (collective) kernels reach full bandwidth; core.gpu's defaults "
                               "0.4 / 0.15 are used for the claim; 0.235 is the paper's Table 3 point (R = 0.8 leaves "
                               "GEMV P ~ 0.85)", ["memory saturation", "collective saturation",
                                                  "NanoFlow / non-overlap", "linear-share bound",
                                                  "NanoFlow of optimal", "searched configuration"], curve))


SYSTEM = System(
    key="nanoflow",
    name="NanoFlow",
    paper="NanoFlow: Towards Optimal Large Language Model Serving Throughput",
    venue="OSDI 2025",
    domain="serving",
    fidelity=Fidelity.HYBRID,
    real="the per-layer nano-operation graphs of every engine, their schedules under SM shares and the two-stage "
         "search over per-op nano-batch counts, per-op shares and issue order; dense batches from real request "
         "lengths",
    modelled="A100 op times from the shared core.gpu cost model under SM shares (GEMV and NCCL saturation "
             "points are core.gpu's stated assumptions, swept); the vLLM-like CPU gap (a modelled stand-in)",
    claims=CLAIMS,
    reproduce=reproduce,
)
